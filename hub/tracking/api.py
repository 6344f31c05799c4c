"""The tracker's HTTP face: the JSON API (docs/tracking-api.yaml), the page under /ui/, and the
ops endpoints /metrics, /healthz, /readyz.

Every API request carries ``Authorization: Bearer <token>``; the token's scope decides what the
store may answer. A portal token never sees another portal's applications: a ``portal`` filter
naming another portal answers an empty list, and another portal's application id answers exactly
what an unknown id answers (same status, body and headers), so the API is no existence oracle.
Answers hold ids, states, times and reasons only, and are never cached (``no-store``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from hub.errors import InvalidQuery, TrackingStoreUnavailable
from hub.http import LivenessCheck, ReadinessCheck
from hub.tracking.auth import TokenRegistry
from hub.tracking.model import ApplicationFilter, Scope, TrackingStore
from hub.tracking.web import (
    LIST_PARAMETERS,
    parse_ident,
    parse_list_query,
    public_entry,
    public_summary,
    scoped_counts,
    scoped_page,
    scoped_reasons,
    scoped_traces,
    single_args,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("hub.tracker.http")

REALM = "hub-tracking"
COUNT_PARAMETERS = frozenset({"destination", "since", "until", "portal"})
DEAD_LETTER_PARAMETERS = LIST_PARAMETERS - {"state"}
COMMON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

# The routes the tracker serves; docs/tracking-api.yaml documents each (a test compares both).
ROUTES = Map([
    Rule("/api/v1/applications", endpoint="api_list", methods=["GET"]),
    Rule("/api/v1/applications/<path:id>", endpoint="api_trace", methods=["GET"]),
    Rule("/api/v1/counts", endpoint="api_counts", methods=["GET"]),
    Rule("/api/v1/dead-letters", endpoint="api_dead_letters", methods=["GET"]),
    Rule("/metrics", endpoint="metrics", methods=["GET"]),
    Rule("/healthz", endpoint="healthz", methods=["GET"]),
    Rule("/readyz", endpoint="readyz", methods=["GET"]),
    Rule("/", endpoint="root", methods=["GET"]),
    Rule("/ui/", endpoint="ui_home", methods=["GET"]),
    Rule("/ui/login", endpoint="ui_login", methods=["GET", "POST"]),
    Rule("/ui/logout", endpoint="ui_logout", methods=["GET"]),
    Rule("/ui/applications", endpoint="ui_applications", methods=["GET"]),
    Rule("/ui/trace", endpoint="ui_trace", methods=["GET"]),
    Rule("/ui/dead-letters", endpoint="ui_dead_letters", methods=["GET"]),
])
_PATH_VARIABLE = re.compile(r"<(?:\w+:)?(\w+)>")


def served_routes() -> dict[str, set[str]]:
    """Path (OpenAPI style, ``{id}``) -> methods, HEAD and OPTIONS left out."""
    routes: dict[str, set[str]] = {}
    for rule in ROUTES.iter_rules():
        path = _PATH_VARIABLE.sub(r"{\1}", rule.rule)
        routes.setdefault(path, set()).update(m for m in (rule.methods or ()) if m not in ("HEAD", "OPTIONS"))
    return routes


class TrackingHttpMetrics:
    """Request counts by route name and status (fixed sets: no ids, no paths)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("hub_tracker_http_requests", "Requests to the tracker's API and page, by route "
                                "and status code", ["route", "code"], registry=registry)
        self.refused = Counter("hub_tracker_http_refused", "Requests refused for want of a valid token, by "
                               "reason (missing, invalid)", ["reason"], registry=registry)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, separators=(",", ":"), sort_keys=True)
    return Response(body + "\n", status=status, content_type="application/json",
                    headers={**COMMON_HEADERS, **(headers or {})})


def _not_found() -> Response:
    """The one answer for an id that is unknown or outside the caller's scope (byte for byte)."""
    return json_response({"error": "not found"}, 404)


class TrackingHttp:
    """The tracker's WSGI application (run by werkzeug's server in `hub tracker`)."""

    def __init__(self, store: TrackingStore, tokens: TokenRegistry, *, page_size: int,
                 registry: CollectorRegistry | None = None, ready: ReadinessCheck | None = None,
                 live: LivenessCheck | None = None, secure_cookies: bool = False) -> None:
        from hub.tracking.page import TrackingPage

        self.store = store
        self.tokens = tokens
        self.page_size = page_size
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = TrackingHttpMetrics(self.registry)
        self._ready = ready or (lambda: (True, "ready"))
        self._live = live or (lambda: (True, "ok"))  # /healthz: the consumer loop ticks
        self.page = TrackingPage(store, tokens, page_size=page_size, secure_cookies=secure_cookies)
        self._api: dict[str, Callable[[Request, Scope, Mapping[str, Any]], Response]] = {
            "api_list": self._list, "api_trace": self._trace, "api_counts": self._counts,
            "api_dead_letters": self._dead_letters}

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        with Request(environ) as request:
            route, response = self._respond(request)
            self.metrics.requests.labels(route, str(response.status_code)).inc()
            return response(environ, start_response)

    def _respond(self, request: Request) -> tuple[str, Response]:
        adapter = ROUTES.bind_to_environ(request.environ)
        try:
            endpoint, values = adapter.match()
        except NotFound:
            return "unmatched", json_response({"error": "not found"}, 404)
        except MethodNotAllowed as exc:
            allow = ", ".join(exc.valid_methods or ())
            return "unmatched", json_response({"error": "method not allowed"}, 405, {"Allow": allow})
        except HTTPException as exc:  # the trailing-slash redirect (/ui -> /ui/)
            return "unmatched", exc.get_response(request.environ)
        name = str(endpoint)
        try:
            return name, self._endpoint(name, request, values)
        except TrackingStoreUnavailable as exc:
            log.warning("tracker http: %s answered 503: %s", name, type(exc).__name__)
            if name.startswith("ui_"):
                return name, self.page.unavailable()
            return name, json_response({"error": "tracking store unavailable, try again later"}, 503,
                                       {"Retry-After": "5"})
        except Exception:
            log.exception("tracker http: %s failed", name)
            return name, json_response({"error": "internal error"}, 500)

    def _endpoint(self, name: str, request: Request, values: Mapping[str, Any]) -> Response:
        if name == "metrics":
            return Response(generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST)
        if name == "healthz":
            alive, reason = self._live()
            return Response(reason + "\n", status=200 if alive else 503, content_type="text/plain",
                            headers=COMMON_HEADERS)
        if name == "readyz":
            ok, detail = self._ready()
            return Response(detail + "\n", status=200 if ok else 503, content_type="text/plain",
                            headers=COMMON_HEADERS)
        if name == "root":
            return Response("", status=303, headers={"Location": "/ui/", **COMMON_HEADERS})
        if name.startswith("ui_"):
            return self.page.handle(name, request)
        scope = self._authenticate(request)
        if isinstance(scope, Response):
            return scope
        try:
            return self._api[name](request, scope, values)
        except InvalidQuery as exc:
            return json_response({"error": str(exc)}, 400)

    def _authenticate(self, request: Request) -> Scope | Response:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        if not header or scheme.lower() != "bearer" or not token.strip():
            self.metrics.refused.labels("missing").inc()
            return json_response({"error": "authentication required: Authorization: Bearer <token>"}, 401,
                                 {"WWW-Authenticate": f'Bearer realm="{REALM}"'})
        scope = self.tokens.scope_for(token.strip())
        if scope is None:
            self.metrics.refused.labels("invalid").inc()
            return json_response({"error": "invalid token"}, 401,
                                 {"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token"'})
        return scope

    # -- the API routes ------------------------------------------------------------------------

    def _list(self, request: Request, scope: Scope, values: Mapping[str, Any]) -> Response:
        query = parse_list_query(single_args(request.args), LIST_PARAMETERS, page_size=self.page_size)
        page = scoped_page(self.store, scope, query.flt, query.limit, query.cursor)
        return json_response({"items": [public_summary(s) for s in page.items], "next_cursor": page.next_cursor})

    def _trace(self, request: Request, scope: Scope, values: Mapping[str, Any]) -> Response:
        if request.args:
            raise InvalidQuery("this route takes no query parameters")
        traces = scoped_traces(self.store, scope, parse_ident(values.get("id")))
        if not traces:
            return _not_found()
        return json_response({"applications": [
            {"application": public_summary(t.summary), "timeline": [public_entry(e) for e in t.timeline]}
            for t in traces]})

    def _counts(self, request: Request, scope: Scope, values: Mapping[str, Any]) -> Response:
        query = parse_list_query(single_args(request.args), COUNT_PARAMETERS, page_size=self.page_size)
        return json_response({"counts": scoped_counts(self.store, scope, query.flt)})

    def _dead_letters(self, request: Request, scope: Scope, values: Mapping[str, Any]) -> Response:
        query = parse_list_query(single_args(request.args), DEAD_LETTER_PARAMETERS, page_size=self.page_size)
        flt = ApplicationFilter(destination=query.flt.destination, state="dead_lettered", since=query.flt.since,
                                until=query.flt.until, portal=query.flt.portal)
        page = scoped_page(self.store, scope, flt, query.limit, query.cursor)
        return json_response({"items": [public_summary(s) for s in page.items], "next_cursor": page.next_cursor,
                              "reasons": scoped_reasons(self.store, scope, flt)})
