"""The tracker's consumer on the real RabbitMQ, into both stores (SQLite and the local PostgreSQL):
timelines reconstructed exactly, whatever the order or number of deliveries; invalid events
dead-lettered, never dropped; store and broker outages lose nothing."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hub.status import ACCEPTED, DELIVERED, StatusEvent
from hub.topology import DEAD_QUEUE
from hub.tracking.model import Scope, TrackingStore
from hub.tracking.store import open_store
from tests.integration.helpers import drain, wait_for
from tests.integration.tracking_support import (
    Life,
    events_seen,
    fresh_pg_database,
    lives,
    metric,
    pg_admin,
    publish,
    queue_depth,
    running_consumer,
    tracker_config,
)
from tests.unit.tracking.test_store_refusals import refuse_poison

pytestmark = pytest.mark.broker
PORTAL = "portal-a"


@pytest.fixture(scope="module")
def pg_database() -> Iterator[tuple[str, str]]:
    with fresh_pg_database() as db:
        yield db


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tracking.db'}"
    url: str = request.getfixturevalue("pg_database")[0]
    return url


@pytest.fixture()
def store(store_url: str) -> Iterator[TrackingStore]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def _timeline(store: TrackingStore, life: Life) -> list[tuple[str, float, int | None]]:
    [trace] = store.trace(life.message_id, Scope.operator())
    return [(e.event, e.at, e.attempt) for e in trace.timeline]


def _complete(store: TrackingStore, all_lives: list[Life]) -> bool:
    for life in all_lives:
        found = store.trace(life.message_id, Scope.operator())
        if len(found) != 1 or len(found[0].timeline) != len(life.events):
            return False
    return True


def _assert_exact(store: TrackingStore, all_lives: list[Life]) -> None:
    for life in all_lives:
        expected = [(e.event, e.at, e.attempt) for e in life.events]  # built in the order they happened
        assert _timeline(store, life) == expected, life.name
        [trace] = store.trace(life.message_id, Scope.operator())
        s = trace.summary
        assert (s.state, s.attempts, s.reason, s.transport_report, s.replies) == (
            life.state, life.attempts, life.reason, life.transport_report, life.replies), life.name
        assert (s.portal, s.correlation_id, s.transport_message_id) == (
            PORTAL, life.correlation_id, life.transport_message_id), life.name
        # the other ids find the same application
        for ident in (life.correlation_id, life.transport_message_id):
            assert [t.summary.message_id for t in store.trace(ident, Scope.operator())] == [life.message_id]


def test_three_lives_reconstructed_exactly(fresh_broker_url: str, store_url: str, store: TrackingStore) -> None:
    config = tracker_config(fresh_broker_url, store_url)
    all_lives = lives(PORTAL, time.time() - 7200)
    events = [e for life in all_lives for e in life.events]
    with running_consumer(config, store) as consumer:
        publish(fresh_broker_url, events)
        wait_for(lambda: _complete(store, all_lives), 60, what="all timelines stored")
        _assert_exact(store, all_lives)
        wait_for(lambda: events_seen(consumer) == len(events), 30, what="the events metric")
        assert metric(consumer, "hub_tracker_duplicate_events_total") == 0
        assert metric(consumer, "hub_tracker_events_total", {"event": DELIVERED}) == 3
        assert metric(consumer, "hub_tracker_events_total", {"event": ACCEPTED}) == 5
        assert metric(consumer, "hub_tracker_ingest_seconds_count") >= 1
        # hub_tracker_lag_seconds returns to 0 once the queue is idle: tests/integration/test_tracker_lag.py
        assert consumer.readiness() == (True, "consuming hub.tracker; store ok")
    assert queue_depth(fresh_broker_url) == 0
    # the reply (no message id) is found by its own XTA id, and is in the first application's timeline
    reply = all_lives[0].events[-1]
    assert [t.summary.message_id for t in store.trace(reply.transport_message_id or "", Scope.operator())] == [
        all_lives[0].message_id]


def test_duplicates_and_shuffled_order_give_the_same_timelines(fresh_broker_url: str, store_url: str,
                                                              store: TrackingStore) -> None:
    config = tracker_config(fresh_broker_url, store_url, batch_size=7)  # batches cut across applications
    all_lives = lives(PORTAL, time.time() - 3600)
    events = [e for life in all_lives for e in life.events]
    shuffled = list(events)
    random.Random(9).shuffle(shuffled)
    assert shuffled != events
    with running_consumer(config, store, batch_size=7) as consumer:
        publish(fresh_broker_url, shuffled)  # out of order into an empty store (the reply before its application)
        wait_for(lambda: _complete(store, all_lives), 60, what="shuffled timelines stored")
        _assert_exact(store, all_lives)
        again = list(events)
        random.Random(4).shuffle(again)
        publish(fresh_broker_url, events + again)  # every event twice more
        wait_for(lambda: events_seen(consumer) == 3 * len(events), 60, what="the redelivered events")
        assert metric(consumer, "hub_tracker_duplicate_events_total") == 2 * len(events)
    assert queue_depth(fresh_broker_url) == 0  # every event acked (nothing came back when it stopped)
    _assert_exact(store, all_lives)


def test_invalid_events_are_dead_lettered_and_the_consumer_keeps_going(fresh_broker_url: str, store_url: str,
                                                                      store: TrackingStore) -> None:
    config = tracker_config(fresh_broker_url, store_url)
    marker = "MARKER-4711-DO-NOT-LEAK"
    bad = [
        b"not json " + marker.encode(),
        json.dumps({"message_id": "m1", "event": "exploded", "portal": PORTAL, "destination": "azr:000100",
                    "at": time.time(), "detail": {"note": marker}}).encode(),
        # NUL in an id: PostgreSQL cannot store it; refused before the store sees it
        json.dumps({"message_id": "m\u00002", "event": "accepted", "portal": PORTAL, "destination": "azr:000100",
                    "at": time.time(), "detail": {"note": marker}}).encode(),
        # nested too deep for the JSON parser (a RecursionError once killed the consumer thread)
        b"[" * 100_000,
        # a millisecond time stamp: would sort first forever and break every time display
        json.dumps({"message_id": "m3", "event": "accepted", "portal": PORTAL, "destination": "azr:000100",
                    "at": time.time() * 1000, "detail": {"note": marker}}).encode(),
    ]
    good = StatusEvent("after-the-garbage", ACCEPTED, PORTAL, "azr:000100", "alpha", attempt=1)
    all_lives = lives(PORTAL, time.time() - 300)
    events = [e for life in all_lives for e in life.events]
    with running_consumer(config, store) as consumer:
        # the store refuses the NUL event in the middle of a batch of good ones: only it goes
        publish(fresh_broker_url, [*events[:5], *bad, *events[5:], good])
        wait_for(lambda: store.trace(good.message_id, Scope.operator()), 60, what="the good event after the bad ones")
        wait_for(lambda: _complete(store, all_lives), 60, what="the good events around the bad ones")
        _assert_exact(store, all_lives)
        assert metric(consumer, "hub_tracker_invalid_events_total") == len(bad)
        dead = drain(fresh_broker_url, DEAD_QUEUE, len(bad), timeout=30)
        assert consumer.connected.is_set()
    assert sorted(body for _p, body in dead) == sorted(bad)  # the body is kept, unchanged
    for props, _body in dead:
        headers = props.headers
        assert headers["x-hub-reason"] == "invalid_status_event"
        assert headers["x-hub-error-class"] == "InvalidStatusEvent"
        assert marker not in headers["x-hub-error-message"] and "\x00" not in headers["x-hub-error-message"]
        assert "status event" in headers["x-hub-error-message"]
    # exactly one copy each: dead letters are confirmed before their ack and the consumer has
    # stopped, so the queue holds all there will ever be (no need to wait for a late one)
    assert queue_depth(fresh_broker_url, DEAD_QUEUE) == 0


def _store_outage(store_url: str, store: TrackingStore) -> tuple[Callable[[], None], Callable[[], None]]:
    """(start, end) of an outage of the store's database, of the kind each back end has."""
    if store_url.startswith("sqlite"):
        path = store_url.removeprefix("sqlite:///")
        # another process holds the write lock; the store gives up after its busy timeout
        store._db._db.execute("PRAGMA busy_timeout=300")  # type: ignore[attr-defined]  # keep the test short
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

        def start_sqlite() -> None:
            holder.execute("BEGIN EXCLUSIVE")

        def end_sqlite() -> None:
            holder.execute("ROLLBACK")
            holder.close()

        return start_sqlite, end_sqlite
    name = store_url.rsplit("/", 1)[1]

    def start_pg() -> None:
        # nobody may connect, and the store's open connection is killed
        pg_admin(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        pg_admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", name)

    def end_pg() -> None:
        pg_admin(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')

    return start_pg, end_pg


def test_store_outage_mid_run_loses_nothing(fresh_broker_url: str, store_url: str, store: TrackingStore) -> None:
    config = tracker_config(fresh_broker_url, store_url, batch_size=5)
    all_lives = [*lives(PORTAL, time.time() - 900), *lives(PORTAL, time.time() - 800)]
    events = [e for life in all_lives for e in life.events]
    first, second = events[:9], events[9:]
    start, end = _store_outage(store_url, store)
    with running_consumer(config, store, batch_size=5) as consumer:
        publish(fresh_broker_url, first)
        wait_for(lambda: events_seen(consumer) == len(first), 60, what="the first events stored")
        start()
        try:
            publish(fresh_broker_url, second)
            wait_for(lambda: metric(consumer, "hub_tracker_store_errors_total") >= 2, 60,
                     what="the consumer to meet the outage")
            # generic (answered without a token); the driver's text, with hosts and users, is logged only
            assert consumer.readiness() == (False, "tracking store unreachable")
            assert events_seen(consumer) == len(first)  # nothing acked while the store is down
        finally:
            end()
        wait_for(lambda: _complete(store, all_lives), 90, what="every event after the outage")
        wait_for(lambda: consumer.readiness()[0], 30, what="ready again")
        wait_for(lambda: events_seen(consumer) == len(events), 30, what="every event counted once")
    assert queue_depth(fresh_broker_url) == 0
    _assert_exact(store, all_lives)


def test_an_invalid_message_is_dead_lettered_once_even_when_its_batch_is_not_written(
        fresh_broker_url: str, store_url: str, store: TrackingStore) -> None:
    """Stopped during a store outage, the batch goes back to the queue: its valid events, not a
    second copy of the invalid message that was already dead-lettered (and acked on its own)."""
    config = tracker_config(fresh_broker_url, store_url, batch_size=5)
    bad = b"not a status event: dead-lettered exactly once"
    good = StatusEvent("after-the-outage", ACCEPTED, PORTAL, "azr:000100", "alpha", attempt=1)
    start, end = _store_outage(store_url, store)
    start()
    try:
        with running_consumer(config, store, batch_size=5) as consumer:
            publish(fresh_broker_url, [bad, good])  # one batch: the bad one, then a good one
            wait_for(lambda: metric(consumer, "hub_tracker_invalid_events_total") == 1
                     and metric(consumer, "hub_tracker_store_errors_total") >= 1, 60,
                     what="the dead letter and the failing write")
        assert queue_depth(fresh_broker_url) == 1  # the good event came back; the bad one did not
    finally:
        end()
    with running_consumer(config, store, batch_size=5) as consumer:
        wait_for(lambda: store.trace(good.message_id, Scope.operator()), 60, what="the good event after the outage")
        assert metric(consumer, "hub_tracker_invalid_events_total") == 0
    assert queue_depth(fresh_broker_url) == 0
    # both consumers have stopped and dead letters are confirmed before their ack: the count is final
    assert queue_depth(fresh_broker_url, DEAD_QUEUE) == 1
    dead = drain(fresh_broker_url, DEAD_QUEUE, 1, timeout=30)
    assert [body for _p, body in dead] == [bad]


def test_an_event_the_database_refuses_is_dead_lettered_and_the_rest_is_stored(
        fresh_broker_url: str, store_url: str, store: TrackingStore) -> None:
    """A refusal of content (SQLSTATE 22/23) is permanent: retrying the batch forever would stall
    the tracker; only the refused event goes to hub.dead."""
    refuse_poison(store_url, "data_exception")
    config = tracker_config(fresh_broker_url, store_url)
    all_lives = lives(PORTAL, time.time() - 300)
    events = [e for life in all_lives for e in life.events]
    poison = StatusEvent("poison", ACCEPTED, PORTAL, "azr:000100", "alpha", attempt=1)
    with running_consumer(config, store) as consumer:
        publish(fresh_broker_url, [*events[:4], poison, *events[4:]])
        wait_for(lambda: _complete(store, all_lives), 60, what="the events around the refused one")
        _assert_exact(store, all_lives)
        [(props, body)] = drain(fresh_broker_url, DEAD_QUEUE, 1, timeout=30)
        assert consumer.readiness()[0]
    assert queue_depth(fresh_broker_url) == 0
    assert body == poison.body()
    assert props.headers["x-hub-reason"] == "tracker_store_rejected"
    assert props.headers["x-hub-error-class"] == "TrackingStoreRejected"
    assert store.trace("poison", Scope.operator()) == []


def test_stop_writes_the_batch_in_hand(fresh_broker_url: str, store_url: str, store: TrackingStore,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import hub.tracking.consumer as consumer_module

    monkeypatch.setattr(consumer_module, "BATCH_WAIT", 120.0)  # the batch would wait: only stop() writes it
    config = tracker_config(fresh_broker_url, store_url)
    life = lives(PORTAL, time.time() - 60)[1]
    with running_consumer(config, store, batch_size=100) as consumer:
        publish(fresh_broker_url, list(life.events))
        wait_for(lambda: consumer.in_hand == len(life.events), 30, what="the events in hand")
        assert store.trace(life.message_id, Scope.operator()) == []
    assert queue_depth(fresh_broker_url) == 0
    assert _timeline(store, life) == [(e.event, e.at, e.attempt) for e in life.events]


def _close_tracker_connections(vhost: str) -> int:
    """Close the tracker's broker connections in ``vhost`` (as a node restart or a network cut would)."""
    ctl = shutil.which("rabbitmqctl")
    assert ctl, "rabbitmqctl is needed to cut the tracker's connection"
    listing = subprocess.run([ctl, "-q", "list_connections", "--no-table-headers", "pid", "vhost", "client_properties"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    closed = 0
    for line in listing.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[1] == vhost and '{"connection_name","hub-tracker"}' in parts[2]:
            subprocess.run([ctl, "-q", "close_connection", parts[0], "test: connection cut"],
                           capture_output=True, timeout=60, check=True)
            closed += 1
    return closed


def test_broker_connection_lost_mid_run_loses_nothing(fresh_broker_url: str, store_url: str,
                                                      store: TrackingStore) -> None:
    config = tracker_config(fresh_broker_url, store_url, batch_size=3)
    all_lives = [*lives(PORTAL, time.time() - 500), *lives(PORTAL, time.time() - 400)]
    events = [e for life in all_lives for e in life.events]
    with running_consumer(config, store, batch_size=3) as consumer:
        publish(fresh_broker_url, events[:14])
        wait_for(lambda: events_seen(consumer) >= 3, 60, what="the first batch")
        assert _close_tracker_connections(fresh_broker_url.rsplit("/", 1)[1]) == 1
        publish(fresh_broker_url, events[14:])
        wait_for(lambda: consumer.connections_opened >= 2, 60, what="the consumer to reconnect")
        wait_for(lambda: _complete(store, all_lives), 90, what="every event after the reconnect")
    assert queue_depth(fresh_broker_url) == 0
    _assert_exact(store, all_lives)
