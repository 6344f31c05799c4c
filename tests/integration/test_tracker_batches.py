"""Status batch messages through the real tracker consumer on the real RabbitMQ into SQLite: two
batches (``batch_message``, routing key ``<portal>.batch``) and one single event reach the store
as the same timelines single events would give, and every message is acked (unit side:
tests/unit/tracking/test_consumer_batches.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pika
import pytest

from hub.status import StatusEvent, batch_message
from hub.topology import DEAD_QUEUE, STATUS_EXCHANGE
from hub.tracking.model import Scope, TrackingStore
from hub.tracking.store import open_store
from tests.integration.helpers import wait_for
from tests.integration.tracking_support import (
    events_seen,
    lives,
    metric,
    queue_depth,
    running_consumer,
    tracker_config,
)

pytestmark = pytest.mark.broker
PORTAL = "portal.b"  # a dot: the routing key says portal_b, the events keep their portal


@pytest.fixture()
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tracking.db'}"


@pytest.fixture()
def store(store_url: str) -> Iterator[TrackingStore]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def _publish_batches(broker_url: str, batches: Sequence[Sequence[StatusEvent]], single: StatusEvent) -> None:
    """The batches, then the single event, with confirms (mandatory: an unbound key fails here)."""
    conn = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        for events in batches:
            routing_key, body, properties = batch_message(events)
            assert routing_key == "portal_b.batch"
            channel.basic_publish(STATUS_EXCHANGE, routing_key, body, properties, mandatory=True)
        channel.basic_publish(STATUS_EXCHANGE, single.routing_key, single.body(), single.properties(), mandatory=True)
    finally:
        conn.close()


def _timeline(store: TrackingStore, message_id: str) -> list[tuple[str, float, int | None]]:
    found = store.trace(message_id, Scope.operator())
    return [(e.event, e.at, e.attempt) for e in found[0].timeline] if len(found) == 1 else []


def test_two_batches_and_a_single_event_are_stored_and_acked(fresh_broker_url: str, store_url: str,
                                                             store: TrackingStore) -> None:
    all_lives = lives(PORTAL, time.time() - 600)
    events = [e for life in all_lives for e in life.events]
    first, second, single = events[:9], events[9:-1], events[-1]  # cut across applications
    expected = {life.message_id: [(e.event, e.at, e.attempt) for e in life.events] for life in all_lives}
    config = tracker_config(fresh_broker_url, store_url)
    with running_consumer(config, store) as consumer:
        _publish_batches(fresh_broker_url, [first, second], single)
        wait_for(lambda: all(_timeline(store, mid) == timeline for mid, timeline in expected.items()), 60,
                 what="every event of both batches and the single one stored")
        wait_for(lambda: events_seen(consumer) == len(events), 30, what="the events metric")
        assert metric(consumer, "hub_tracker_invalid_events_total") == 0
        assert metric(consumer, "hub_tracker_duplicate_events_total") == 0
        assert consumer.in_hand == 0
    assert queue_depth(fresh_broker_url) == 0  # all three messages acked: nothing came back on stop
    assert queue_depth(fresh_broker_url, DEAD_QUEUE) == 0
    for life in all_lives:
        [trace] = store.trace(life.message_id, Scope.operator())
        assert (trace.summary.state, trace.summary.portal) == (life.state, PORTAL), life.name
