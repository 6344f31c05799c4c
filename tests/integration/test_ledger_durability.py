"""The ledger flushes the allocation to disk and not the delivered mark (issue 11: one fsync per
application), on both back ends, and a process crash after a non-flushed commit loses nothing."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hub.ledger import DELIVERED, FULL, NORMAL, SqliteLedger, open_ledger

PG_URL = os.environ.get("HUB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parents[2]


def _levels_of_writes(statements: list[str]) -> list[tuple[str, int]]:
    """(first word, synchronous level in force) of every write in a connection's statement log."""
    level, writes = FULL, []  # the ledger opens at FULL
    for sql in statements:
        text = sql.strip().upper()
        if text.startswith("PRAGMA SYNCHRONOUS="):
            level = {"NORMAL": NORMAL, "FULL": FULL}[text.split("=", 1)[1]]
        elif text.startswith(("INSERT", "UPDATE", "DELETE")):
            writes.append((text.split()[0], level))
    return writes


def test_sqlite_allocation_is_flushed_and_the_delivered_mark_is_not(tmp_path: Path) -> None:
    ledger = open_ledger("sqlite:///ledger.db", base=tmp_path)
    assert isinstance(ledger, SqliteLedger)
    statements: list[str] = []
    ledger._db.set_trace_callback(statements.append)  # the SQL the connection really ran, in order
    try:
        first, second = str(uuid.uuid4()), str(uuid.uuid4())
        assert ledger.allocate(first, "alpha", "azr:000100", "urn:xta:1") == "urn:xta:1"
        assert ledger._db.execute("PRAGMA synchronous").fetchone()[0] == FULL
        # committed when allocate returns (INSERT ... RETURNING run to its end): another connection sees it
        with sqlite3.connect(tmp_path / "ledger.db") as other:
            assert other.execute("SELECT transport_message_id FROM hub_deliveries WHERE message_id = ?",
                                 (first,)).fetchall() == [("urn:xta:1",)]
        ledger.mark_delivered(first)
        assert ledger._db.execute("PRAGMA synchronous").fetchone()[0] == NORMAL
        ledger.allocate(second, "alpha", "azr:000100", "urn:xta:2")  # back to FULL after a lazy write
        ledger.forget(second)
    finally:
        ledger._db.set_trace_callback(None)
        ledger.close()
    assert _levels_of_writes(statements) == [("INSERT", FULL), ("UPDATE", NORMAL), ("INSERT", FULL),
                                             ("DELETE", NORMAL)]


@pytest.fixture()
def probe_database() -> Iterator[str]:
    """A throwaway PostgreSQL database (the shared ``test`` database's table stays untouched)."""
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_URL}: {exc}")
    name = f"ledger_probe_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield PG_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


def test_postgres_allocation_commits_synchronously_and_the_delivered_mark_does_not(probe_database: str) -> None:
    ledger = open_ledger(probe_database)
    with psycopg.connect(probe_database, autocommit=True) as db:
        # a trigger records the synchronous_commit in force in the writing transaction
        db.execute("CREATE TABLE probe (op TEXT, sync TEXT, at SERIAL)")
        db.execute("CREATE FUNCTION record_sync() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   "INSERT INTO probe (op, sync) VALUES (TG_OP, current_setting('synchronous_commit')); "
                   "RETURN NULL; END $$")
        db.execute("CREATE TRIGGER record_sync AFTER INSERT OR UPDATE OR DELETE ON hub_deliveries "
                   "FOR EACH ROW EXECUTE FUNCTION record_sync()")
        try:
            first, second = str(uuid.uuid4()), str(uuid.uuid4())
            ledger.allocate(first, "alpha", "azr:000100", "urn:xta:1")
            ledger.mark_delivered(first)
            ledger.allocate(second, "alpha", "azr:000100", "urn:xta:2")  # the lazy setting did not stick
            ledger.forget(second)
            assert ledger.lookup(first).state == DELIVERED and ledger.lookup(second) is None
        finally:
            ledger.close()
        rows = db.execute("SELECT op, sync FROM probe ORDER BY at").fetchall()
    assert rows == [("INSERT", "on"), ("UPDATE", "off"), ("INSERT", "on"), ("DELETE", "off")]


_CRASH = """
import os, signal, sys
from pathlib import Path
from hub.ledger import open_ledger
ledger = open_ledger("sqlite:///ledger.db", base=Path(sys.argv[1]))
ledger.allocate("delivered-1", "alpha", "azr:000100", "urn:xta:1")
ledger.mark_delivered("delivered-1")
ledger.allocate("allocated-2", "alpha", "azr:000100", "urn:xta:2")
ledger.allocate("forgotten-3", "alpha", "azr:000100", "urn:xta:3")
ledger.forget("forgotten-3")
os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint: the WAL as a crash leaves it
"""


def test_sqlite_process_killed_after_lazy_commits_loses_none_of_them(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _CRASH, str(tmp_path)], cwd=ROOT, capture_output=True, timeout=60,
                          check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    assert (tmp_path / "ledger.db-wal").stat().st_size > 0  # the commits sit in the WAL, not yet checkpointed
    ledger = open_ledger("sqlite:///ledger.db", base=tmp_path)
    try:
        delivered = ledger.lookup("delivered-1")
        allocated = ledger.lookup("allocated-2")
        assert delivered is not None and delivered.delivered and delivered.transport_message_id == "urn:xta:1"
        assert allocated is not None and not allocated.delivered and allocated.transport_message_id == "urn:xta:2"
        assert ledger.lookup("forgotten-3") is None
    finally:
        ledger.close()


def _open_at_once(url: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        open_ledger(url).close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(f"{type(exc).__name__}: {exc}")


def test_workers_starting_at_once_on_a_new_sqlite_ledger_all_open_it(tmp_path: Path) -> None:
    """Two workers of one adapter (compose --scale) start on the same new file: switching it to WAL
    and creating the schema must not refuse the second with "database is locked"."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    for attempt in range(10):
        url = f"sqlite:///{tmp_path / f'race-{attempt}.db'}"
        barrier, results = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open_at_once, args=(url, barrier, results)) for _ in range(4)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        assert sorted(results.get(timeout=10) for _ in procs) == ["ok"] * 4
