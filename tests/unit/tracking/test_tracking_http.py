"""The tracking HTTP app in process (werkzeug's test client, a real SQLite store): the OpenAPI
document against the served routes, parameters, headers, escaping, sign-in rules."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from werkzeug.test import Client

from hub.status import StatusEvent
from hub.tracking.api import (
    COUNT_PARAMETERS,
    DEAD_LETTER_PARAMETERS,
    TrackingHttp,
    served_routes,
)
from hub.tracking.auth import TokenRegistry, hash_token
from hub.tracking.model import STATES, ApplicationSummary, Scope, TimelineEntry
from hub.tracking.page import COOKIE
from hub.tracking.store import open_store
from hub.tracking.web import LIST_PARAMETERS, MAX_LIMIT, parse_time, public_detail

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "tracking-api.yaml"
HOSTILE = '<script>alert("x")</script>&"\''
T0 = 1_790_000_000.0


@pytest.fixture
def app(tmp_path: Path) -> Iterator[TrackingHttp]:
    store = open_store("sqlite:///tracking.db", base=tmp_path)
    store.ingest([
        StatusEvent("m-1", "accepted", "portal-a", "azr:000100", "alpha", at=T0, attempt=1),
        StatusEvent("m-1", "dead_lettered", "portal-a", "azr:000100", "alpha", at=T0 + 1, attempt=1,
                    reason="schema_violation", detail={"reason": "schema_violation", "error": "SchemaViolation",
                                                       "free_text": "Frau Erika Mustermann"}),
        StatusEvent(HOSTILE, "accepted", "portal-a", "azr:000100", "alpha", at=T0 + 2, correlation_id=HOSTILE),
    ])
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'[[tokens]]\nname = "a"\nportal = "portal-a"\nsha256 = "{hash_token("tok-a")}"\n')
    yield TrackingHttp(store, TokenRegistry.from_file(tokens), page_size=50)
    store.close()


@pytest.fixture
def client(app: TrackingHttp) -> Client:
    return Client(app)


AUTH = {"Authorization": "Bearer tok-a"}


def _doc() -> dict[str, Any]:
    return yaml.safe_load(DOC.read_text(encoding="utf-8"))


def _params(doc: dict[str, Any], path: str, method: str = "get") -> set[str]:
    names = set()
    for p in doc["paths"][path][method].get("parameters", []):
        if "$ref" in p:
            p = doc["components"]["parameters"][p["$ref"].rsplit("/", 1)[-1]]
        if p["in"] == "query":
            names.add(p["name"])
    return names


def test_every_served_route_is_documented_and_every_documented_route_is_served() -> None:
    doc = _doc()
    assert doc["openapi"].startswith("3.1.")
    documented = {path: {m.upper() for m in ops if m in ("get", "post", "put", "patch", "delete")}
                  for path, ops in doc["paths"].items()}
    assert documented == served_routes()


def test_the_documented_query_parameters_are_the_accepted_ones() -> None:
    doc = _doc()
    assert _params(doc, "/api/v1/applications") == LIST_PARAMETERS
    assert _params(doc, "/api/v1/counts") == COUNT_PARAMETERS
    assert _params(doc, "/api/v1/dead-letters") == DEAD_LETTER_PARAMETERS
    assert _params(doc, "/ui/applications") == LIST_PARAMETERS


def test_the_documented_schemas_match_the_answers() -> None:
    schemas = _doc()["components"]["schemas"]
    assert set(schemas["Application"]["properties"]) == set(ApplicationSummary.__dataclass_fields__)
    assert set(schemas["TimelineEntry"]["properties"]) == set(TimelineEntry.__dataclass_fields__)
    assert tuple(schemas["State"]["enum"]) == STATES
    assert _doc()["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": _doc()["components"]["securitySchemes"]["bearer"]["description"]}
    api_paths = [p for p in _doc()["paths"] if p.startswith("/api/")]
    assert api_paths and all("401" in _doc()["paths"][p]["get"]["responses"] for p in api_paths)


@pytest.mark.parametrize(("text", "expected"), [
    ("1790000000", 1_790_000_000.0), ("1790000000.5", 1_790_000_000.5),
    ("2026-09-21T14:26:40Z", 1_790_000_800.0), ("2026-09-21T16:26:40+02:00", 1_790_000_800.0),
    ("2026-09-21T14:26:40", 1_790_000_800.0),  # no offset: UTC
])
def test_times_are_iso_8601_or_epoch_seconds(text: str, expected: float) -> None:
    assert parse_time("since", text) == expected


@pytest.mark.parametrize("query", ["since=yesterday", "until=2026-13-01", "state=lost", "limit=0", "limit=-1",
                                   "limit=ten", "sate=delivered", "state=delivered&state=accepted",
                                   "cursor=%00", "destination=" + "x" * 300])
def test_bad_parameters_are_a_400_naming_the_problem_never_echoing_it(client: Client, query: str) -> None:
    response = client.get(f"/api/v1/applications?{query}", headers=AUTH)
    assert response.status_code == 400
    body = response.get_json()
    assert set(body) == {"error"} and "Traceback" not in body["error"]
    assert "yesterday" not in body["error"] and "x" * 50 not in body["error"] and "tok-a" not in body["error"]


def test_a_bad_cursor_is_a_400(client: Client) -> None:
    assert client.get("/api/v1/applications?cursor=bm90LWEtY3Vyc29y", headers=AUTH).status_code == 400


def test_the_limit_is_capped(client: Client, app: TrackingHttp, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []
    real = app.store.applications

    def spy(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs["limit"])
        return real(*args, **kwargs)

    monkeypatch.setattr(app.store, "applications", spy)
    assert client.get("/api/v1/applications?limit=100000", headers=AUTH).status_code == 200
    assert client.get("/api/v1/applications", headers=AUTH).status_code == 200
    assert asked == [MAX_LIMIT, 50]


def test_a_portal_token_asking_for_another_portal_is_answered_without_asking_the_store(
        client: Client, app: TrackingHttp, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: the store is scoped too, but a foreign ``portal`` filter never reaches it."""
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the store was asked about another portal")

    for name in ("applications", "counts", "dead_letter_reasons"):
        monkeypatch.setattr(app.store, name, refuse)
    assert client.get("/api/v1/applications?portal=portal-b", headers=AUTH).get_json() == {
        "items": [], "next_cursor": None}
    assert client.get("/api/v1/counts?portal=portal-b", headers=AUTH).get_json() == {
        "counts": dict.fromkeys(STATES, 0)}
    assert client.get("/api/v1/dead-letters?portal=portal-b", headers=AUTH).get_json() == {
        "items": [], "next_cursor": None, "reasons": {}}


def test_answers_are_not_cached_and_hold_only_public_details(client: Client) -> None:
    response = client.get("/api/v1/applications/m-1", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Mustermann" not in response.get_data(as_text=True)
    dead = response.get_json()["applications"][0]["timeline"][-1]
    assert dead["detail"] == {"reason": "schema_violation", "error": "SchemaViolation"}


def test_public_detail_keeps_ids_and_codes_only() -> None:
    detail = {"xta_message_id": "urn:x", "traffic_light": "red", "errors": [{"code": "E1", "reason": "Herr X"}],
              "reason": "r" * 500, "nested": {"a": 1}, "message_type": "OZG.Statusmeldung.130104"}
    assert public_detail(detail) == {"xta_message_id": "urn:x", "traffic_light": "red", "error_codes": ["E1"],
                                     "message_type": "OZG.Statusmeldung.130104"}


def test_401_carries_www_authenticate_and_never_the_token(client: Client) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic dG9rLWE="},
                    {"Authorization": "tok-a"}, {"Authorization": "Bearer "}):
        response = client.get("/api/v1/counts", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer ")
        assert "wrong-token" not in response.get_data(as_text=True)


def test_ops_endpoints_need_no_token(client: Client) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert b"hub_tracker_http_requests_total" in client.get("/metrics").data


def test_unknown_routes_and_methods(client: Client) -> None:
    assert client.get("/api/v2/applications", headers=AUTH).status_code == 404
    assert client.post("/api/v1/counts", headers=AUTH).status_code == 405
    assert client.get("/").headers["Location"].endswith("/ui/")


def login(client: Client, token: str = "tok-a", **headers: str) -> Any:
    return client.post("/ui/login", data={"token": token}, headers=headers)


def test_the_page_redirects_to_the_login_without_a_valid_cookie(client: Client) -> None:
    for path in ("/ui/", "/ui/applications", "/ui/trace?id=m-1", "/ui/dead-letters"):
        response = client.get(path)
        assert response.status_code == 303 and response.headers["Location"].endswith("/ui/login")
    client.set_cookie(COOKIE, "not-a-token", path="/ui/")
    assert client.get("/ui/").status_code == 303


def test_login_sets_a_strict_http_only_session_cookie_secure_on_https(client: Client) -> None:
    response = login(client, Origin="http://localhost")
    assert response.status_code == 303
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui/" in cookie
    assert "Secure" not in cookie
    # a session cookie: the 12 hours are in the signed value (checked by the server), not in the browser
    assert "Max-Age" not in cookie and "Expires" not in cookie
    assert "tok-a" not in cookie and hash_token("tok-a") not in cookie  # the token never leaves the login
    assert client.get("/ui/").status_code == 200
    secure = client.post("/ui/login", data={"token": "tok-a"}, base_url="https://localhost")
    assert "Secure" in secure.headers["Set-Cookie"]
    out = client.get("/ui/logout")
    assert out.status_code == 303 and "Max-Age=0" in out.headers["Set-Cookie"]
    assert client.get("/ui/").status_code == 303


def test_behind_a_tls_proxy_secure_cookies_marks_the_cookie_secure_on_http(app: TrackingHttp) -> None:
    proxied = TrackingHttp(app.store, app.tokens, page_size=50, secure_cookies=True)
    response = Client(proxied).post("/ui/login", data={"token": "tok-a"})  # the proxy talks http to us
    assert response.status_code == 303 and "Secure" in response.headers["Set-Cookie"]
    assert "Secure" in Client(proxied).get("/ui/logout").headers["Set-Cookie"]


def test_the_token_itself_is_no_session_and_sessions_end_with_their_entry(client: Client, app: TrackingHttp,
                                                                         tmp_path: Path) -> None:
    client.set_cookie(COOKIE, "tok-a", path="/ui/")
    assert client.get("/ui/").status_code == 303
    login(client)
    assert client.get("/ui/").status_code == 200
    (tmp_path / "tokens.toml").write_text(f'[[tokens]]\nname = "a"\nportal = "portal-a"\n'
                                          f'sha256 = "{hash_token("tok-a-rotated")}"\n')
    app.tokens._checked_at -= 10  # the registry looks at the file again now
    assert client.get("/ui/").status_code == 303


def test_a_wrong_token_shows_an_error_with_401(client: Client) -> None:
    response = login(client, "wrong")
    assert response.status_code == 401
    assert 'role="alert"' in response.get_data(as_text=True) and "Set-Cookie" not in response.headers


@pytest.mark.parametrize("headers", [{"Origin": "https://evil.example"}, {"Referer": "https://evil.example/x"},
                                     {"Origin": "null"}])
def test_a_login_from_another_site_is_refused(client: Client, headers: dict[str, str]) -> None:
    response = login(client, **headers)
    assert response.status_code == 403 and "Set-Cookie" not in response.headers


def test_every_value_on_the_page_is_escaped(client: Client) -> None:
    login(client)
    for path, query in (("/ui/applications", None), ("/ui/trace", {"id": HOSTILE})):
        response = client.get(path, query_string=query)
        text = response.get_data(as_text=True)
        assert response.status_code == 200, path
        assert HOSTILE not in text and "<script>" not in text
        assert "&lt;script&gt;" in text


def test_pages_are_plain_accessible_html_without_scripts(client: Client) -> None:
    login(client)
    for path in ("/ui/", "/ui/applications", "/ui/trace?id=m-1", "/ui/dead-letters", "/ui/login"):
        response = client.get(path)
        text = response.get_data(as_text=True)
        assert response.status_code == 200, path
        assert '<html lang="en">' in text and "<script" not in text and "http://" not in text.replace(
            'http://localhost', '')
        assert text.count("<h1>") == 1
        for control in re.findall(r'<(?:input|select)[^>]*\bid="([^"]+)"', text):
            assert f'<label for="{control}">' in text, (path, control)
        assert all('scope="' in th for th in re.findall(r"<th\b[^>]*>", text))
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp


def test_the_trace_page_and_its_not_found_answer(client: Client) -> None:
    login(client)
    found = client.get("/ui/trace?id=m-1").get_data(as_text=True)
    assert "dead_lettered" in found and "schema_violation" in found and "Mustermann" not in found
    missing = client.get("/ui/trace?id=nope")
    assert missing.status_code == 404
    assert client.get("/ui/trace").status_code == 400


def test_an_oversized_login_is_refused(client: Client) -> None:
    response = client.post("/ui/login", data={"token": "x" * 100_000})
    assert response.status_code == 413 and "Set-Cookie" not in response.headers


def test_a_time_no_calendar_can_show_fails_no_page_and_no_cli_view(app: TrackingHttp, client: Client) -> None:
    """Stored before 'at' was bounded (or by a bulk load): shown as the raw number, never a 500."""
    from hub.tracking.text import iso as text_iso
    from hub.tracking.text import render_applications, render_trace
    from hub.tracking.web import iso as web_iso

    millis = 1_790_000_000_000_000.0
    app.store.ingest([StatusEvent("m-ms", "accepted", "portal-a", "azr:000100", "alpha", at=millis, attempt=1)])
    login(client)
    for path in ("/ui/trace?id=m-ms", "/ui/applications", "/ui/"):
        response = client.get(path)
        assert response.status_code == 200, path
    assert "1790000000000000.0" in client.get("/ui/trace?id=m-ms").get_data(as_text=True)
    assert client.get("/api/v1/applications/m-ms", headers=AUTH).status_code == 200
    for stamp in (millis, 1e300, -1e300):
        assert web_iso(stamp) == text_iso(stamp) == str(stamp)
    assert web_iso(T0) == "2026-09-21T14:13:20.000Z" == text_iso(T0)
    [trace] = app.store.trace("m-ms", Scope.operator())
    assert any("1790000000000000.0" in line for line in render_trace(trace))
    assert any("1790000000000000.0" in line for line in render_applications([trace.summary]))
