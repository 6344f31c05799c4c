"""The tracker reconstructs what really happened: a real worker delivers through the XTA simulator on
the real broker, the tracker consumes hub.status into SQLite and into PostgreSQL, and each
application's stored timeline is exactly the events the worker and the DLQ replay published
(ordered by time, then precedence) - for a delivered, a retried-then-delivered and a
dead-lettered-then-replayed-then-delivered application. The same events delivered again, and
shuffled into a fresh store, give the same timelines and states."""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from hub.dlq import DeadLetterFilter, DeadLetterQueue
from hub.envelope import Envelope, new_envelope
from hub.samples import make_ozg_application
from hub.status import (
    ACCEPTED,
    DEAD_LETTERED,
    DELIVERED,
    DELIVERING,
    REPLAYED,
    RETRY_SCHEDULED,
    TRANSPORT_REPORT,
    StatusEvent,
)
from hub.tracking.model import Scope, Trace
from hub.tracking.store import open_store
from tests.integration.helpers import AUTHOR, StatusCollector, make_config, running_worker, wait_for
from tests.integration.test_xta_support import publish as publish_applications
from tests.integration.test_xta_support import sim_config
from tests.integration.tracking_support import fresh_pg_database, running_consumer, tracker_config
from tests.integration.tracking_support import publish as publish_events
from transport.xta.metadata import Party
from transport.xta.simulator import InjectedFault, serve

pytestmark = pytest.mark.broker

PORTAL = "pipeline-portal"
DESTINATION = "azr:000100"
OPERATOR = Scope.operator()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tracking.db'}"
    else:
        with fresh_pg_database() as (url, _name):
            yield url


def _application(seed: int) -> Envelope:
    xml, message_id = make_ozg_application(reader=Party(DESTINATION, "ABH"), author=Party(**AUTHOR), seed=seed)
    return new_envelope(destination=DESTINATION, message_type="OZG.Antrag.130101", message=xml, portal=PORTAL,
                        message_id=message_id, filename="antrag.xml", correlation_id=f"corr-{seed}")


def _ordered(events: list[StatusEvent]) -> list[StatusEvent]:
    return sorted(events, key=lambda e: (e.at, e.precedence, e.event_id))


def _one(store, ident: str) -> Trace:
    traces = store.trace(ident, OPERATOR)
    assert len(traces) == 1, traces
    return traces[0]


def _snapshot(store, message_ids: list[str]) -> dict[str, Trace]:
    return {m: _one(store, m) for m in message_ids}


def test_worker_lives_are_reconstructed_exactly(fresh_broker_url, pki, store_url, tmp_path) -> None:
    delivered, retried, replayed = (_application(seed) for seed in (9601, 9602, 9603))
    ids = [delivered.message_id, retried.message_id, replayed.message_id]
    store = open_store(store_url)
    status = StatusCollector(fresh_broker_url, binding=f"{PORTAL}.#")
    tracker = tracker_config(fresh_broker_url, store_url, batch_size=20)
    try:
        with serve(sim_config(pki)) as sim, running_consumer(tracker, store):
            config = make_config(fresh_broker_url, pki, sim.url, retry_delays=[1, 1],
                                 adapter_overrides={"report_poll_interval": 0.3})
            with running_worker(config, "alpha"):
                publish_applications(config, [delivered])
                wait_for(partial(status.of, delivered.message_id, TRANSPORT_REPORT), 60, what="the report")
                sim.inject(InjectedFault(operation="sendMessage", code="9030"))  # transient, once
                publish_applications(config, [retried])
                wait_for(partial(status.of, retried.message_id, TRANSPORT_REPORT), 60, what="the retried one")
                sim.inject(InjectedFault(operation="sendMessage", code="9012"))  # permanent, once
                publish_applications(config, [replayed])
                wait_for(partial(status.of, replayed.message_id, DEAD_LETTERED), 60, what="the dead letter")
                counts = DeadLetterQueue(config.broker).replay(DeadLetterFilter(adapter="alpha"))
                assert counts["replayed"] == 1
                wait_for(partial(status.of, replayed.message_id, TRANSPORT_REPORT), 60, what="the replayed one")
            published = {m: _ordered(status.of(m)) for m in ids}

            def recorded() -> bool:
                return all(len(t[0].timeline) == len(published[m]) for m in ids if (t := store.trace(m, OPERATOR))) \
                    and all(store.trace(m, OPERATOR) for m in ids)

            wait_for(recorded, 60, what="the tracker to record every published event")
        first = _snapshot(store, ids)
        for m in ids:
            assert [e.event_id for e in first[m].timeline] == [e.event_id for e in published[m]], m
            for stored, sent in zip(first[m].timeline, published[m], strict=True):
                assert (stored.event, stored.at, stored.attempt, stored.reason, stored.transport_message_id) == (
                    sent.event, sent.at, sent.attempt, sent.reason, sent.transport_message_id)
        steps = {m: [(e.event, e.attempt) for e in first[m].timeline if e.event != TRANSPORT_REPORT] for m in ids}
        assert steps[delivered.message_id] == [(ACCEPTED, 1), (DELIVERING, 1), (DELIVERED, 1)]
        assert steps[retried.message_id] == [(ACCEPTED, 1), (DELIVERING, 1), (RETRY_SCHEDULED, 1),
                                             (ACCEPTED, 2), (DELIVERING, 2), (DELIVERED, 2)]
        assert steps[replayed.message_id] == [(ACCEPTED, 1), (DELIVERING, 1), (DEAD_LETTERED, 1), (REPLAYED, None),
                                              (ACCEPTED, 1), (DELIVERING, 1), (DELIVERED, 1)]
        for m in ids:
            summary = first[m].summary
            assert (summary.state, summary.portal, summary.destination, summary.adapter) == (
                DELIVERED, PORTAL, DESTINATION, "alpha")
            assert summary.transport_report == "green"
            delivery = next(e for e in published[m] if e.event == DELIVERED)
            assert summary.transport_message_id == delivery.transport_message_id
            assert summary.application_ref == delivery.application_ref and summary.application_ref
            # the same application, found by its other ids
            assert _one(store, delivery.transport_message_id or "").summary.message_id == m
        assert first[retried.message_id].summary.attempts == 2
        assert store.trace(f"corr-{9602}", OPERATOR)[0].summary.message_id == retried.message_id

        # the same events again, shuffled, on the broker: nothing changes
        everything = [e for m in ids for e in published[m]]
        random.Random(7).shuffle(everything)
        with running_consumer(tracker, store):
            publish_events(fresh_broker_url, everything)
            marker = StatusEvent("flush-marker", ACCEPTED, PORTAL, DESTINATION)
            publish_events(fresh_broker_url, [marker])  # one queue: once it is stored, the rest is too
            wait_for(lambda: store.trace("flush-marker", OPERATOR), 60, what="the re-delivered events")
        assert _snapshot(store, ids) == first

        # and into a fresh store, shuffled differently and in small batches
        other = open_store(f"sqlite:///{tmp_path / 'shuffled.db'}")
        try:
            for seed in (1, 2, 3):
                random.Random(seed).shuffle(everything)
                for start in range(0, len(everything), 4):
                    other.ingest(everything[start:start + 4])
            assert _snapshot(other, ids) == first
        finally:
            other.close()
    finally:
        status.close()
        store.close()
