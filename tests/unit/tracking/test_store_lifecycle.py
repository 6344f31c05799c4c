"""The tracking store's life: retention, schema migrations, bad URLs, a lost or vanished database,
and several writers at once (SQLite and the real PostgreSQL)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import psycopg
import pytest

import hub.tracking.store as store_module
from hub.errors import ConfigError, InvalidQuery, TrackingStoreUnavailable
from hub.status import StatusEvent
from hub.tracking.migrations import LATEST, MIGRATIONS
from hub.tracking.model import Scope
from hub.tracking.store import open_store
from tests.unit.tracking.lives import LIVES, delivered, reply, retried

OPERATOR = Scope.operator()
DAY = 86400.0


def _raw(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """A statement on the store's database behind the store's back (autocommit)."""
    if url.startswith("sqlite:///"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql.replace("?", "%s"), params)
        return cur.fetchall() if cur.description else []


def _run_in_threads(work: Callable[[int], object], count: int) -> list[object]:
    """``work(0..count-1)`` on ``count`` threads started together; every one must finish cleanly."""
    results: dict[int, object] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(n: int) -> None:
        try:
            start.wait(timeout=60)
            results[n] = work(n)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
    return [results[n] for n in range(count)]


# ------------------------------------------------------------------ retention


def test_purge_removes_old_applications_with_their_events_and_stray_replies(store, monkeypatch) -> None:
    monkeypatch.setattr(store_module, "PURGE_BATCH", 7)  # several batches
    now = time.time()
    old = [retried(f"old{i}", t0=now - 100 * DAY) for i in range(20)]
    fresh = delivered("fresh", t0=now - DAY)
    long_lived = delivered("long", t0=now - 100 * DAY)  # started long ago, reply arrived yesterday
    long_lived.events[-1] = reply("portal-a", long_lived.summary.application_ref, "urn:xta:reply-long", now - DAY)
    old_reply_of_live = reply("portal-a", fresh.summary.application_ref, "urn:xta:reply-early", now - 95 * DAY)
    stray_old = reply("portal-a", "REF-never-came", "urn:xta:stray-old", now - 100 * DAY)
    stray_new = reply("portal-a", "REF-not-yet", "urn:xta:stray-new", now - DAY)
    orphan_old = reply("portal-a", "", "urn:xta:orphan", now - 100 * DAY, message_id="mid-never-came")
    extra = [old_reply_of_live, stray_old, stray_new, orphan_old]
    store.ingest([e for life in [*old, fresh, long_lived] for e in life.events] + extra)

    assert store.purge(90 * DAY) == len(old)
    assert store.purge(90 * DAY) == 0
    for life in old:
        assert store.trace(life.message_id, OPERATOR) == []
    assert {s.message_id for s in store.applications(OPERATOR).items} == {fresh.message_id, long_lived.message_id}
    assert [e.event_id for e in store.trace(long_lived.message_id, OPERATOR)[0].timeline] == [
        e.event_id for e in long_lived.events]  # its old events stay: the application is alive
    assert store.trace(fresh.message_id, OPERATOR)[0].summary.replies == 2
    # what was purged is gone for good (storing it again counts as new), what was kept is not
    assert store.ingest([stray_old]) == 1 and store.ingest([orphan_old]) == 1
    assert store.ingest([stray_new]) == 0 and store.ingest([old_reply_of_live]) == 0
    assert store.ingest([e for life in old for e in life.events]) == sum(len(life.events) for life in old)
    with pytest.raises(InvalidQuery):
        store.purge(-1)


# ------------------------------------------------------------------ migrations


def test_opening_again_applies_nothing_twice_and_keeps_the_data(store_url, open_) -> None:
    life = delivered("1")
    open_().ingest(life.events)
    second = open_()
    assert second.trace(life.message_id, OPERATOR)[0].summary.state == "delivered"
    assert _raw(store_url, "SELECT version FROM tracking_schema_version ORDER BY version") == [
        (v,) for v, _ in MIGRATIONS]


def _open_ignoring(url: str, n: int) -> object:
    return open_store(url)


def test_concurrent_first_starts_migrate_once(store_url) -> None:
    """Six processes' worth of first starts on one new store, at once. On SQLite the race for the
    switch to WAL is lost only now and then: 40 new files make a missed race near impossible."""
    urls = [store_url] if store_url.startswith("postgresql") else [
        store_url.replace("tracking.db", f"tracking-{k}.db") for k in range(40)]
    for url in urls:
        stores = _run_in_threads(partial(_open_ignoring, url), 6)
        try:
            assert _raw(url, "SELECT COUNT(*) FROM tracking_schema_version") == [(LATEST,)]
            life = retried("c")
            stores[0].ingest(life.events)  # type: ignore[attr-defined]
            assert stores[-1].trace(life.message_id, OPERATOR)  # type: ignore[attr-defined]
        finally:
            for s in stores:
                s.close()  # type: ignore[attr-defined]


def test_a_store_from_a_newer_hub_is_refused(store_url, open_) -> None:
    open_().close()
    _raw(store_url, "INSERT INTO tracking_schema_version (version, applied_at) VALUES (?, ?)", (LATEST + 1, time.time()))
    with pytest.raises(ConfigError, match=f"version {LATEST + 1}.*newer hub"):
        open_store(store_url)


@pytest.mark.parametrize("url", ["mysql://db/x", "sqlite://relative.db", "sqlite:///", "tracking.db", ""])
def test_an_unusable_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="tracker.store"):
        open_store(url)


def test_an_unreachable_postgresql_is_a_config_error_at_start() -> None:
    with pytest.raises(ConfigError, match="tracker.store: cannot open PostgreSQL"):
        open_store("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2")


def test_relative_sqlite_path_is_relative_to_base(tmp_path) -> None:
    store = open_store("sqlite:///var/t.db", base=tmp_path)
    store.close()
    assert (tmp_path / "var" / "t.db").is_file()


# ------------------------------------------------------------------ a lost database (PostgreSQL)


def test_a_lost_connection_is_reopened_and_a_vanished_database_is_unavailable(pg_url, pg_admin) -> None:
    store = open_store(pg_url)
    store_url = pg_url
    life = delivered("1")
    store.ingest(life.events[:2])
    name = store_url.rsplit("/", 1)[1]
    killed = pg_admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                              (name,)).fetchall()
    assert killed  # the store's connection is gone now
    assert store.ingest(life.events[2:]) == len(life.events) - 2  # reconnected, no error
    assert store.trace(life.message_id, OPERATOR)[0].summary.state == "delivered"
    pg_admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    for call in (lambda: store.trace(life.message_id, OPERATOR), lambda: store.ingest(retried("x").events)):
        with pytest.raises(TrackingStoreUnavailable) as caught:
            call()
        assert caught.value.transient
    store.close()


# ------------------------------------------------------------------ several writers


def test_writers_in_parallel_on_one_store_and_on_two_stores(open_) -> None:
    """Two stores (two connections / two processes' worth) and two threads each write events of the
    same applications at once; every summary must still count every event."""
    stores = [open_(), open_()]
    lives = [make(f"p{n}") for n in range(10) for make in LIVES.values()]
    events = [e for life in lives for e in life.events]
    shares = [events[k::4] for k in range(4)]

    def write(n: int) -> int:
        share, total = shares[n], 0
        for start in range(0, len(share), 3):
            total += stores[n % 2].ingest(share[start:start + 3])
        return total

    assert sum(_run_in_threads(write, 4)) == len(events)  # type: ignore[arg-type]
    for life in lives:
        assert [t.as_dict() for t in stores[0].trace(life.message_id, OPERATOR)] == [life.expected()]


def test_a_duplicate_in_flight_on_two_stores_is_stored_once(open_) -> None:
    stores = [open_(), open_()]
    events = [StatusEvent(message_id=f"m{i}", event="accepted", portal="portal-a", destination="azr:000100",
                          at=1.0 + i) for i in range(200)]
    counts = _run_in_threads(lambda n: sum(stores[n % 2].ingest([e]) for e in events), 4)
    assert sum(counts) == len(events)  # type: ignore[arg-type]


class _PausingDatabase:
    """A ``Database`` whose first transaction stops after reading an application's events (before
    writing its summary) until ``go`` is set: the moment another writer must not slip into."""

    def __init__(self, db) -> None:
        self.db, self.paused, self.go = db, threading.Event(), threading.Event()

    def run(self, work, *, write):
        outer = self

        class Tx:
            def __init__(self, tx) -> None:
                self.tx, self.dialect = tx, tx.dialect
                self.execute, self.executemany = tx.execute, tx.executemany

            def query(self, sql, params=()):
                rows = self.tx.query(sql, params)
                if "FROM tracking_events WHERE message_id IN" in sql and not outer.paused.is_set():
                    outer.paused.set()
                    assert outer.go.wait(60)
                return rows

        return self.db.run(lambda tx: work(Tx(tx)), write=write)

    def close(self) -> None:
        self.db.close()


def test_a_second_writer_waits_for_the_first_so_no_summary_loses_an_event(store_url, open_) -> None:
    from hub.tracking.sql import open_database
    from hub.tracking.store import SqlTrackingStore

    open_().close()  # schema
    pausing = _PausingDatabase(open_database(store_url))
    first, second = SqlTrackingStore(pausing), open_()
    life = retried("race")
    first_writer = threading.Thread(target=first.ingest, args=(life.events[:-1],))
    first_writer.start()
    assert pausing.paused.wait(60)
    second_writer = threading.Thread(target=second.ingest, args=(life.events[-1:],))
    second_writer.start()
    second_writer.join(timeout=1.0)  # a second writer that does not wait is done by now (not required)
    pausing.go.set()
    first_writer.join(timeout=60)
    second_writer.join(timeout=60)
    assert not first_writer.is_alive() and not second_writer.is_alive()
    first.close()
    stored = {s.message_id: s for s in second.applications(OPERATOR).items}
    assert stored[life.message_id] == life.summary
