"""`hub trace`, `hub status`, `hub tracker purge|token` against a store seeded through ``ingest``
(SQLite and the local PostgreSQL), and `hub tracker` itself as a process on the real RabbitMQ."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from click.testing import CliRunner, Result

from hub.cli import main
from hub.status import ACCEPTED, DEAD_LETTERED, StatusEvent
from hub.tracking.auth import TokenRegistry, hash_token
from hub.tracking.model import Scope, TrackingStore
from hub.tracking.store import open_store
from tests.integration.helpers import wait_for
from tests.integration.tracking_support import Life, fresh_pg_database, lives, publish

ROOT = Path(__file__).resolve().parents[2]
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture(scope="module")
def pg_database() -> Iterator[tuple[str, str]]:
    with fresh_pg_database() as db:
        yield db


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tracking.db'}"
        return
    url: str = request.getfixturevalue("pg_database")[0]
    yield url
    import psycopg  # the next test starts from an empty store

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE tracking_events, tracking_applications")


def _write_config(tmp_path: Path, store_url: str, *, broker_url: str = "amqp://guest:guest@127.0.0.1:1/%2F",
                  tokens: bool = True, retention_days: float = 90.0) -> Path:
    tracker: dict[str, object] = {"store": store_url, "retention_days": retention_days, "port": 0}
    if tokens:
        tracker["tokens_file"] = str(tmp_path / "tokens.toml")
    path = tmp_path / "hub.toml"
    path.write_text(tomli_w.dumps({"broker": {"url": broker_url}, "tracker": tracker}))
    return path


def _hub(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)


class Seeded:
    def __init__(self, store_url: str) -> None:
        self.now = time.time()
        self.a = lives("portal-a", self.now - 7200)
        self.b = lives("portal-b", self.now - 3 * 86400, destination="azr:000200")
        tag = self.a[0].message_id.split("-", 1)[1]
        self.dead = StatusEvent(f"d-{tag}", DEAD_LETTERED, "portal-a", "azr:000100", "alpha", at=self.now - 60,
                                attempt=1, reason="schema_violation")
        events = [e for life in self.a + self.b for e in life.events]
        events += [StatusEvent(self.dead.message_id, ACCEPTED, "portal-a", "azr:000100", "alpha",
                               at=self.now - 61, attempt=1), self.dead]
        store = open_store(store_url)
        try:
            assert store.ingest(events) == len(events)
        finally:
            store.close()


@pytest.fixture()
def seeded(store_url: str) -> Seeded:
    return Seeded(store_url)


# --- hub trace ------------------------------------------------------------------------------
def test_trace_by_every_id_shows_the_timeline(tmp_path: Path, store_url: str, seeded: Seeded) -> None:
    config = _write_config(tmp_path, store_url)
    delivered: Life = seeded.a[0]
    reply = delivered.events[-1]
    for ident in (delivered.message_id, delivered.correlation_id, delivered.transport_message_id,
                  reply.transport_message_id or ""):
        result = _hub(config, "trace", ident)
        assert result.exit_code == 0, result.output
        out = result.stdout
        assert out.splitlines()[0].startswith(f"application {delivered.message_id}  portal portal-a")
        rows = [line for line in out.splitlines() if ISO.match(line)]
        assert [r.split()[1] for r in rows] == [e.event for e in delivered.events]  # in event-time order
        assert rows[0].split()[0] == dt.datetime.fromtimestamp(delivered.events[0].at, dt.UTC).strftime(
            "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        assert "green" in rows[4] and "OZG.Statusmeldung.130104" in rows[5]
        assert out.splitlines()[-1].startswith("delivered since ")
        assert "1 attempt(s); transport report green; 1 reply; 6 event(s) over 1h 00m" in out.splitlines()[-1]

    retried = seeded.a[1]
    out = _hub(config, "trace", retried.message_id).stdout
    retry_row = next(line for line in out.splitlines() if " retry_scheduled " in line)
    assert "endpoint_unavailable" in retry_row and retried.transport_message_id in retry_row
    replayed = _hub(config, "trace", seeded.a[2].message_id).stdout
    assert re.search(r" replayed +- +alpha +after xta_9012", replayed)


def test_trace_json_and_nothing_found(tmp_path: Path, store_url: str, seeded: Seeded) -> None:
    config = _write_config(tmp_path, store_url)
    life = seeded.b[1]
    result = _hub(config, "trace", life.message_id, "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["query"] == life.message_id
    [app] = doc["applications"]
    assert app["application"]["state"] == "delivered" and app["application"]["attempts"] == 2
    assert [e["event"] for e in app["timeline"]] == [e.event for e in life.events]

    missing = _hub(config, "trace", "no-such-id")
    assert missing.exit_code == 1
    assert missing.stdout == ""
    assert missing.stderr.strip() == ("no application with message id, correlation id or transport message id "
                                      "'no-such-id'")
    assert _hub(config, "trace", "no-such-id", "--json").exit_code == 1


# --- hub status -----------------------------------------------------------------------------
def _rows(out: str) -> list[list[str]]:
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["MESSAGE", "ID", "PORTAL", "DESTINATION"], out
    rows = []
    for line in lines[1:]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


def test_status_filters_table_and_counts(tmp_path: Path, store_url: str, seeded: Seeded) -> None:
    config = _write_config(tmp_path, store_url)
    result = _hub(config, "status")
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    newest_first = sorted(seeded.a + seeded.b, key=lambda life: -max(e.at for e in life.events))
    assert [r[0] for r in rows] == [seeded.dead.message_id, *(life.message_id for life in newest_first)]
    first = next(r for r in rows if r[0] == seeded.a[0].message_id)
    assert first[1:4] == ["portal-a", "azr:000100", "delivered"] and first[5:] == ["1", "green", "1"]
    assert ISO.fullmatch(first[4])
    assert result.stdout.splitlines()[-1] == ("7 application(s): accepted 0, delivering 0, retry_scheduled 0, "
                                              "dead_lettered 1, delivered 6, replayed 0")

    b_only = _rows(_hub(config, "status", "--portal", "portal-b").stdout)
    assert {r[0] for r in b_only} == {life.message_id for life in seeded.b}
    assert {r[0] for r in _rows(_hub(config, "status", "--destination", "azr:000200").stdout)} == {
        life.message_id for life in seeded.b}
    recent = {r[0] for r in _rows(_hub(config, "status", "--since", "1d").stdout)}
    assert recent == {seeded.dead.message_id, *(life.message_id for life in seeded.a)}
    since_iso = dt.datetime.fromtimestamp(seeded.now - 86400, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert {r[0] for r in _rows(_hub(config, "status", "--since", since_iso).stdout)} == recent

    dead = _hub(config, "status", "--state", "dead_lettered")
    assert [r[0] for r in _rows(dead.stdout)] == [seeded.dead.message_id]
    assert "dead_lettered 1, delivered 6" in dead.stdout  # counts: the whole selection, every state

    limited = _hub(config, "status", "--limit", "2")
    assert len(_rows(limited.stdout)) == 2
    assert "(more than 2 match: raise --limit or narrow the filter)" in limited.stdout
    nothing = _hub(config, "status", "--portal", "portal-zz")
    assert nothing.exit_code == 0 and nothing.stdout.startswith("no applications match")


def test_status_json_and_bad_input(tmp_path: Path, store_url: str, seeded: Seeded,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import hub.cli_tracking

    monkeypatch.setattr(hub.cli_tracking, "_PAGE", 2)  # --limit 3 takes two pages of the store
    config = _write_config(tmp_path, store_url)
    result = _hub(config, "status", "--portal", "portal-a", "--limit", "3", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert len(doc["applications"]) == 3 and doc["more"] is True
    assert doc["counts"] == {"accepted": 0, "delivering": 0, "retry_scheduled": 0, "dead_lettered": 1,
                             "delivered": 3, "replayed": 0}
    assert doc["filter"]["portal"] == "portal-a"
    assert {"message_id", "state", "attempts", "replies", "transport_report"} <= set(doc["applications"][0])

    for args, says in ((("--since", "yesterday"), "neither a duration"), (("--state", "lost"), "lost"),
                       (("--limit", "0"), "0")):
        bad = _hub(config, "status", *args)
        assert bad.exit_code == 1, (args, bad.output)
        assert says in bad.stderr and "Traceback" not in bad.output


# --- hub tracker purge ----------------------------------------------------------------------
def test_purge_removes_only_old_applications(tmp_path: Path, store_url: str, seeded: Seeded) -> None:
    # retention 0.05 days = 72 minutes: the portal-b lives (3 days) and two of portal-a's (about
    # 2 hours) go; the delivered one (last event an hour ago, its reply) and the dead letter stay
    config = _write_config(tmp_path, store_url, retention_days=0.05)
    result = _hub(config, "tracker", "purge", "--older-than", "10d")
    assert result.exit_code == 0 and result.stdout.startswith("purged 0 application(s) whose last event is older")
    result = _hub(config, "tracker", "purge")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("purged 5 application(s) whose last event is older than 0.05d "
                                    "(tracker.retention_days) (before ")
    kept = {seeded.a[0].message_id, seeded.dead.message_id}
    for life in seeded.a + seeded.b:
        assert _hub(config, "trace", life.message_id).exit_code == (0 if life.message_id in kept else 1)
    assert _hub(config, "tracker", "purge", "--older-than", "30m").stdout.startswith("purged 1 application(s)")
    assert _hub(config, "trace", seeded.dead.message_id).exit_code == 0  # its last event is a minute old
    bad = _hub(config, "tracker", "purge", "--older-than", "soon")
    assert bad.exit_code == 1 and "not a duration" in bad.stderr


# --- hub tracker token ----------------------------------------------------------------------
def test_token_new_and_revoke(tmp_path: Path) -> None:
    config = _write_config(tmp_path, f"sqlite:///{tmp_path / 'tracking.db'}")
    tokens_file = tmp_path / "tokens.toml"
    made = _hub(config, "tracker", "token", "new", "--portal", "portal-a")
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    assert len(made.stdout.splitlines()) == 1 and len(token) >= 40
    text = tokens_file.read_text()
    assert token not in text and hash_token(token) in text  # stored as its hash only
    assert "shown only this once" in made.stderr and token not in made.stderr
    assert tokens_file.stat().st_mode & 0o077 == 0
    registry = TokenRegistry.from_file(tokens_file)
    assert registry.scope_for(token) == Scope("portal-a")

    ops = _hub(config, "tracker", "token", "new", "--operator", "--name", "ops")
    assert ops.exit_code == 0
    ops_token = ops.stdout.strip()
    assert TokenRegistry.from_file(tokens_file).scope_for(ops_token) == Scope.operator()
    assert ops_token != token

    again = _hub(config, "tracker", "token", "new", "--portal", "portal-b", "--name", "ops")
    assert again.exit_code == 1 and "exists already" in again.stderr
    for args in ((), ("--portal", "portal-a", "--operator")):
        assert _hub(config, "tracker", "token", "new", *args).exit_code == 1
    assert _hub(config, "tracker", "token", "new", "--portal", "not a portal!").exit_code == 1

    revoked = _hub(config, "tracker", "token", "revoke", "ops")
    assert revoked.exit_code == 0 and revoked.stdout.strip() == f"revoked token 'ops' ({tokens_file})"
    after = TokenRegistry.from_file(tokens_file)
    assert after.scope_for(ops_token) is None and after.scope_for(token) == Scope("portal-a")
    assert "ops" not in after.names and len(after.names) == 1
    unknown = _hub(config, "tracker", "token", "revoke", "ops")
    assert unknown.exit_code == 1 and "no token named 'ops'" in unknown.stderr

    no_file = _write_config(tmp_path, f"sqlite:///{tmp_path / 'tracking.db'}", tokens=False)
    missing = _hub(no_file, "tracker", "token", "new", "--operator")
    assert missing.exit_code == 2 and "tracker.tokens_file is not set" in missing.stderr


# --- hub tracker (the process) --------------------------------------------------------------
def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.broker
def test_tracker_process_consumes_serves_and_stops_on_sigterm(fresh_broker_url: str, store_url: str,
                                                              tmp_path: Path) -> None:
    config = _write_config(tmp_path, store_url, broker_url=fresh_broker_url)
    token = _hub(config, "tracker", "token", "new", "--portal", "portal-a").stdout.strip()
    proc = subprocess.Popen([sys.executable, "-m", "hub", "--config", str(config), "tracker", "--http-port", "0"],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stderr is not None
        line = ""
        deadline = time.monotonic() + 60
        while "metrics http://" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "hub tracker ended before it served"
        base = re.search(r"metrics (http://[\d.]+:\d+)/metrics", line)
        assert base, line
        url = base.group(1)
        wait_for(lambda: _get(f"{url}/readyz")[0] == 200, 60, what="the tracker to be ready")
        life = lives("portal-a", time.time() - 100)[1]
        publish(fresh_broker_url, list(life.events))

        def stored() -> bool:
            code, body = _get(f"{url}/api/v1/applications/{life.message_id}", token)
            return code == 200 and len(json.loads(body)["applications"][0]["timeline"]) == len(life.events)

        wait_for(stored, 60, what="the application through the API")
        assert _get(f"{url}/api/v1/applications/{life.message_id}")[0] == 401  # no token
        code, metrics = _get(f"{url}/metrics")
        assert code == 200 and b'hub_tracker_events_total{event="delivered"} 1.0' in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
    store: TrackingStore = open_store(store_url)
    try:
        [trace] = store.trace(life.message_id, Scope.operator())
        assert len(trace.timeline) == len(life.events)
    finally:
        store.close()


def test_tracker_not_ready_without_broker_and_says_why(tmp_path: Path) -> None:
    from hub.config import load_config
    from hub.tracking.service import TrackerService

    config = load_config(_write_config(tmp_path, f"sqlite:///{tmp_path / 'tracking.db'}", tokens=False))  # broker: port 1
    service = TrackerService(config, http_port=0).start()
    try:
        wait_for(lambda: service.consumer.outage.describe(), 30, what="the first failed connect")
        code, body = _get(f"{service.url}/readyz")
        assert code == 503 and body.decode().startswith("broker not reachable at start, reconnecting since "), body
        assert _get(f"{service.url}/healthz")[0] == 200
    finally:
        service.close(timeout=30)
    assert not service.consumer_alive


@pytest.mark.broker
def test_tracker_refused_by_the_broker_exits_2(broker_url: str, tmp_path: Path) -> None:
    no_such_vhost = f"{broker_url.rsplit('/', 1)[0]}/no-such-vhost-{os.getpid()}"
    config = _write_config(tmp_path, f"sqlite:///{tmp_path / 'tracking.db'}", broker_url=no_such_vhost, tokens=False)
    result = _hub(config, "tracker", "--http-port", "0")
    assert result.exit_code == 2, result.output
    assert "no-such-vhost" in result.stderr and "Traceback" not in result.output
