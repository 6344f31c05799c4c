"""Who may see what, over real HTTP on loopback against the real store (SQLite and PostgreSQL).

Portal A's token must not see portal B's applications by any query: by message id, correlation id,
transport message id, a reply's transport id, in lists, counts or dead letters, on the API or the
page. Another portal's id answers exactly what an unknown id answers (no existence oracle). A
missing or wrong token is a 401; a rotated token works (and the old one stops) without a restart;
a tokens file broken by an edit refuses every token until it is fixed (fail closed). The page's
cookie is a signed session, never the token.
PostgreSQL missing is a failure, never a skip.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from werkzeug.serving import make_server

from hub.status import (
    ACCEPTED,
    DEAD_LETTERED,
    DELIVERING,
    REPLY_RECEIVED,
    StatusEvent,
    event_id_for,
)
from hub.tracking.api import TrackingHttp
from hub.tracking.auth import TokenRegistry, hash_token
from hub.tracking.model import STATES, TrackingStore
from hub.tracking.page import COOKIE
from hub.tracking.store import open_store
from tests.integration.helpers import wait_for
from tests.integration.tracking_support import fresh_pg_database, lives

DEST = "azr:000100"
T0 = time.time() - 3 * 86400
TOKENS = {"a": "token-portal-a-" + uuid.uuid4().hex, "b": "token-portal-b-" + uuid.uuid4().hex,
          "ops": "token-ops-" + uuid.uuid4().hex}
UNKNOWN = "urn:de:xta:messageid:nobody-has-this-" + uuid.uuid4().hex[:8]


def tokens_toml(entries: dict[str, tuple[str, str | None]]) -> str:
    """name -> (token, portal or None for an operator) as a tokens file (hashes only)."""
    out = []
    for name, (token, portal) in entries.items():
        who = f'portal = "{portal}"' if portal else "operator = true"
        out.append(f'[[tokens]]\nname = "{name}"\n{who}\nsha256 = "{hash_token(token)}"\n')
    return "\n".join(out)


@dataclass
class Portal:
    """One portal's applications and every kind of id that names one of them."""

    name: str
    apps: set[str] = field(default_factory=set)
    ids: dict[str, str] = field(default_factory=dict)  # kind -> an id of that kind
    states: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    dead_reasons: dict[str, int] = field(default_factory=dict)


def seed(store: TrackingStore) -> dict[str, Portal]:
    """Both portals send to the same authority; B even reuses A's correlation id, A's
    antragsidentifikation (a reply) and one of A's message ids."""
    portals = {p: Portal(p) for p in ("portal-a", "portal-b")}
    events: list[StatusEvent] = []
    for name, portal in portals.items():
        for life in lives(name, T0, destination=DEST):
            events += life.events
            portal.apps.add(life.message_id)
            portal.states[life.state] += 1
            if life.name == "delivered":
                reply = next(e for e in life.events if e.event == REPLY_RECEIVED)
                portal.ids.update({"message id": life.message_id, "correlation id": life.correlation_id,
                                   "transport message id": life.transport_message_id,
                                   "reply transport message id": reply.transport_message_id or ""})
                portal.ids["application_ref"] = reply.application_ref or ""
        mid = f"dead-{name}-{uuid.uuid4().hex[:8]}"
        reason = {"portal-a": "schema_violation", "portal-b": "xta_9011"}[name]
        events += [StatusEvent(mid, ACCEPTED, name, DEST, "alpha", at=T0 + 50, attempt=1),
                   StatusEvent(mid, DEAD_LETTERED, name, DEST, "alpha", at=T0 + 51, attempt=1, reason=reason)]
        portal.apps.add(mid)
        portal.states[DEAD_LETTERED] += 1
        portal.dead_reasons[reason] = 1
        portal.ids["dead-lettered message id"] = mid
    a, b = portals["portal-a"], portals["portal-b"]
    # B uses A's correlation id for one of its own applications, replies into A's antragsidentifikation
    # and sends an event carrying A's message id: none of it may show up on A's side
    shared = f"b-shares-{uuid.uuid4().hex[:8]}"
    events.append(StatusEvent(shared, ACCEPTED, "portal-b", DEST, "alpha", at=T0 + 60, attempt=1,
                              correlation_id=a.ids["correlation id"]))
    b.apps.add(shared)
    b.states[ACCEPTED] += 1
    forged_reply = f"urn:de:xta:messageid:b-reply-{uuid.uuid4().hex[:8]}"
    events.append(StatusEvent("", REPLY_RECEIVED, "portal-b", DEST, None, at=T0 + 70,
                              transport_message_id=forged_reply, application_ref=a.ids["application_ref"],
                              event_id=event_id_for(REPLY_RECEIVED, forged_reply),
                              detail={"reply_id": forged_reply, "message_type": "OZG.RueckkanalFrage.130102"}))
    events.append(StatusEvent(a.ids["message id"], DELIVERING, "portal-b", DEST, "alpha", at=T0 + 80,
                              transport_message_id="urn:de:xta:messageid:b-on-a"))
    b.ids["forged reply transport id"] = forged_reply
    assert store.ingest(events) == len(events)
    return portals


@contextlib.contextmanager
def serving(app: TrackingHttp) -> Iterator[tuple[str, int]]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="test-tracking-http", daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", server.socket.getsockname()[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(30)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def without_date(self) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
        """Everything but the Date header (the clock may tick between two requests)."""
        return self.status, tuple((k, v) for k, v in self.headers if k.lower() != "date"), self.body


class Http:
    def __init__(self, address: tuple[str, int]) -> None:
        self.host, self.port = address

    def request(self, method: str, path: str, *, token: str | None = None, cookie: str | None = None,
                body: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
        conn = HTTPConnection(self.host, self.port, timeout=30)
        try:
            sent = dict(headers or {})
            if token is not None:
                sent["Authorization"] = f"Bearer {token}"
            if cookie is not None:
                sent["Cookie"] = f"{COOKIE}={cookie}"
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            return Answer(response.status, tuple(response.getheaders()), response.read())
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> Answer:
        return self.request("GET", path, **kw)

    def login(self, token: str) -> Answer:
        return self.request("POST", "/ui/login", body=urlencode({"token": token}).encode(), headers={
            "Content-Type": "application/x-www-form-urlencoded", "Origin": f"http://{self.host}:{self.port}"})

    def session(self, token: str) -> str:
        """Sign in with ``token``; the session cookie's value (which is not the token)."""
        answer = self.login(token)
        assert answer.status == 303, answer.status
        value = (answer.header("Set-Cookie") or "").split(";", 1)[0].removeprefix(f"{COOKIE}=")
        assert value and token not in value and hash_token(token) not in value
        return value


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[TrackingStore, dict[str, Portal]]]:
    """A real store (a fresh SQLite file, or a fresh PostgreSQL database) seeded for both portals."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('tracking') / 'tracking.db'}"
        else:
            url, _ = stack.enter_context(fresh_pg_database())
        store = open_store(url)
        stack.callback(store.close)
        yield store, seed(store)


@pytest.fixture(scope="module")
def http(backend: tuple[TrackingStore, dict[str, Portal]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Http]:
    path = tmp_path_factory.mktemp("tokens") / "tokens.toml"
    path.write_text(tokens_toml({"a": (TOKENS["a"], "portal-a"), "b": (TOKENS["b"], "portal-b"),
                                 "ops": (TOKENS["ops"], None)}))
    app = TrackingHttp(backend[0], TokenRegistry.from_file(path), page_size=50)
    with serving(app) as address:
        yield Http(address)


@pytest.fixture(scope="module")
def portals(backend: tuple[TrackingStore, dict[str, Portal]]) -> dict[str, Portal]:
    return backend[1]


API_ROUTES = ("/api/v1/applications", "/api/v1/applications/x", "/api/v1/counts", "/api/v1/dead-letters")


@pytest.mark.parametrize("path", API_ROUTES)
def test_missing_or_wrong_token_is_401(http: Http, path: str) -> None:
    for token in (None, "", "wrong-" + TOKENS["a"], TOKENS["a"][:-1], hash_token(TOKENS["a"])):
        answer = http.get(path, token=token)
        assert answer.status == 401, (path, token)
        assert (answer.header("WWW-Authenticate") or "").startswith("Bearer")
        assert answer.header("Cache-Control") == "no-store"
        assert b"token-portal-a" not in answer.body
    basic = http.get(path, headers={"Authorization": f"Basic {TOKENS['a']}"})
    assert basic.status == 401


def test_page_without_a_valid_cookie_goes_to_the_login(http: Http) -> None:
    # the token itself (or its hash) is no session: only what /ui/login signed is
    for cookie in (None, "wrong", TOKENS["a"], hash_token(TOKENS["a"])):
        for path in ("/ui/", "/ui/applications", "/ui/trace?id=x", "/ui/dead-letters"):
            answer = http.get(path, cookie=cookie)
            assert answer.status == 303 and answer.header("Location") == "/ui/login", (path, cookie)
    assert http.login("wrong").status == 401


@pytest.mark.parametrize("kind", ["message id", "correlation id", "transport message id",
                                  "reply transport message id", "dead-lettered message id"])
def test_each_portal_finds_its_own_application_by_every_kind_of_id(http: Http, portals: dict[str, Portal],
                                                                   kind: str) -> None:
    for key, portal in (("a", portals["portal-a"]), ("b", portals["portal-b"])):
        answer = http.get(f"/api/v1/applications/{portal.ids[kind]}", token=TOKENS[key])
        assert answer.status == 200, (key, kind)
        apps = answer.json()["applications"]
        assert apps and {a["application"]["portal"] for a in apps} == {portal.name}
        # the operator sees it too: the id does exist, so A's 404 below is not an accident
        assert http.get(f"/api/v1/applications/{portal.ids[kind]}", token=TOKENS["ops"]).status == 200


@pytest.mark.parametrize("kind", ["message id", "correlation id", "transport message id",
                                  "reply transport message id", "dead-lettered message id",
                                  "forged reply transport id"])
def test_another_portals_id_answers_exactly_like_an_unknown_id(http: Http, portals: dict[str, Portal],
                                                               kind: str) -> None:
    b_id = portals["portal-b"].ids[kind]
    foreign = http.get(f"/api/v1/applications/{b_id}", token=TOKENS["a"])
    unknown = http.get(f"/api/v1/applications/{UNKNOWN}", token=TOKENS["a"])
    assert foreign.status == 404
    assert foreign.without_date() == unknown.without_date()
    cookie = http.session(TOKENS["a"])
    page_foreign = http.get(f"/ui/trace?{urlencode({'id': b_id})}", cookie=cookie)
    page_unknown = http.get(f"/ui/trace?{urlencode({'id': UNKNOWN})}", cookie=cookie)
    assert page_foreign.status == 404
    assert page_foreign.without_date() == page_unknown.without_date()


def test_a_timeline_never_shows_another_portals_events(http: Http, portals: dict[str, Portal]) -> None:
    a = portals["portal-a"]
    for kind in ("message id", "correlation id"):
        answer = http.get(f"/api/v1/applications/{a.ids[kind]}", token=TOKENS["a"])
        assert answer.status == 200
        (app,) = answer.json()["applications"]  # B's application with the same correlation id is not here
        assert app["application"]["portal"] == "portal-a" and app["application"]["replies"] == 1
        text = answer.body.decode()
        assert "b-reply-" not in text and "b-on-a" not in text and "RueckkanalFrage" not in text
        replies = [e for e in app["timeline"] if e["event"] == "reply_received"]
        assert [r["detail"]["message_type"] for r in replies] == ["OZG.Statusmeldung.130104"]
    page = http.get(f"/ui/trace?{urlencode({'id': a.ids['correlation id']})}", cookie=http.session(TOKENS["a"]))
    assert page.status == 200 and b"b-reply-" not in page.body and b"b-shares-" not in page.body


def _all_pages(http: Http, path: str, token: str, **params: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    query = dict(params)
    for _ in range(100):
        answer = http.get(f"{path}?{urlencode(query)}", token=token)
        assert answer.status == 200, answer.body
        data = answer.json()
        items += data["items"]
        if data["next_cursor"] is None:
            return items
        query["cursor"] = data["next_cursor"]
    raise AssertionError("pagination did not end")


@pytest.mark.parametrize("params", [{}, {"limit": "1"}, {"portal": "portal-b"}, {"portal": "portal-a"},
                                    {"destination": DEST}, {"since": "0"}, {"until": "4102444800"},
                                    *({"state": s} for s in STATES)])
def test_lists_show_only_the_own_portal(http: Http, portals: dict[str, Portal], params: dict[str, str]) -> None:
    a, b = portals["portal-a"], portals["portal-b"]
    items = _all_pages(http, "/api/v1/applications", TOKENS["a"], **params)
    assert {i["portal"] for i in items} <= {"portal-a"}
    assert not {i["message_id"] for i in items} & b.apps
    if params.get("portal") == "portal-b":
        assert items == []
    elif not params.get("state"):
        assert {i["message_id"] for i in items} == a.apps
    everyone = _all_pages(http, "/api/v1/applications", TOKENS["ops"], **params)
    if not params.get("state") and not params.get("portal"):  # the operator does see B's
        assert {i["message_id"] for i in everyone} == a.apps | b.apps


def test_counts_and_dead_letters_count_the_own_portal_only(http: Http, portals: dict[str, Portal]) -> None:
    a, b = portals["portal-a"], portals["portal-b"]
    assert http.get("/api/v1/counts", token=TOKENS["a"]).json() == {"counts": a.states}
    assert http.get(f"/api/v1/counts?destination={DEST}&since=0", token=TOKENS["a"]).json() == {"counts": a.states}
    assert http.get("/api/v1/counts?portal=portal-b", token=TOKENS["a"]).json() == {
        "counts": dict.fromkeys(STATES, 0)}
    assert http.get("/api/v1/counts", token=TOKENS["b"]).json() == {"counts": b.states}
    dead = http.get("/api/v1/dead-letters", token=TOKENS["a"]).json()
    assert dead["reasons"] == a.dead_reasons
    assert {i["message_id"] for i in dead["items"]} == {a.ids["dead-lettered message id"]}
    foreign = http.get("/api/v1/dead-letters?portal=portal-b", token=TOKENS["a"]).json()
    assert foreign == {"items": [], "next_cursor": None, "reasons": {}}
    ops = http.get("/api/v1/dead-letters", token=TOKENS["ops"]).json()
    assert ops["reasons"] == {**a.dead_reasons, **b.dead_reasons}


def test_the_page_shows_the_own_portal_only(http: Http, portals: dict[str, Portal]) -> None:
    a, b = portals["portal-a"], portals["portal-b"]
    login = http.login(TOKENS["a"])
    assert login.status == 303 and "HttpOnly" in (login.header("Set-Cookie") or "")
    session = http.session(TOKENS["a"])
    for path in ("/ui/", "/ui/applications", "/ui/applications?portal=portal-b", "/ui/applications?limit=500",
                 f"/ui/applications?destination={DEST}", "/ui/dead-letters", "/ui/dead-letters?portal=portal-b"):
        page = http.get(path, cookie=session)
        assert page.status == 200, path
        text = page.body.decode()
        assert not [mid for mid in b.apps if mid in text], path
        assert "xta_9011" not in text and "portal-b" not in text.replace("portal=portal-b", ""), path
    listing = http.get("/ui/applications?limit=500", cookie=session).body.decode()
    assert all(mid in listing for mid in a.apps)
    home = http.get("/ui/", cookie=session).body.decode()
    for state, count in a.states.items():
        assert f">{state}</a></th><td>{count}</td>" in home, state


def test_token_rotation_takes_effect_without_a_restart(tmp_path: Path) -> None:
    """Run once, on a SQLite store of its own: the tokens file is read by the registry, before and
    apart from the store (both stores answer the counts the probes ask for in the tests above)."""
    old, new = "rotate-old-" + uuid.uuid4().hex, "rotate-new-" + uuid.uuid4().hex
    path = tmp_path / "tokens.toml"
    path.write_text(tokens_toml({"a-2025": (old, "portal-a")}))
    store = open_store(f"sqlite:///{tmp_path / 'tracking.db'}")
    with contextlib.closing(store), serving(TrackingHttp(store, TokenRegistry.from_file(path),
                                                         page_size=50)) as address:
        http = Http(address)
        assert http.get("/api/v1/counts", token=old).status == 200
        assert http.get("/api/v1/counts", token=new).status == 401
        old_session = http.session(old)
        assert http.get("/ui/", cookie=old_session).status == 200
        # step 1: the new token is added next to the old one
        path.write_text(tokens_toml({"a-2025": (old, "portal-a"), "a-2026": (new, "portal-a")}))
        wait_for(lambda: http.get("/api/v1/counts", token=new).status == 200, timeout=30, what="new token accepted")
        assert http.get("/api/v1/counts", token=old).status == 200
        new_session = http.session(new)
        # step 2: an edit meant to remove the old one leaves the file broken: no token works until
        # it is fixed (keeping the last good set would keep the revoked token working)
        path.write_text('[[tokens]]\nname = "half')
        wait_for(lambda: http.get("/api/v1/counts", token=old).status == 401, timeout=30, what="fail closed")
        assert http.get("/api/v1/counts", token=new).status == 401
        assert http.get("/ui/", cookie=new_session).status == 303
        path.write_text(tokens_toml({"a-2026": (new, "portal-a")}))
        wait_for(lambda: http.get("/api/v1/counts", token=new).status == 200, timeout=30, what="the fixed file")
        assert http.get("/api/v1/counts", token=old).status == 401
        # a page session signed in with the old token has ended; the new one works again
        assert http.get("/ui/", cookie=old_session).status == 303
        assert http.get("/ui/", cookie=new_session).status == 200
        # deleted: fail closed as well
        path.unlink()
        wait_for(lambda: http.get("/api/v1/counts", token=new).status == 401, timeout=30, what="file deleted")
