"""Status batch messages in the consumer, without a broker (the broker's side: tests/integration/
test_tracker_batches.py): a batch is stored and acked as one delivery, refused whole when one of
its events breaks the contract; when the store refuses one of its events for good, that event alone
is dead-lettered (once, as a single-event message) and the batch's other events are stored and the
batch acked once by its flush."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
from prometheus_client import CollectorRegistry

from hub.config import parse_config
from hub.errors import TrackingStoreUnavailable
from hub.status import (
    ACCEPTED,
    DELIVERED,
    DELIVERING,
    InvalidStatusEvent,
    StatusEvent,
    batch_message,
    events_from_message,
)
from hub.topology import DEAD_EXCHANGE
from hub.tracking import consumer as consumer_module
from hub.tracking.consumer import StatusConsumer, TrackerMetrics, _Delivery
from hub.tracking.sql import TrackingStoreRejected

T0 = 1_790_000_000.0


@dataclass
class Channel:
    """Records dead letters and acks, in the order they happen; ``lose_acks`` acks fail as on a
    lost connection."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    lose_acks: int = 0

    def basic_publish(self, exchange: str, routing_key: str, body: bytes, properties: Any,
                      mandatory: bool = False) -> None:
        self.calls.append(("dead", (body, properties, exchange, routing_key, mandatory)))

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        if self.lose_acks:
            self.lose_acks -= 1
            raise pika.exceptions.StreamLostError("connection lost")
        self.calls.append(("ack", (delivery_tag, multiple)))

    def dead(self) -> list[bytes]:
        return [value[0] for kind, value in self.calls if kind == "dead"]

    def dead_properties(self) -> list[pika.BasicProperties]:
        return [value[1] for kind, value in self.calls if kind == "dead"]

    def dead_headers(self) -> list[dict[str, Any]]:
        return [p.headers for p in self.dead_properties()]

    def dead_routes(self) -> list[tuple[str, str, bool]]:
        return [value[2:] for kind, value in self.calls if kind == "dead"]

    def acks(self) -> list[tuple[int, bool]]:
        return [value for kind, value in self.calls if kind == "ack"]


class Connection:
    def sleep(self, seconds: float) -> None:
        pass


class Store:
    """Refuses any write holding 'poison' for good; fails once, transiently, on the single write of
    an event whose message id is in ``hiccup_on``. Records every write (by message ids)."""

    def __init__(self, hiccup_on: Sequence[str] = ()) -> None:
        self.stored: dict[str, StatusEvent] = {}
        self.hiccup_on = set(hiccup_on)
        self.writes: list[list[str]] = []

    def ingest(self, events: Sequence[StatusEvent]) -> int:
        self.writes.append([e.message_id for e in events])
        if any(e.message_id == "poison" for e in events):
            raise TrackingStoreRejected("tracking store refused the data (CheckViolation, SQLSTATE 23514)")
        if len(events) == 1 and events[0].message_id in self.hiccup_on:
            self.hiccup_on.discard(events[0].message_id)
            raise TrackingStoreUnavailable("tracking store read/write failed: connection lost")
        new = 0
        for e in events:  # like the real store: a duplicate within one write is not new either
            new += e.event_id not in self.stored
            self.stored.setdefault(e.event_id, e)
        return new

    def ids(self) -> set[str]:
        return {e.message_id for e in self.stored.values()}


def _consumer(store: Store, batch_size: int = 10) -> StatusConsumer:
    config = parse_config({"tracker": {"store": "sqlite:///x.db"}}, base=Path("/"), environ={})
    return StatusConsumer(config, store, TrackerMetrics(CollectorRegistry()),  # type: ignore[arg-type]
                          batch_size=batch_size)


def _event(mid: str, event: str = ACCEPTED, offset: float = 0.0) -> StatusEvent:
    return StatusEvent(mid, event, "portal-a", "azr:000100", "alpha", at=T0 + offset, attempt=1)


def _single(tag: int, mid: str) -> _Delivery:
    event = _event(mid)
    return _Delivery(tag, event.properties(), event.body())


def _batch(tag: int, *events: StatusEvent) -> _Delivery:
    _key, body, properties = batch_message(events)
    properties.headers = {}
    return _Delivery(tag, properties, body)


def _metric(consumer: StatusConsumer, name: str, labels: dict[str, str] | None = None) -> float:
    return consumer.metrics.registry.get_sample_value(name, labels or {}) or 0.0


def test_a_batch_of_several_events_is_stored_and_acked_once() -> None:
    store = Store()
    consumer = _consumer(store)
    channel = Channel()
    events = [_event("a", ACCEPTED), _event("a", DELIVERING, 1), _event("a", DELIVERED, 2), _event("b", ACCEPTED, 3)]
    consumer._inbox = [_batch(1, *events), _batch(2, *events)]  # the same batch again: duplicates
    assert consumer._flush(Connection(), channel)
    assert set(store.stored) == {e.event_id for e in events}
    assert store.writes == [["a", "a", "a", "b"] * 2]  # one transaction
    assert channel.calls == [("ack", (2, True))]
    assert _metric(consumer, "hub_tracker_events_total", {"event": ACCEPTED}) == 4
    assert _metric(consumer, "hub_tracker_events_total", {"event": DELIVERED}) == 2
    assert _metric(consumer, "hub_tracker_duplicate_events_total") == 4
    assert _metric(consumer, "hub_tracker_invalid_events_total") == 0
    assert consumer._acked == set() and consumer._inbox == []


def test_single_and_batch_deliveries_mixed_in_one_flush() -> None:
    store = Store()
    consumer = _consumer(store)
    channel = Channel()
    consumer._inbox = [_single(1, "s1"), _batch(2, _event("b1"), _event("b2"), _event("b3")), _single(3, "s2"),
                       _Delivery(4, pika.BasicProperties(headers={}), b"not json"),
                       _batch(5, _event("c1"), _event("c2"))]
    assert consumer._flush(Connection(), channel)
    assert store.ids() == {"s1", "b1", "b2", "b3", "s2", "c1", "c2"}
    assert store.writes == [["s1", "b1", "b2", "b3", "s2", "c1", "c2"]]
    assert channel.dead() == [b"not json"]
    assert channel.acks() == [(4, False), (5, True)]
    assert _metric(consumer, "hub_tracker_events_total", {"event": ACCEPTED}) == 7


def test_a_flush_stops_at_batch_size_events_and_never_splits_a_message() -> None:
    store = Store()
    consumer = _consumer(store, batch_size=5)
    channel = Channel()
    first = _batch(1, *(_event(f"x{i}") for i in range(3)))
    second = _batch(2, *(_event(f"y{i}") for i in range(4)))
    third = _single(3, "z")
    consumer._inbox = [first, second, third]
    assert consumer._flush(Connection(), channel)
    assert store.writes == [["x0", "x1", "x2", "y0", "y1", "y2", "y3"]]  # 7: the second batch whole
    assert channel.acks() == [(2, True)]
    assert consumer._inbox == [third]
    assert consumer._flush(Connection(), channel)
    assert channel.acks() == [(2, True), (3, True)]


def test_an_invalid_batch_is_dead_lettered_whole_naming_the_position() -> None:
    store = Store()
    consumer = _consumer(store)
    channel = Channel()
    good = _batch(1, _event("g1"), _event("g2"))
    _key, body, properties = batch_message([_event("v0"), _event("v1"), _event("v2")])
    raw = json.loads(body)
    raw["events"][1]["event"] = "exploded"  # the second event: unknown name
    bad_body = json.dumps(raw).encode()
    properties.headers = {}
    consumer._inbox = [good, _Delivery(2, properties, bad_body), _single(3, "after")]
    assert consumer._flush(Connection(), channel)
    assert store.ids() == {"g1", "g2", "after"}  # nothing of the invalid batch, not even v0
    assert channel.dead() == [bad_body]
    [headers] = channel.dead_headers()
    assert headers["x-hub-reason"] == "invalid_status_event"
    assert headers["x-hub-error-class"] == "InvalidStatusEvent"
    assert "status batch event 1" in headers["x-hub-error-message"]
    assert "exploded" not in headers["x-hub-error-message"]
    assert channel.acks() == [(2, False), (3, True)]
    assert _metric(consumer, "hub_tracker_invalid_events_total") == 1


def _assert_dead_event(channel: Channel, index: int, event: StatusEvent, reason: str, error_class: str) -> None:
    """Dead letter ``index`` is ``event`` alone, as if published on its own, with the reason headers."""
    body, properties = channel.dead()[index], channel.dead_properties()[index]
    assert body == event.body()
    assert events_from_message(properties.content_type, body, now=T0) == [event]
    assert properties.message_id == event.event_id and properties.type == f"hub.status.{event.event}"
    assert properties.delivery_mode == 2
    headers = properties.headers
    assert headers["x-hub-reason"] == reason
    assert headers["x-hub-error-class"] == error_class
    assert headers["x-hub-adapter"] == "tracker" and headers["x-hub-attempts"] == 1
    assert "x-hub-first-failure" in headers and "x-hub-last-failure" in headers
    assert channel.dead_routes()[index] == (DEAD_EXCHANGE, f"tracker.{reason}", True)


def test_one_by_one_dead_letters_only_the_refused_event_of_a_batch_and_stores_the_rest() -> None:
    """The store refuses the batch's second event for good; then a transient failure interrupts
    the single writes and the batch is written again: without the refused event, which is
    dead-lettered once, alone; the batch message is acked once, by the flush."""
    store = Store(hiccup_on=["a"])
    consumer = _consumer(store)
    channel = Channel()
    poison = _event("poison")
    refused = _batch(1, _event("b0"), poison, _event("b2"), _event("b3"))
    consumer._inbox = [refused, _single(2, "a"), _batch(3, _event("c0"), _event("c1"))]
    assert consumer._flush(Connection(), channel)
    assert len(channel.dead()) == 1  # the refused event, once; not the batch
    _assert_dead_event(channel, 0, poison, "tracker_store_rejected", "TrackingStoreRejected")
    assert channel.acks() == [(3, True)]  # the batch is acked by the flush, no tag alone or twice
    assert store.ids() == {"b0", "b2", "b3", "a", "c0", "c1"}  # the batch's other events are stored
    all_ids = ["b0", "poison", "b2", "b3", "a", "c0", "c1"]
    assert store.writes == [all_ids, ["b0"], ["poison"], ["b2"], ["b3"], ["a"], ["b0", "b2", "b3", "a", "c0", "c1"]]
    assert _metric(consumer, "hub_tracker_store_errors_total") == 2  # the refusal and the hiccup
    assert _metric(consumer, "hub_tracker_invalid_events_total") == 0
    assert consumer._acked == set() and consumer._inbox == []


def test_a_batch_event_the_store_cannot_hold_is_invalid_and_dead_lettered_alone() -> None:
    class NulStore(Store):
        def ingest(self, events: Sequence[StatusEvent]) -> int:
            if any(e.message_id == "nul" for e in events):
                self.writes.append([e.message_id for e in events])
                raise InvalidStatusEvent("status event field 'message_id' is not text the store can keep")
            return super().ingest(events)

    store = NulStore()
    consumer = _consumer(store)
    channel = Channel()
    nul = _event("nul")
    consumer._inbox = [_batch(1, nul, _event("n1")), _single(2, "a")]
    assert consumer._flush(Connection(), channel)
    assert len(channel.dead()) == 1
    _assert_dead_event(channel, 0, nul, "invalid_status_event", "InvalidStatusEvent")
    assert channel.acks() == [(2, True)]
    assert store.ids() == {"n1", "a"}
    assert _metric(consumer, "hub_tracker_invalid_events_total") == 1
    assert _metric(consumer, "hub_tracker_store_errors_total") == 0


def test_a_refused_single_event_message_is_still_dead_lettered_and_acked_alone() -> None:
    store = Store()
    consumer = _consumer(store)
    channel = Channel()
    single = _single(1, "poison")
    consumer._inbox = [single, _batch(2, _event("b0"), _event("b1"))]
    assert consumer._flush(Connection(), channel)
    assert channel.dead() == [single.body]
    assert channel.dead_headers()[0]["x-hub-reason"] == "tracker_store_rejected"
    assert channel.calls[1] == ("ack", (1, False))  # right after its copy
    assert channel.acks() == [(1, False), (2, True)]
    assert store.ids() == {"b0", "b1"}


def test_a_refused_batch_event_is_not_dead_lettered_again_when_its_batch_comes_back() -> None:
    """The flush's ack is lost with the connection after the refused event was copied: the batch
    is redelivered on the next connection; its other events are stored (again: duplicates), the
    refused one is not copied a second time. A refused event twice in one batch: one copy."""
    store = Store()
    consumer = _consumer(store)
    channel = Channel(lose_acks=1)
    poison = _event("poison")
    batch = _batch(1, _event("b0"), poison, _event("b1"), poison)
    consumer._inbox = [batch]
    with pytest.raises(pika.exceptions.StreamLostError):
        consumer._flush(Connection(), channel)
    consumer._inbox, consumer._acked = [_Delivery(1, batch.properties, batch.body)], set()  # as a reconnect does
    assert consumer._flush(Connection(), channel)
    assert channel.dead() == [poison.body()]
    assert channel.acks() == [(1, True)]
    assert store.ids() == {"b0", "b1"}
    assert _metric(consumer, "hub_tracker_store_errors_total") == 4  # each time the store refused it


def test_the_memory_of_refused_batch_events_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumer_module, "REMEMBERED_REFUSALS", 2)
    store = Store()
    consumer = _consumer(store)
    poisons = [StatusEvent("poison", ACCEPTED, "portal-a", "azr:000100", "alpha", at=T0, attempt=n)
               for n in range(1, 4)]
    consumer._inbox = [_batch(n, _event(f"g{n}"), poison) for n, poison in enumerate(poisons, start=1)]
    assert consumer._flush(Connection(), Channel())
    assert list(consumer._refused_events) == [poisons[1].event_id, poisons[2].event_id]  # the oldest dropped


def test_batch_events_keep_their_fields() -> None:
    """What the store gets from a batch is what was put in it, field for field."""
    store = Store()
    consumer = _consumer(store)
    event = StatusEvent("m", DELIVERED, "portal.a", "azr:000100", "alpha", at=T0, attempt=2,
                        transport_message_id="urn:x", correlation_id="c", detail={"xta_message_id": "urn:x"})
    consumer._inbox = [_batch(1, event)]
    assert consumer._flush(Connection(), Channel())
    assert [asdict(e) for e in store.stored.values()] == [asdict(event)]
