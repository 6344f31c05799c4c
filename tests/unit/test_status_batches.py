"""Status batches without a broker: the message format and its refusals (hub/status.py), and the
worker's StatusBatcher (hub/worker_events.py): one message per portal per window, early when
full, everything in hand at close, and a batch that is not confirmed taken apart again (outcome
events to the retrier, informational ones counted lost). On the real broker:
tests/integration/test_status_batching.py."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pika
import pytest

from hub.errors import BrokerUnavailable
from hub.status import (
    ACCEPTED,
    BATCH_CONTENT_TYPE,
    DELIVERED,
    MAX_BATCH_EVENTS,
    InvalidStatusEvent,
    StatusEvent,
    batch_message,
    events_from_message,
)
from hub.worker_events import StatusBatcher, WorkerEvents
from tests.integration.helpers import wait_for


def _event(n: int, portal: str = "portal-a", event: str = DELIVERED) -> StatusEvent:
    return StatusEvent(f"app-{n}", event, portal, "abh-1", "alpha", at=time.time(), attempt=1)


class _Publisher:
    """What the batcher and WorkerEvents use of a ResilientPublisher: records, or fails, each publish."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sent: list[tuple[str, bytes, pika.BasicProperties]] = []
        self.lock = threading.Lock()

    def publish_nowait(self, _exchange: str, routing_key: str, body: bytes, properties: pika.BasicProperties,
                       *, on_failure: Any = None, window_timeout: float = 5.0) -> None:
        with self.lock:
            self.sent.append((routing_key, body, properties))
        if self.fail and on_failure is not None:
            on_failure(BrokerUnavailable("publish not confirmed, connection closed"))

    def events(self) -> list[list[StatusEvent]]:
        with self.lock:
            return [events_from_message(p.content_type, b) for _k, b, p in self.sent]


def test_a_batch_carries_its_events_and_reads_back_equal() -> None:
    events = [_event(n) for n in range(3)]
    routing_key, body, properties = batch_message(events)
    assert routing_key == "portal-a.batch"
    assert properties.content_type == BATCH_CONTENT_TYPE and properties.delivery_mode == 2
    assert events_from_message(properties.content_type, body) == events
    again = batch_message(events)[2]
    assert again.message_id == properties.message_id, "the same events, the same batch id"
    assert batch_message(events[:2])[2].message_id != properties.message_id
    single = events[0]
    assert events_from_message(single.properties().content_type, single.body()) == [single]


@pytest.mark.parametrize(("body", "says"), [
    (b"not json", "not JSON"),
    (b"[]", "list 'events'"),
    (b'{"events": {}}', "list 'events'"),
    (b'{"events": []}', "0 events"),
    (json.dumps({"events": [{}] * (MAX_BATCH_EVENTS + 1)}).encode(), f"{MAX_BATCH_EVENTS + 1} events"),
    (b'{"events": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}", "not JSON"),
])
def test_a_malformed_batch_is_refused_whole(body: bytes, says: str) -> None:
    with pytest.raises(InvalidStatusEvent, match=says):
        events_from_message(BATCH_CONTENT_TYPE, body)


def test_one_bad_event_refuses_the_batch_naming_its_position_not_its_content() -> None:
    good = json.loads(batch_message([_event(1)])[1])["events"][0]
    bad = {**good, "event": "Mustermann-geheim"}
    body = json.dumps({"events": [good, good, bad]}).encode()
    with pytest.raises(InvalidStatusEvent, match="status batch event 2: unknown status event") as caught:
        events_from_message(BATCH_CONTENT_TYPE, body)
    assert "Mustermann" not in str(caught.value)
    other = json.loads(batch_message([_event(2, portal="portal-b")])[1])["events"][0]
    with pytest.raises(InvalidStatusEvent, match="mixes portals"):
        events_from_message(BATCH_CONTENT_TYPE, json.dumps({"events": [good, other]}).encode())
    with pytest.raises(ValueError, match="one portal"):
        batch_message([_event(1), _event(2, portal="portal-b")])


def test_events_of_a_window_go_out_as_one_message_per_portal() -> None:
    publisher = _Publisher()
    batcher = StatusBatcher(lambda: publisher, window=0.3, max_events=100)  # type: ignore[arg-type, return-value]
    for n in range(5):
        batcher.add(_event(n, "portal-a"), lambda _e, _x: None)
        batcher.add(_event(n, "portal-b"), lambda _e, _x: None)
    wait_for(lambda: len(publisher.sent) == 2, timeout=30, what="two batch messages")
    time.sleep(0.5)  # nothing more comes: a window's events travel together
    assert sorted(k for k, _b, _p in publisher.sent) == ["portal-a.batch", "portal-b.batch"]
    assert sorted(len(events) for events in publisher.events()) == [5, 5]
    batcher.close()


def test_a_full_batch_goes_out_before_its_window_and_close_sends_the_rest() -> None:
    publisher = _Publisher()
    batcher = StatusBatcher(lambda: publisher, window=60.0, max_events=4)  # type: ignore[arg-type, return-value]
    for n in range(10):
        batcher.add(_event(n), lambda _e, _x: None)
    wait_for(lambda: publisher.sent, timeout=30, what="a full batch long before the 60 s window")
    batcher.close()
    sizes = [len(events) for events in publisher.events()]
    assert sum(sizes) == 10 and max(sizes) <= 4
    assert [e.message_id for events in publisher.events() for e in events] == [f"app-{n}" for n in range(10)]
    batcher.add(_event(99), lambda _e, _x: None)  # after close: on its own, at once
    assert publisher.sent[-1][2].content_type == "application/json"


def test_an_unconfirmed_batch_sends_outcomes_to_the_retrier_and_counts_the_rest_lost() -> None:
    publisher = _Publisher(fail=True)
    retried: list[str] = []
    lost: list[str] = []
    events = WorkerEvents("alpha", lambda: publisher, _Counter(lost),  # type: ignore[arg-type, return-value]
                          batcher=StatusBatcher(lambda: publisher, window=0.05))  # type: ignore[arg-type, return-value]
    events.retrier.submit = lambda event, error: retried.append(event.event)  # type: ignore[method-assign]
    events.publish_nowait(_event(1, event=ACCEPTED))
    events.publish(_event(1, event=DELIVERED))
    events.flush()
    assert retried == [DELIVERED] and lost == [ACCEPTED]
    assert len(publisher.sent) == 1 and publisher.sent[0][2].content_type == BATCH_CONTENT_TYPE


class _Counter:
    """A prometheus Counter's labels(...).inc() recording the event name."""

    def __init__(self, into: list[str]) -> None:
        self.into = into

    def labels(self, _adapter: str, event: str) -> Any:
        into = self.into

        class _Child:
            def inc(self) -> None:
                into.append(event)
        return _Child()


def test_asyncapi_describes_the_batch_as_the_code_builds_it() -> None:
    import yaml

    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml").read_text(encoding="utf-8"))
    spec = doc["components"]["messages"]["StatusBatch"]
    routing_key, body, properties = batch_message([_event(1, portal="portal.x")])
    assert spec["contentType"] == properties.content_type == BATCH_CONTENT_TYPE
    assert spec["bindings"]["amqp"]["messageType"] == properties.type
    assert spec["payload"]["properties"]["events"]["maxItems"] == MAX_BATCH_EVENTS
    assert set(json.loads(body)) == set(spec["payload"]["properties"])
    assert doc["channels"]["statusBatches"]["address"].replace("{portal}", "portal_x") == routing_key
