"""The WSGI application of the FIT-Connect simulator: routing, tokens, faults, OpenAPI checks.

Per API call: fault injection first (an outage or a rate limit answers before anything is read),
then the bearer token (operations the document declares without security are public: info, JWKS,
keys), then the request against the OpenAPI document (400/415 naming what is wrong), the handler,
and the response against the document. Deliberate answers (faults, flawed keys, the simulator's
own complaints about invalid requests) are not held against the document.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from transport.fitconnect.simulator import jose
from transport.fitconnect.simulator.conformance import RequestInvalid, SpecChecker, Violation
from transport.fitconnect.simulator.control import ControlApi
from transport.fitconnect.simulator.faults import Faults, Tokens
from transport.fitconnect.simulator.service import DeliveryService, Problem
from transport.fitconnect.simulator.settings import FitConnectSimulatorSettings
from transport.fitconnect.simulator.store import Submission
from transport.http_server import ConnectionDropped, drop_connection, json_response

log = logging.getLogger(__name__)
API_VERSION = {"major": 1, "minor": 1, "patch": 3}
PUBLIC = frozenset({"info", "jwks", "key"})
NO_CACHE = {"Cache-Control": "no-cache"}
_PAGE_LIMIT = 500


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> Response:
    return json_response(problem.body(), problem.status, headers, "application/problem+json")


class FitConnectSimulator(ControlApi):
    """The delivery service as a WSGI app (usable without a server, e.g. with werkzeug's test client)."""

    def __init__(self, settings: FitConnectSimulatorSettings) -> None:
        self.settings = settings
        self.service = DeliveryService(settings)
        self.store = self.service.store
        self.faults = Faults(settings.faults, settings.clock)
        self.tokens = Tokens(settings.client_id, settings.client_secret, settings.token_lifetime, settings.clock)
        self.checker = SpecChecker(settings.openapi) if settings.openapi is not None else None
        self._routes = Map([
            Rule("/token", endpoint="token", methods=["POST"]),
            Rule("/v1/info", endpoint="info", methods=["GET"]),
            Rule("/.well-known/jwks.json", endpoint="jwks", methods=["GET"]),
            Rule("/v1/destinations/<destination_id>", endpoint="destination", methods=["GET"]),
            Rule("/v1/destinations/<destination_id>/keys/<kid>", endpoint="key", methods=["GET"]),
            Rule("/v1/submissions", endpoint="create", methods=["POST"]),
            Rule("/v1/submissions", endpoint="pickup", methods=["GET"]),
            Rule("/v1/submissions/<submission_id>", endpoint="submit", methods=["PUT"]),
            Rule("/v1/submissions/<submission_id>", endpoint="fetch", methods=["GET"]),
            Rule("/v1/submissions/<submission_id>/attachments/<attachment_id>", endpoint="upload", methods=["PUT"]),
            Rule("/v1/submissions/<submission_id>/attachments/<attachment_id>", endpoint="download",
                 methods=["GET"]),
            Rule("/v1/cases/<case_id>/events", endpoint="events", methods=["GET"]),
            Rule("/v1/cases/<case_id>/events", endpoint="post_event", methods=["POST"]),
        ])

    @property
    def violations(self) -> list[Violation]:
        return self.checker.violations if self.checker is not None else []

    # ------------------------------------------------------------------ receiver, from Python

    def receiver_accept(self, submission_id: str) -> Submission:
        """Accept the submission as its destination would (a signed accept-submission SET)."""
        submission = self._known(submission_id)
        if submission.encrypted_metadata is None:
            raise Problem(409, "invalid-state-transition", "Invalid state transition",
                          f"the submission is {submission.status}")
        tags = {"metadata": jose.authentication_tag(submission.encrypted_metadata),
                "attachments": {a: jose.authentication_tag(t) for a, t in submission.uploads.items()}}
        if submission.encrypted_data:
            tags["data"] = jose.authentication_tag(submission.encrypted_data)
        token = self.service.receiver_set(submission_id, jose.ACCEPT, {"authenticationTags": tags})
        return self.service.receiver_event(submission.case_id, token)

    def receiver_reject(self, submission_id: str, problems: list[dict[str, Any]]) -> Submission:
        """Reject the submission as its destination would, with RFC 7807-style ``problems``."""
        submission = self._known(submission_id)
        token = self.service.receiver_set(submission_id, jose.REJECT, {"problems": list(problems)})
        return self.service.receiver_event(submission.case_id, token)

    def invalidate_tokens(self) -> None:
        self.tokens.invalidate_all()

    def _known(self, submission_id: str) -> Submission:
        submission = self.store.get(submission_id)
        if submission is None:
            raise KeyError(submission_id)
        return submission

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._dispatch(request)
        except ConnectionDropped:
            start_response("500 Connection Dropped", [("Content-Length", "0")])
            return [b""]
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        if request.path.startswith("/_simulator/"):
            return self._control(request)
        disruption = self.faults.before_request()
        latency = self.faults.latency
        if latency > 0:
            time.sleep(latency)
        if disruption is not None:
            if disruption.drop:
                drop_connection(request)
            headers = {"Retry-After": str(disruption.retry_after)} if disruption.retry_after is not None else None
            return problem_response(Problem(disruption.status or 503, "unavailable", disruption.reason), headers)
        try:
            endpoint, args = self._routes.bind_to_environ(request.environ).match()
        except (NotFound, MethodNotAllowed) as exc:
            if self.checker is not None:
                try:
                    self.checker.check_request(request)
                except RequestInvalid:
                    pass  # recorded
            status = 405 if isinstance(exc, MethodNotAllowed) else 404
            return problem_response(Problem(status, "not-found", "Not found", "no such operation"))
        if endpoint == "token":
            return self._token(request)
        if endpoint not in PUBLIC and not self._authorized(request):
            return problem_response(Problem(401, "unauthorized", "Unauthorized",
                                            "a valid, unexpired bearer token is required"),
                                    {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if self.checker is not None:
            try:
                self.checker.check_request(request)
            except RequestInvalid as exc:
                return problem_response(Problem(exc.status, "invalid-request", "Request breaks the API", str(exc)))
        deliberate = False
        try:
            handler: Callable[..., tuple[Response, bool]] = getattr(self, f"_op_{endpoint}")
            response, deliberate = handler(request, **args)
        except Problem as problem:
            response = problem_response(problem)
        # the request handler is the simulator's process boundary: a bug is logged and answered 500
        except Exception as exc:  # noqa: BLE001
            log.error("FIT-Connect simulator: %s failed: %s", endpoint, type(exc).__name__)
            response = problem_response(Problem(500, "internal", "Internal error of the simulator"))
            deliberate = True
        if self.checker is not None and not deliberate:
            self.checker.check_response(request, response)
        return response

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and bool(token) and self.tokens.valid(token.strip())

    def _token(self, request: Request) -> Response:
        form = request.form
        if form.get("grant_type") != "client_credentials":
            return json_response({"error": "unsupported_grant_type"}, 400)
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if request.authorization is not None and request.authorization.type == "basic":  # RFC 6749 2.3.1
            client_id, secret = request.authorization.username or "", request.authorization.password or ""
        if not self.tokens.credentials_match(client_id, secret):
            return json_response({"error": "invalid_client"}, 401)
        token, lifetime = self.tokens.issue()
        return json_response({"access_token": token, "token_type": "Bearer", "expires_in": lifetime},
                             headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------ operations: (response, deliberate)

    def _op_info(self, request: Request) -> tuple[Response, bool]:
        return json_response({"version": API_VERSION}), False

    def _op_jwks(self, request: Request) -> tuple[Response, bool]:
        return json_response(self.service.jwks()), False

    def _op_destination(self, request: Request, destination_id: str) -> tuple[Response, bool]:
        return json_response(self.service.destination_document(destination_id), headers=NO_CACHE), False

    def _op_key(self, request: Request, destination_id: str, kid: str) -> tuple[Response, bool]:
        jwk, flawed = self.service.key_document(destination_id, kid)
        return json_response(jwk, headers=NO_CACHE), flawed

    def _op_create(self, request: Request) -> tuple[Response, bool]:
        submission = self.service.create(_json_body(request))
        return json_response({"destinationId": submission.destination_id, "submissionId": submission.submission_id,
                              "caseId": submission.case_id}, 201), False

    def _op_upload(self, request: Request, submission_id: str, attachment_id: str) -> tuple[Response, bool]:
        if request.mimetype != "application/jose":
            raise Problem(415, "unsupported-media-type", "Unsupported Media Type", "send application/jose")
        self.service.upload(submission_id, attachment_id, request.get_data(as_text=True))
        return Response(status=204), False

    def _op_submit(self, request: Request, submission_id: str) -> tuple[Response, bool]:
        submission = self.service.submit(submission_id, _json_body(request))
        if self.settings.auto_accept:
            self.receiver_accept(submission_id)
        return json_response(_reduced(submission), 202), False

    def _op_events(self, request: Request, case_id: str) -> tuple[Response, bool]:
        log_ = self.service.events(case_id)
        offset, limit = _page(request)
        page = log_[offset:offset + limit]
        return json_response({"count": len(page), "offset": offset, "totalCount": len(log_), "eventLog": page}), False

    def _op_pickup(self, request: Request) -> tuple[Response, bool]:
        found = self.store.all(request.args.get("destinationId"), status="submitted")
        offset, limit = _page(request)
        page = found[offset:offset + limit]
        return json_response({"count": len(page), "offset": offset, "totalCount": len(found), "submissions": [
            {"destinationId": s.destination_id, "submissionId": s.submission_id, "caseId": s.case_id}
            for s in page]}), False

    def _op_fetch(self, request: Request, submission_id: str) -> tuple[Response, bool]:
        submission = self._fetchable(submission_id)
        body = _reduced(submission)
        body["encryptedMetadata"] = submission.encrypted_metadata
        if submission.encrypted_data is not None:
            body["encryptedData"] = submission.encrypted_data
        return json_response(body), False

    def _op_download(self, request: Request, submission_id: str, attachment_id: str) -> tuple[Response, bool]:
        token = self._fetchable(submission_id).uploads.get(attachment_id)
        if token is None:
            raise Problem(404, "attachment-not-found", "Attachment not found")
        return Response(token, content_type="application/jose"), False

    def _op_post_event(self, request: Request, case_id: str) -> tuple[Response, bool]:
        self.service.receiver_event(case_id, request.get_data(as_text=True).strip())
        return Response(status=204), False

    def _fetchable(self, submission_id: str) -> Submission:
        submission = self.store.get(submission_id)
        if submission is None or submission.status != "submitted":
            raise Problem(404, "submission-not-found", "Submission not found",
                          "no submission in state submitted with this id")
        return submission


def _reduced(submission: Submission) -> dict[str, Any]:
    return {"destinationId": submission.destination_id, "submissionId": submission.submission_id,
            "caseId": submission.case_id, "attachments": sorted(submission.uploads),
            "serviceType": submission.service_type}


def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.get_data() or b"null")
    except ValueError:
        raise Problem(400, "bad-request", "Bad Request", "body is not JSON") from None
    if not isinstance(body, dict):
        raise Problem(400, "bad-request", "Bad Request", "body is not a JSON object")
    return body


def _page(request: Request) -> tuple[int, int]:
    try:
        offset = int(request.args.get("offset", 0))
        limit = int(request.args.get("limit", 100))
    except ValueError:
        raise Problem(400, "bad-request", "Bad Request", "offset and limit are integers") from None
    if offset < 0 or not 1 <= limit <= _PAGE_LIMIT:
        raise Problem(400, "bad-request", "Bad Request", "offset >= 0, 1 <= limit <= 500")
    return offset, limit
