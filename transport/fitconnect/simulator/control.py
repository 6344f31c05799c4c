"""The JSON inspection and control API of the FIT-Connect simulator (``/_simulator/...``), a mixin.

    GET  /_simulator/health                          {"status": "ok"}
    GET  /_simulator/submissions[?destinationId=ID]  summaries (ids, status, sizes; no content)
    GET  /_simulator/submissions/<id>                one summary
    POST /_simulator/submissions/<id>/accept         act as the receiver: accept
    POST /_simulator/submissions/<id>/reject         ... reject with {"problems": [...]}
    GET  /_simulator/faults                          standing faults and the pending 429 count
    POST /_simulator/faults                          change some: {"rate_429": 0.5, "retry_after": 2,
                                                     "rate_5xx": 0.1, "status_5xx": 503, "latency": 0.2,
                                                     "outage": {"start": 0, "duration": 30, "mode": "503"|"drop"}
                                                     | null, "next_429": 5}
    POST /_simulator/faults/clear                    no faults
    POST /_simulator/tokens                          {"lifetime": 5} for tokens issued from now
    POST /_simulator/tokens/invalidate               every issued token is refused from now
    GET  /_simulator/violations                      requests/responses that broke the OpenAPI document

Not part of the Submission API: no token, no OpenAPI check, no fault injection.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from transport.fitconnect.simulator.faults import Faults, Tokens
from transport.fitconnect.simulator.service import Problem
from transport.fitconnect.simulator.store import SubmissionStore
from transport.http_server import json_response


class ControlApi:
    """``/_simulator`` handlers; the host class provides store, faults, tokens and the receiver methods."""

    store: SubmissionStore
    faults: Faults
    tokens: Tokens
    violations: Any
    receiver_accept: Any
    receiver_reject: Any

    _control_map: Map | None = None

    def _control(self, request: Request) -> Response:
        if self._control_map is None:
            self._control_map = Map([
                Rule("/_simulator/health", endpoint="health", methods=["GET"]),
                Rule("/_simulator/submissions", endpoint="submissions", methods=["GET"]),
                Rule("/_simulator/submissions/<submission_id>", endpoint="submission", methods=["GET"]),
                Rule("/_simulator/submissions/<submission_id>/accept", endpoint="accept", methods=["POST"]),
                Rule("/_simulator/submissions/<submission_id>/reject", endpoint="reject", methods=["POST"]),
                Rule("/_simulator/faults", endpoint="faults", methods=["GET", "POST"]),
                Rule("/_simulator/faults/clear", endpoint="clear", methods=["POST"]),
                Rule("/_simulator/tokens", endpoint="tokens", methods=["POST"]),
                Rule("/_simulator/tokens/invalidate", endpoint="invalidate", methods=["POST"]),
                Rule("/_simulator/violations", endpoint="violations", methods=["GET"]),
            ])
        try:
            endpoint, args = self._control_map.bind_to_environ(request.environ).match()
        except (NotFound, MethodNotAllowed):
            return json_response({"error": "no such control endpoint"}, 404)
        try:
            response: Response = getattr(self, f"_ctl_{endpoint}")(request, **args)
            return response
        except (ValueError, TypeError) as exc:
            return json_response({"error": f"bad request: {exc}"}, 400)
        except KeyError:
            return json_response({"error": "no such submission"}, 404)
        except Problem as problem:
            return json_response({"error": problem.title, "detail": problem.detail}, problem.status)

    def _ctl_health(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    def _ctl_submissions(self, request: Request) -> Response:
        return json_response([s.summary() for s in self.store.all(request.args.get("destinationId"))])

    def _ctl_submission(self, request: Request, submission_id: str) -> Response:
        submission = self.store.get(submission_id)
        if submission is None:
            raise KeyError(submission_id)
        return json_response(submission.summary())

    def _ctl_accept(self, request: Request, submission_id: str) -> Response:
        return json_response(self.receiver_accept(submission_id).summary())

    def _ctl_reject(self, request: Request, submission_id: str) -> Response:
        body = json.loads(request.get_data() or b"{}")
        problems = body.get("problems") if isinstance(body, dict) else None
        if not isinstance(problems, list):
            raise TypeError("problems must be a list")
        return json_response(self.receiver_reject(submission_id, problems).summary())

    def _ctl_faults(self, request: Request) -> Response:
        if request.method == "POST":
            changes = json.loads(request.get_data() or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("a JSON object of fault settings expected")
            self.faults.update(changes)
        return json_response(self.faults.describe())

    def _ctl_clear(self, request: Request) -> Response:
        self.faults.clear()
        return json_response(self.faults.describe())

    def _ctl_tokens(self, request: Request) -> Response:
        body = json.loads(request.get_data() or b"{}")
        if not isinstance(body, dict) or "lifetime" not in body:
            raise ValueError("{\"lifetime\": seconds} expected")
        self.tokens.lifetime = float(body["lifetime"])
        return json_response({"lifetime": self.tokens.lifetime})

    def _ctl_invalidate(self, request: Request) -> Response:
        self.tokens.invalidate_all()
        return Response(status=204)

    def _ctl_violations(self, request: Request) -> Response:
        return json_response([asdict(v) for v in self.violations])
