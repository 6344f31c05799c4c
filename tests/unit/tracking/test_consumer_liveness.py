"""The tracker's consume loop stays alive (/healthz) through slow and failing store writes: it
ticks before every write, one-event writes included, and around every backoff wait, and its stall
limit covers the longest write the store's own timeouts allow. A batch written late keeps its lag
visible (idle counts from the last write, not only the last delivery). Fake clock, no broker."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry

from hub.config import parse_config
from hub.errors import TrackingStoreUnavailable
from hub.health import STALL_AFTER, Heartbeat
from hub.status import StatusEvent
from hub.tracking.consumer import StatusConsumer, TrackerMetrics
from hub.tracking.sql import CONNECT_TIMEOUT_S, STATEMENT_TIMEOUT_MS, TrackingStoreRejected
from tests.unit.tracking.test_consumer_acks import FakeChannel, _delivery, _event

WRITE = 2 * (CONNECT_TIMEOUT_S + STATEMENT_TIMEOUT_MS / 1000)  # the longest one write may take


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SlowStore:
    """Every write takes ``WRITE`` seconds of the fake clock; the first ``failures`` writes then
    fail (transiently), a batch of more than one event with 'poison' in it is refused for good.
    Records the heartbeat's age at the start of every write."""

    def __init__(self, clock: Clock, failures: int = 0) -> None:
        self.clock = clock
        self.failures = failures
        self.heartbeat: Heartbeat | None = None
        self.ages: list[float] = []
        self.alive: list[bool] = []

    def ingest(self, events: Sequence[StatusEvent]) -> int:
        assert self.heartbeat is not None
        self.ages.append(self.heartbeat.age)
        self.clock.now += WRITE
        self.alive.append(self.heartbeat()[0])
        if self.failures:
            self.failures -= 1
            raise TrackingStoreUnavailable("tracking store read/write failed: timeout")
        if len(events) > 1 and any(e.message_id == "poison" for e in events):
            raise TrackingStoreRejected("tracking store refused the data (CheckViolation, SQLSTATE 23514)")
        return len(events)


class SleepingConnection:
    """``connection.sleep`` (the backoff between two writes) passes on the fake clock."""

    def __init__(self, clock: Clock, store: SlowStore) -> None:
        self.clock = clock
        self.store = store
        self.slept: list[float] = []
        self.ages: list[float] = []  # the heartbeat's age as each wait begins

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        assert self.store.heartbeat is not None
        self.ages.append(self.store.heartbeat.age)
        self.clock.now += seconds
        assert self.store.heartbeat is not None
        self.store.alive.append(self.store.heartbeat()[0])


def _consumer(store: SlowStore, clock: Clock) -> StatusConsumer:
    config = parse_config({"tracker": {"store": "sqlite:///x.db"}}, base=Path("/"), environ={})
    consumer = StatusConsumer(config, store, TrackerMetrics(CollectorRegistry()), batch_size=10)  # type: ignore[arg-type]
    consumer.heartbeat = Heartbeat("tracker consume loop", stall_after=consumer.heartbeat.stall_after, clock=clock)
    store.heartbeat = consumer.heartbeat
    return consumer


def test_the_stall_limit_covers_the_longest_store_write() -> None:
    consumer = _consumer(SlowStore(Clock()), Clock())
    assert consumer.heartbeat.stall_after >= STALL_AFTER + WRITE


def test_a_store_outage_with_slow_failing_writes_never_stalls_the_loop() -> None:
    clock = Clock()
    store = SlowStore(clock, failures=8)  # backoff 0.5 s doubling to 30 s: the waits reach the longest
    consumer = _consumer(store, clock)
    connection = SleepingConnection(clock, store)
    consumer._inbox = [_delivery(1, _event("a")), _delivery(2, _event("b"))]
    assert consumer._flush(connection, FakeChannel())
    assert connection.slept[-1] == 30.0
    assert store.ages == [0.0] * 9  # a tick right before every write, also right after each wait
    assert connection.ages == [0.0] * 8  # and one as each wait begins
    assert all(store.alive)


def test_writing_one_event_at_a_time_ticks_per_event() -> None:
    clock = Clock()
    store = SlowStore(clock)
    consumer = _consumer(store, clock)
    consumer._inbox = [_delivery(1, _event("poison")), *(_delivery(n, _event(f"e{n}")) for n in range(2, 8))]
    channel = FakeChannel()
    assert consumer._flush(SleepingConnection(clock, store), channel)
    assert len(store.ages) == 8  # the batch, then each of its 7 events alone
    assert store.ages == [0.0] * 8
    assert all(store.alive)


def test_the_lag_of_a_batch_written_late_is_not_reset_at_once() -> None:
    clock = Clock()
    store = SlowStore(clock)
    consumer = _consumer(store, clock)
    consumer._inbox = [_delivery(1, _event("a"))]  # delivered long ago (no delivery since): written now
    assert consumer._flush(SleepingConnection(clock, store), FakeChannel())
    registry = consumer.metrics.registry
    lag = registry.get_sample_value("hub_tracker_lag_seconds")
    assert lag is not None and lag > 0
    consumer._reset_lag_when_idle()
    assert registry.get_sample_value("hub_tracker_lag_seconds") == lag  # just written: not idle yet
