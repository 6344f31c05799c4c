"""A tiny Submission API on loopback for the client and adapter tests (real HTTP, werkzeug): just
enough state to follow one sender through token -> destination -> key -> create -> upload ->
submit -> event log, plus one-shot canned answers (``fail_next``) for the status mapping. SETs are
signed with jwcrypto, the independent implementation. Not the project's simulator."""

from __future__ import annotations

import functools
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from jwcrypto import jwk as jc_jwk
from jwcrypto import jws as jc_jws
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

EVENTS = "https://schema.fitko.de/fit-connect/events/"


@functools.lru_cache(maxsize=8)
def _private(pem: bytes) -> jc_jwk.JWK:
    return jc_jwk.JWK.from_pem(pem)  # parsing a 4096-bit PEM costs ~0.2 s: once per key


def sign_set(private_pem: bytes, kid: str, payload: dict[str, Any], *, typ: str = "secevent+jwt",
             alg: str = "PS512") -> str:
    """A compact SET signed by jwcrypto."""
    key = _private(private_pem)
    token = jc_jws.JWS(json.dumps(payload).encode())
    token.add_signature(key, None, json.dumps({"alg": alg, "typ": typ, "kid": kid}))
    return str(token.serialize(compact=True))


def set_payload(event: str, submission_id: str, case_id: str, *, iss: str = "https://fake.invalid",
                body: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"$schema": "https://schema.fitko.de/fit-connect/set-payload/1.0.0/set-payload.schema.json",
            "jti": str(uuid.uuid4()), "iss": iss, "iat": int(time.time()), "sub": f"submission:{submission_id}",
            "txn": f"case:{case_id}", "events": {EVENTS + event: body or {}}}


@dataclass
class Canned:
    method: str
    path: str  # regular expression, full match
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None  # wait for it before answering (a timeout test)


@dataclass
class FakeApi:
    url: str = ""
    service_kid: str = "service-key-1"
    service_key_pem: bytes = b""
    destinations: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    jwks: list[dict[str, Any]] = field(default_factory=list)
    submissions: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, list[str]] = field(default_factory=dict)
    canned: list[Canned] = field(default_factory=list)
    log: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    tokens_issued: int = 0
    valid_tokens: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, method: str, path: str, status: int, body: bytes | dict[str, Any] = b"", *,
                  headers: dict[str, str] | None = None, hold: threading.Event | None = None) -> None:
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        ctype = "application/problem+json" if isinstance(body, dict) else "text/plain"
        self.canned.append(Canned(method, path, status, raw, {"Content-Type": ctype, **(headers or {})}, hold))

    def calls(self, method: str, pattern: str) -> list[tuple[str, str, dict[str, str], bytes]]:
        return [c for c in self.log if c[0] == method and re.fullmatch(pattern, c[1])]

    def add_event(self, case_id: str, token: str) -> None:
        with self.lock:
            self.events.setdefault(case_id, []).append(token)

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data()
        with self.lock:
            self.log.append((request.method, request.path, dict(request.headers), body))
            canned = next((c for c in self.canned if c.method == request.method
                           and re.fullmatch(c.path, request.path)), None)
            if canned is not None:
                self.canned.remove(canned)
        if canned is not None:
            if canned.hold is not None:
                canned.hold.wait(60)
            return Response(canned.body, canned.status, headers=canned.headers)(environ, start_response)
        return self._route(request, body)(environ, start_response)

    def _route(self, request: Request, body: bytes) -> Response:
        path, method = request.path, request.method
        if path == "/token" and method == "POST":
            with self.lock:
                self.tokens_issued += 1
                token = f"token-{self.tokens_issued}"
                self.valid_tokens.add(token)
            return _json({"access_token": token, "token_type": "Bearer", "expires_in": 1800})
        if path == "/.well-known/jwks.json":
            return _json({"keys": self.jwks})
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.valid_tokens:
            return _problem(401, "Unauthorized")
        if path == "/v1/info":
            return _json({"version": {"major": 1, "minor": 1, "patch": 3}})
        if m := re.fullmatch(r"/v1/destinations/([^/]+)", path):
            found = self.destinations.get(m[1])
            return _json(found) if found else _problem(404, "Destination not found")
        if m := re.fullmatch(r"/v1/destinations/([^/]+)/keys/([^/]+)", path):
            key = self.keys.get((m[1], m[2]))
            return _json(key) if key else _problem(404, "Key not found")
        if path == "/v1/submissions" and method == "POST":
            doc = json.loads(body)
            if doc["destinationId"] not in self.destinations:
                return _problem(404, "Destination not found")
            sid, case = str(uuid.uuid4()), str(uuid.uuid4())
            with self.lock:
                self.submissions[sid] = {"case": case, "create": doc, "attachments": {}, "submit": None}
            self.add_event(case, self._sign(set_payload("create-submission", sid, case)))
            return _json({"destinationId": doc["destinationId"], "submissionId": sid, "caseId": case}, 201)
        if m := re.fullmatch(r"/v1/submissions/([^/]+)/attachments/([^/]+)", path):
            sub = self.submissions.get(m[1])
            if sub is None or m[2] not in sub["create"]["announcedAttachments"]:
                return _problem(422, "Attachment not announced")
            with self.lock:
                if sub["submit"] is not None:
                    return _problem(422, "Submission already submitted")
                sub["attachments"][m[2]] = body.decode()
            return Response(status=204)
        if m := re.fullmatch(r"/v1/submissions/([^/]+)", path):
            sub = self.submissions.get(m[1])
            if sub is None:
                return _problem(404, "Submission not found")
            with self.lock:  # one submit wins; the SET follows a moment later (the log lags)
                if sub["submit"] is not None:
                    return _problem(422, "Submission already submitted")
                sub["submit"] = json.loads(body)
            self.add_event(sub["case"], self._sign(set_payload("submit-submission", m[1], sub["case"])))
            return _json({"destinationId": sub["create"]["destinationId"], "submissionId": m[1],
                          "caseId": sub["case"], "attachments": list(sub["attachments"]),
                          "serviceType": sub["create"]["serviceType"]}, 202)
        if m := re.fullmatch(r"/v1/cases/([^/]+)/events", path):
            log = self.events.get(m[1])
            if log is None:
                return _problem(404, "Case not found")
            offset, limit = int(request.args.get("offset", 0)), int(request.args.get("limit", 500))
            page = log[offset:offset + limit]
            return _json({"count": len(page), "offset": offset, "totalCount": len(log), "eventLog": page})
        return _problem(404, "Not Found")

    def _sign(self, payload: dict[str, Any]) -> str:
        return sign_set(self.service_key_pem, self.service_kid, payload)


def _json(doc: Any, status: int = 200) -> Response:
    return Response(json.dumps(doc), status, content_type="application/json")


def _problem(status: int, title: str) -> Response:
    return Response(json.dumps({"type": "about:blank", "title": title, "status": status}), status,
                    content_type="application/problem+json")


@contextmanager
def serve(api: FakeApi) -> Iterator[FakeApi]:
    server = make_server("127.0.0.1", 0, api, threaded=True)
    api.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        for canned in api.canned:
            if canned.hold is not None:
                canned.hold.set()
        server.shutdown()
        thread.join(30)
