"""The consumer's batch bookkeeping without a broker (the broker's side: tests/integration/
test_tracker.py): every dead letter is acked on its own right after its copy, no tag is acked
twice, and a refused event is dead-lettered once even when a transient failure interrupts the
one-at-a-time writing of its batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
from prometheus_client import CollectorRegistry

from hub.config import parse_config
from hub.errors import TrackingStoreUnavailable
from hub.status import InvalidStatusEvent, StatusEvent
from hub.tracking.consumer import StatusConsumer, TrackerMetrics, _Delivery
from hub.tracking.sql import TrackingStoreRejected

T0 = 1_790_000_000.0


@dataclass
class FakeChannel:
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def basic_publish(self, exchange: str, routing_key: str, body: bytes, properties: Any,
                      mandatory: bool = False) -> None:
        self.calls.append(("dead", body))

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.calls.append(("ack", (delivery_tag, multiple)))

    def dead(self) -> list[bytes]:
        return [body for kind, body in self.calls if kind == "dead"]

    def acks(self) -> list[tuple[int, bool]]:
        return [tag for kind, tag in self.calls if kind == "ack"]


class FakeConnection:
    def sleep(self, seconds: float) -> None:
        pass


class Store:
    """Refuses 'poison' for good, 'nul' as text it cannot hold; fails once, transiently, on the
    first single write of a storable event."""

    def __init__(self) -> None:
        self.stored: dict[str, StatusEvent] = {}
        self.hiccup = True

    def ingest(self, events: Sequence[StatusEvent]) -> int:
        if any(e.message_id == "nul" for e in events):
            raise InvalidStatusEvent("status event field 'message_id' is not text the store can keep")
        if any(e.message_id == "poison" for e in events):
            raise TrackingStoreRejected("tracking store refused the data (CheckViolation, SQLSTATE 23514)")
        if len(events) == 1 and self.hiccup:
            self.hiccup = False
            raise TrackingStoreUnavailable("tracking store read/write failed: connection lost")
        new = [e for e in events if e.event_id not in self.stored]
        self.stored.update((e.event_id, e) for e in events)
        return len(new)


def _consumer(store: Store) -> StatusConsumer:
    config = parse_config({"tracker": {"store": "sqlite:///x.db"}}, base=Path("/"), environ={})
    return StatusConsumer(config, store, TrackerMetrics(CollectorRegistry()), batch_size=10)  # type: ignore[arg-type]


def _delivery(tag: int, body: bytes) -> _Delivery:
    return _Delivery(tag, pika.BasicProperties(headers={}), body)


def _event(mid: str) -> bytes:
    return StatusEvent(mid, "accepted", "portal-a", "azr:000100", "alpha", at=T0, attempt=1).body()


def test_dead_letters_are_acked_alone_and_the_batch_once_without_acking_a_tag_twice() -> None:
    store = Store()
    store.hiccup = False
    consumer = _consumer(store)
    channel = FakeChannel()
    consumer._inbox = [_delivery(1, _event("a")), _delivery(2, b"not json"), _delivery(3, _event("b")),
                       _delivery(4, b"[" * 100_000)]
    assert consumer._flush(FakeConnection(), channel)
    # each invalid one: copied, then acked alone; then one ack for the rest (up to 3: tag 4 is acked already)
    assert channel.calls == [("dead", b"not json"), ("ack", (2, False)), ("dead", b"[" * 100_000),
                             ("ack", (4, False)), ("ack", (3, True))]
    assert {e.message_id for e in store.stored.values()} == {"a", "b"}


def test_a_refused_event_is_dead_lettered_once_when_a_hiccup_interrupts_its_batch() -> None:
    store = Store()
    consumer = _consumer(store)
    channel = FakeChannel()
    consumer._inbox = [_delivery(1, _event("poison")), _delivery(2, _event("nul")), _delivery(3, _event("a")),
                       _delivery(4, _event("b"))]
    assert consumer._flush(FakeConnection(), channel)
    # not again when the rest of the batch was written a second time
    assert channel.dead() == [_event("poison"), _event("nul")]
    assert channel.acks() == [(1, False), (2, False), (4, True)]
    assert {e.message_id for e in store.stored.values()} == {"a", "b"}


def test_a_batch_of_nothing_but_refused_events_is_acked_by_their_own_acks() -> None:
    consumer = _consumer(Store())
    channel = FakeChannel()
    consumer._inbox = [_delivery(7, _event("poison")), _delivery(8, b"{}")]
    assert consumer._flush(FakeConnection(), channel)
    assert channel.acks() == [(8, False), (7, False)]
    assert len(channel.dead()) == 2
