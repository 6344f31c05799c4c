"""The tracking page under /ui/: server-rendered HTML, plain links and GET forms, no JavaScript.

Sign-in is the bearer token typed into /ui/login; the browser keeps a signed session naming the
token's entry (hub/tracking/session.py), never the token, in an HttpOnly, SameSite=Strict session
cookie (Secure on https or with ``[tracker] secure_cookies``). It is checked on every page: expired
after 12 hours, and ended at once when its entry is revoked or rotated. The login POST is the only
state-changing request; it must come from this site (Origin, else Referer). Everything shown is
escaped; nothing is fetched from elsewhere (inline CSS only, pinned by its hash in the
Content-Security-Policy).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from hub.errors import InvalidQuery
from hub.status import REPLY_RECEIVED, TRANSPORT_REPORT
from hub.tracking.auth import TokenRegistry
from hub.tracking.html import HTML_HEADERS, e, layout, summary_table, table
from hub.tracking.model import STATES, ApplicationFilter, Scope, Trace, TrackingStore
from hub.tracking.session import SessionSigner
from hub.tracking.web import (
    LIST_PARAMETERS,
    iso,
    parse_ident,
    parse_list_query,
    public_detail,
    scoped_counts,
    scoped_page,
    scoped_reasons,
    scoped_traces,
    single_args,
)

COOKIE = "hub_tracking_session"
COOKIE_PATH = "/ui/"
LOGIN = "/ui/login"
MAX_FORM = 16 * 1024  # a login form is a token and a button
DEAD_LETTER_PARAMETERS = frozenset({"destination", "since", "until", "portal", "cursor", "limit"})


class TrackingPage:
    """Handles the /ui/ routes that ``TrackingHttp`` matched."""

    def __init__(self, store: TrackingStore, tokens: TokenRegistry, *, page_size: int,
                 secure_cookies: bool = False, sessions: SessionSigner | None = None) -> None:
        self.store = store
        self.tokens = tokens
        self.page_size = page_size
        self.secure_cookies = secure_cookies
        self.sessions = sessions if sessions is not None else SessionSigner(tokens)

    def handle(self, endpoint: str, request: Request) -> Response:
        if endpoint == "ui_login":
            return self._login(request)
        if endpoint == "ui_logout":
            return self._logout(request)
        scope = self.sessions.scope_for(request.cookies.get(COOKIE, ""))
        if scope is None:
            return _redirect(LOGIN)
        view = {"ui_home": self._home, "ui_applications": self._applications, "ui_trace": self._trace,
                "ui_dead_letters": self._dead_letters}[endpoint]
        try:
            return view(request, scope)
        except InvalidQuery as exc:
            return _html(layout("Invalid request", f'<p role="alert" class="error">{e(exc)}</p>'
                                + _search_form(""), scope), 400)

    def unavailable(self) -> Response:
        return _html(layout("Tracking store unavailable", "<p>The tracking store cannot answer right now. "
                            'Please try again in a moment.</p><p><a href="/ui/">Back to the overview</a></p>'),
                     503, {"Retry-After": "5"})

    # -- sign in and out -----------------------------------------------------------------------

    def _login(self, request: Request) -> Response:
        if request.method != "POST":
            return _html(_login_page(""))
        if not _same_origin(request):
            return _html(_login_page("This sign-in form was sent from another site and is refused."), 403)
        request.max_form_memory_size = MAX_FORM
        request.max_content_length = MAX_FORM
        try:
            token = request.form.get("token", "").strip()
        except RequestEntityTooLarge:
            return _html(_login_page("This sign-in request is too large."), 413)
        entry = self.tokens.identify(token)
        if entry is None:
            return _html(_login_page("This token is not valid (or no longer valid). Please check it."), 401)
        response = _redirect("/ui/")
        # a session cookie (no Max-Age): the 12 hours are in the signed value and checked here
        response.set_cookie(COOKIE, self.sessions.issue(entry), path=COOKIE_PATH, httponly=True,
                            samesite="Strict", secure=self._secure(request))
        return response

    def _logout(self, request: Request) -> Response:
        response = _redirect(LOGIN)
        response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="Strict",
                               secure=self._secure(request))
        return response

    def _secure(self, request: Request) -> bool:
        """Secure on https, and always behind a TLS-terminating proxy (it talks http to us)."""
        return self.secure_cookies or request.scheme == "https"

    # -- pages ---------------------------------------------------------------------------------

    def _home(self, request: Request, scope: Scope) -> Response:
        counts = scoped_counts(self.store, scope, ApplicationFilter())
        rows = [(f'<a href="/ui/applications?{urlencode({"state": s})}">{e(s)}</a>', str(counts.get(s, 0)))
                for s in STATES]
        body = (_search_form("") + '<section aria-labelledby="list-heading"><h2 id="list-heading">List '
                "applications</h2>" + _list_form({}) + "</section>"
                + '<section aria-labelledby="counts-heading"><h2 id="counts-heading">Applications per state</h2>'
                + table("Applications per state", ("State", "Applications"), rows, row_headers=True)
                + "</section>")
        return _html(layout("Tracking overview", body, scope))

    def _applications(self, request: Request, scope: Scope) -> Response:
        args = single_args(request.args)
        query = parse_list_query(args, LIST_PARAMETERS, page_size=self.page_size)
        page = scoped_page(self.store, scope, query.flt, query.limit, query.cursor)
        body = ('<section aria-labelledby="filter-heading"><h2 id="filter-heading">Filter</h2>'
                + _list_form(args) + "</section>"
                + '<section aria-labelledby="result-heading"><h2 id="result-heading">Results</h2>'
                + summary_table(page.items) + _pager("/ui/applications", args, page.next_cursor) + "</section>")
        return _html(layout("Applications", body, scope))

    def _trace(self, request: Request, scope: Scope) -> Response:
        args = single_args(request.args)
        unknown = set(args) - {"id"}
        if unknown:
            raise InvalidQuery(f"unknown parameter '{min(unknown)[:40]}' (allowed: id)")
        traces = scoped_traces(self.store, scope, parse_ident(args.get("id")))
        if not traces:  # unknown and another portal's id: the same page, byte for byte
            return _html(layout("Application not found", '<p role="alert" class="error">No application '
                                "with this id is visible to you.</p>" + _search_form(""), scope), 404)
        title = "Application" if len(traces) == 1 else f"{len(traces)} applications"
        return _html(layout(title, _search_form(traces[0].summary.message_id)
                            + "".join(_trace_section(t, n) for n, t in enumerate(traces, 1)), scope))

    def _dead_letters(self, request: Request, scope: Scope) -> Response:
        args = single_args(request.args)
        query = parse_list_query(args, DEAD_LETTER_PARAMETERS, page_size=self.page_size)
        flt = ApplicationFilter(destination=query.flt.destination, state="dead_lettered", since=query.flt.since,
                                until=query.flt.until, portal=query.flt.portal)
        reasons = sorted(scoped_reasons(self.store, scope, flt).items(), key=lambda kv: (-kv[1], kv[0]))
        page = scoped_page(self.store, scope, flt, query.limit, query.cursor)
        reason_rows = [(e(reason), str(count)) for reason, count in reasons]
        body = ('<section aria-labelledby="reasons-heading"><h2 id="reasons-heading">Reasons</h2>'
                + (table("Dead-lettered applications per reason", ("Reason", "Applications"), reason_rows,
                         row_headers=True) if reason_rows else "<p>No application is dead-lettered.</p>")
                + '</section><section aria-labelledby="dead-heading"><h2 id="dead-heading">Dead-lettered '
                "applications</h2>" + summary_table(page.items)
                + _pager("/ui/dead-letters", args, page.next_cursor) + "</section>")
        return _html(layout("Dead letters", body, scope))


def _same_origin(request: Request) -> bool:
    """The login POST came from a page of this host: Origin, else Referer (a browser sends one)."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source:
        return True  # not a browser (browsers send Origin on every POST); nothing to forge
    parts = urlsplit(source)
    return parts.scheme in ("http", "https") and parts.netloc == request.host


def _redirect(location: str) -> Response:
    return Response("", status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _html(text: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(text, status=status, content_type="text/html; charset=utf-8",
                    headers={**HTML_HEADERS, **(headers or {})})


def _login_page(error: str) -> str:
    alert = f'<p role="alert" class="error" id="login-error">{e(error)}</p>' if error else ""
    described = ' aria-describedby="login-error" aria-invalid="true"' if error else ""
    return layout("Sign in", alert + '<form method="post" action="/ui/login">'
                  '<p><label for="token">Access token</label>'
                  f'<input type="password" id="token" name="token" autocomplete="off" required{described}></p>'
                  '<p><button type="submit">Sign in</button></p></form>'
                  "<p>Ask the hub's operators for a token for your portal.</p>")


def _search_form(value: str) -> str:
    return ('<section aria-labelledby="search-heading"><h2 id="search-heading">Find an application</h2>'
            '<form method="get" action="/ui/trace" role="search"><p>'
            '<label for="search-id">Message id, correlation id or transport message id</label>'
            f'<input type="text" id="search-id" name="id" required maxlength="200" value="{e(value)}">'
            ' <button type="submit">Search</button></p></form></section>')


def _list_form(args: dict[str, str]) -> str:
    state = args.get("state", "")
    options = '<option value="">any state</option>' + "".join(
        f'<option value="{e(s)}"{" selected" if s == state else ""}>{e(s)}</option>' for s in STATES)
    return ('<form method="get" action="/ui/applications" class="filters">'
            '<p><label for="f-destination">Destination</label>'
            f'<input type="text" id="f-destination" name="destination" value="{e(args.get("destination", ""))}" '
            'placeholder="azr:000100"></p>'
            f'<p><label for="f-state">State</label><select id="f-state" name="state">{options}</select></p>'
            '<p><label for="f-since">Last event since (ISO 8601, UTC, or epoch seconds)</label>'
            f'<input type="text" id="f-since" name="since" value="{e(args.get("since", ""))}" '
            'placeholder="2026-11-01T08:00:00Z"></p>'
            '<p><button type="submit">List</button></p></form>')


def _pager(path: str, args: dict[str, str], next_cursor: str | None) -> str:
    kept = {k: v for k, v in args.items() if k != "cursor" and v}
    links = []
    if args.get("cursor"):
        links.append(f'<li><a href="{e(path + ("?" + urlencode(kept) if kept else ""))}">First page</a></li>')
    if next_cursor:
        links.append(f'<li><a href="{e(path + "?" + urlencode({**kept, "cursor": next_cursor}))}" rel="next">'
                     "Next page</a></li>")
    return f'<nav aria-label="Pages"><ul class="pager">{"".join(links)}</ul></nav>' if links else ""


def _detail_text(event: str, detail: dict[str, Any]) -> str:
    shown = public_detail(detail)
    if event == REPLY_RECEIVED:
        parts = [f"reply {shown.get('message_type') or 'of unknown type'}"]
        if shown.get("reply_id"):
            parts.append(f"reply id {shown['reply_id']}")
        return ", ".join(parts)
    if event == TRANSPORT_REPORT and "traffic_light" in shown:
        return f"traffic light {shown['traffic_light']}"
    return ", ".join(f"{k}: {v}" for k, v in sorted(shown.items()) if k != "xta_message_id")


def _trace_section(trace: Trace, number: int) -> str:
    s = trace.summary
    facts = [("Message id", s.message_id), ("Portal", s.portal), ("Destination", s.destination),
             ("State", s.state or "(no state yet)"), ("State since", iso(s.state_at)),
             ("Correlation id", s.correlation_id or ""), ("Application reference", s.application_ref or ""),
             ("Transport message id", s.transport_message_id or ""), ("Adapter", s.adapter or ""),
             ("Attempts", str(s.attempts)), ("Reason", s.reason or ""),
             ("Transport report", s.transport_report or ""), ("Replies", str(s.replies)),
             ("First event", iso(s.first_at)), ("Last event", iso(s.last_at))]
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts if v)
    rows = [(f"<time datetime=\"{e(iso(t.at))}\">{e(iso(t.at))}</time>", e(t.event),
             e("" if t.attempt is None else t.attempt), e(t.adapter or ""), e(t.destination or ""),
             e(t.reason or ""), e(t.transport_message_id or ""), e(_detail_text(t.event, t.detail)))
            for t in trace.timeline]
    return (f'<section aria-labelledby="app-{number}"><h2 id="app-{number}">Application {e(s.message_id)}</h2>'
            f'<dl class="facts">{dl}</dl><h3>Timeline</h3>'
            + table("Timeline, oldest event first (times in UTC)",
                    ("Time (UTC)", "Event", "Attempt", "Adapter", "Destination", "Reason", "Transport message id",
                     "Details"), rows, row_headers=False, css="timeline")
            + "</section>")
