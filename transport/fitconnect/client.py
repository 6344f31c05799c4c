"""HTTP client of the FIT-Connect Submission API 1.1.3, sender side.

One ``requests.Session`` whose pool holds as many connections as threads deliver at once; an OAuth2
client-credentials token (form-encoded to the token URL) cached until ``expires_in`` minus a margin
and shared by all threads. Every answer is mapped into the hub's error tree here, at the edge:

    401                 -> a fresh token, the call once more; then FitConnectAccessDenied
    403                 -> FitConnectAccessDenied           (transient: credentials, not the application)
    404                 -> the caller's error (DestinationUnavailable, ...) or FitConnectNotFound
                           (a TransportIdInvalid: the submission/case is gone, a new one is needed)
    400 409 415 422     -> FitConnectRefused with the problem's title/detail  (permanent)
    413                 -> ContentTooLarge                                      (permanent)
    408 429 5xx, timeouts, connection errors -> FitConnectUnavailable + retry_after (transient)
    an answer that is not what the API promises -> FitConnectMalformed        (transient)
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from pydantic import BaseModel, ValidationError
from requests.adapters import HTTPAdapter

from hub.errors import ContentTooLarge, HubError
from transport.fitconnect.errors import (
    DestinationUnavailable,
    FitConnectAccessDenied,
    FitConnectMalformed,
    FitConnectNotFound,
    FitConnectRefused,
    FitConnectUnavailable,
)
from transport.fitconnect.models import (
    JWK,
    JWKS,
    Destination,
    EventLog,
    Info,
    Problem,
    SubmissionCreated,
)

M = TypeVar("M", bound=BaseModel)
MAX_PROBLEM_TEXT = 300
PAGE = 500  # the event log's largest page
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def retry_after(value: str | None, *, now: _dt.datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    return max(0.0, (when - (now or _dt.datetime.now(_dt.UTC))).total_seconds())


def problem_text(response: requests.Response) -> str:
    """The problem's title and detail (RFC 7807), one bounded line without control characters."""
    try:
        problem = Problem.model_validate(response.json())
        text = " - ".join(t for t in (problem.title, problem.detail) if t)
    except (ValueError, ValidationError):
        text = ""
    text = _CONTROL.sub(" ", text).strip()[:MAX_PROBLEM_TEXT]
    return text or response.reason or "no problem details"


class FitConnectClient:
    """The Submission API at ``base_url``; thread-safe (one pool, one shared token)."""

    def __init__(self, base_url: str, token_url: str, client_id: str, client_secret: str, *,
                 timeout: float = 30.0, pool_size: int = 1, token_refresh_margin: float = 60.0,
                 ca_bundle: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._base = base_url.rstrip("/")
        self._token_url = token_url
        self._client_id = client_id
        self._secret = client_secret
        self._timeout = timeout
        self._margin = token_refresh_margin
        self._clock = clock
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(1, pool_size))
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        if ca_bundle:
            self._session.verify = ca_bundle
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = threading.Lock()

    def __repr__(self) -> str:  # never the secret
        return f"FitConnectClient({self._base!r}, client_id={self._client_id!r})"

    # ------------------------------------------------------------------ token

    def token(self) -> str:
        """The current access token, fetched when missing or within the margin of its expiry."""
        with self._token_lock:
            if self._token is not None and self._clock() < self._token_expires:
                return self._token
            response = self._send("POST", self._token_url, what="token", data={
                "grant_type": "client_credentials", "client_id": self._client_id, "client_secret": self._secret})
            if response.status_code in (400, 401, 403):
                raise FitConnectAccessDenied(f"token endpoint refused client {self._client_id} "
                                             f"(HTTP {response.status_code})", reason="fitconnect_token_refused")
            self._raise_for(response, "token")
            body = self._json(response, "token")
            token, expires = body.get("access_token"), body.get("expires_in", 300)
            if not isinstance(token, str) or not token or not isinstance(expires, int | float):
                raise FitConnectMalformed("token answer without access_token/expires_in", reason="fitconnect_malformed")
            lifetime = float(expires) - self._margin
            self._token = token
            self._token_expires = self._clock() + (lifetime if lifetime > 0 else float(expires) / 2)
            return token

    def _drop_token(self, used: str) -> None:
        with self._token_lock:
            if self._token == used:
                self._token = None

    # ------------------------------------------------------------------ API

    def get_destination(self, destination_id: str) -> Destination:
        def unknown(response: requests.Response) -> HubError:
            return DestinationUnavailable(f"destination {destination_id} unknown to the delivery service",
                                          reason="fitconnect_destination_unknown")

        response = self._call("GET", f"/v1/destinations/{destination_id}", what="destination", not_found=unknown)
        return self._model(Destination, response, "destination")

    def get_key(self, destination_id: str, kid: str) -> JWK:
        def unknown(response: requests.Response) -> HubError:
            return DestinationUnavailable(f"destination {destination_id} has no key {kid}",
                                          reason="fitconnect_key_unknown")

        response = self._call("GET", f"/v1/destinations/{destination_id}/keys/{kid}", what="key", not_found=unknown)
        return self._model(JWK, response, "key")

    def create_submission(self, body: dict[str, Any]) -> SubmissionCreated:
        destination = body.get("destinationId")

        def unknown(response: requests.Response) -> HubError:
            return DestinationUnavailable(f"destination {destination} unknown to the delivery service",
                                          reason="fitconnect_destination_unknown")

        response = self._call("POST", "/v1/submissions", what="create submission", json_body=body,
                              not_found=unknown, expect=201)
        return self._model(SubmissionCreated, response, "create submission")

    def upload_attachment(self, submission_id: str, attachment_id: str, jwe: bytes) -> None:
        """``jwe``: a compact JWE as ASCII bytes, sent as it is (no copy)."""
        self._call("PUT", f"/v1/submissions/{submission_id}/attachments/{attachment_id}", what="attachment",
                   raw_body=jwe, content_type="application/jose", expect=204)

    def submit(self, submission_id: str, encrypted_metadata: bytes, encrypted_data: bytes | None) -> None:
        """Submit with compact JWEs (ASCII bytes: base64url and dots, JSON-safe as they are); the
        body is joined once as bytes, not re-encoded by a JSON serializer."""
        parts = [b'{"encryptedMetadata":"', encrypted_metadata, b'"']
        if encrypted_data is not None:
            parts += [b',"encryptedData":"', encrypted_data, b'"']
        body = b"".join([*parts, b"}"])
        self._call("PUT", f"/v1/submissions/{submission_id}", what="submit", raw_body=body,
                   content_type="application/json", expect=202)

    def events(self, case_id: str) -> list[str]:
        """Every SET of the case's event log, oldest first (all pages)."""
        tokens: list[str] = []
        while True:
            response = self._call("GET", f"/v1/cases/{case_id}/events", what="event log",
                                  params={"offset": len(tokens), "limit": PAGE})
            page = self._model(EventLog, response, "event log")
            tokens.extend(page.event_log)
            total = page.total_count if page.total_count is not None else len(tokens)
            if not page.event_log or len(tokens) >= total:
                return tokens

    def jwks(self) -> JWKS:
        response = self._call("GET", "/.well-known/jwks.json", what="jwks", auth=False)
        return self._model(JWKS, response, "jwks")

    def info(self) -> Info:
        response = self._call("GET", "/v1/info", what="info")
        return self._model(Info, response, "info")

    def close(self) -> None:
        self._session.close()

    # ------------------------------------------------------------------ plumbing

    def _call(self, method: str, path: str, *, what: str, json_body: Any = None, raw_body: bytes | None = None,
              content_type: str | None = None, params: dict[str, Any] | None = None, auth: bool = True,
              not_found: Callable[[requests.Response], HubError] | None = None,
              expect: int | None = None) -> requests.Response:
        headers = {"Accept": "application/json, application/problem+json"}
        if content_type:
            headers["Content-Type"] = content_type
        for attempt in (1, 2):
            token = self.token() if auth else None
            if token:
                headers["Authorization"] = f"Bearer {token}"
            response = self._send(method, self._base + path, what=what, headers=headers, json=json_body,
                                  data=raw_body, params=params)
            if response.status_code == 401 and token and attempt == 1:
                self._drop_token(token)
                continue
            break
        if response.status_code == 404 and not_found is not None:
            raise not_found(response)
        self._raise_for(response, what)
        if expect is not None and response.status_code != expect:
            raise FitConnectMalformed(f"{what}: HTTP {response.status_code}, the API promises {expect}",
                                      reason="fitconnect_malformed")
        return response

    def _send(self, method: str, url: str, *, what: str, **kwargs: Any) -> requests.Response:
        try:
            return self._session.request(method, url, timeout=self._timeout, **kwargs)
        except requests.Timeout:
            raise FitConnectUnavailable(f"{what}: no answer within {self._timeout:g} s",
                                        reason="fitconnect_timeout") from None
        except requests.RequestException as exc:  # connection refused/reset, TLS, bad chunking
            raise FitConnectUnavailable(f"{what}: {type(exc).__name__}", reason="fitconnect_connection") from None

    def _raise_for(self, response: requests.Response, what: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        wait = retry_after(response.headers.get("Retry-After"))
        if status in (408, 429) or status >= 500:
            raise FitConnectUnavailable(f"{what}: HTTP {status}", reason=f"fitconnect_http_{status}"
                                        if status in (408, 429, 500, 502, 503, 504) else "fitconnect_http_5xx",
                                        retry_after=wait)
        if status in (401, 403):
            raise FitConnectAccessDenied(f"{what}: HTTP {status} for client {self._client_id}",
                                         reason="fitconnect_unauthorized" if status == 401 else "fitconnect_forbidden")
        if status == 404:
            raise FitConnectNotFound(f"{what}: HTTP 404 ({problem_text(response)})")
        if status == 413:
            raise ContentTooLarge(f"{what}: the delivery service refused the size (HTTP 413)",
                                  reason="fitconnect_too_large")
        if status in (400, 409, 415, 422):
            raise FitConnectRefused(f"{what}: HTTP {status}: {problem_text(response)}",
                                    reason=f"fitconnect_{status}", status=status)
        raise FitConnectMalformed(f"{what}: unexpected HTTP {status}", reason="fitconnect_malformed")

    @staticmethod
    def _json(response: requests.Response, what: str) -> dict[str, Any]:
        try:
            body = response.json()
        except (ValueError, json.JSONDecodeError):
            raise FitConnectMalformed(f"{what}: answer is not JSON", reason="fitconnect_malformed") from None
        if not isinstance(body, dict):
            raise FitConnectMalformed(f"{what}: answer is not a JSON object", reason="fitconnect_malformed")
        return body

    def _model(self, model: type[M], response: requests.Response, what: str) -> M:
        body = self._json(response, what)
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            fields = ", ".join(sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()}))
            raise FitConnectMalformed(f"{what}: answer lacks or breaks {fields}",
                                      reason="fitconnect_malformed") from None
