"""The complete status-event life of an application on the real broker, a real worker and the XTA
simulator: delivered (with its transport reports), retried then delivered, dead-lettered then
replayed then delivered. Every event carries the right ids and never any payload text."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

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
from tests.clock import SteppedClock
from tests.integration.helpers import AUTHOR, StatusCollector, make_config, running_worker, wait_for
from tests.integration.test_xta_support import publish, sim_config
from transport.content import ContentPart
from transport.xta.metadata import Party
from transport.xta.simulator import InjectedFault, serve

pytestmark = pytest.mark.broker

MARKER = "Qwzx-STATUS-Geheim-7391"
PORTAL = "status-portal"
DESTINATION = "azr:000100"


def _marked_application(seed: int) -> tuple[Envelope, str]:
    """A schema-valid application whose applicant's family name and attachment carry ``MARKER``,
    published with a correlation id; returns it and its antragsidentifikation."""
    xml, message_id = make_ozg_application(reader=Party(DESTINATION, "ABH"), author=Party(**AUTHOR), seed=seed)
    family = xml.split(b"<familienname>")[1].split(b"</familienname>")[0]
    xml = xml.replace(b"<familienname>" + family, b"<familienname>" + MARKER.encode())
    ref = xml.split(b"<antragsidentifikation>")[1].split(b"</antragsidentifikation>")[0].decode()
    envelope = new_envelope(destination=DESTINATION, message_type="OZG.Antrag.130101", message=xml, portal=PORTAL,
                            message_id=message_id, filename="antrag.xml",
                            attachments=(ContentPart(f"Anlage {MARKER}".encode(), "text/plain", "anlage.txt"),))
    return replace(envelope, correlation_id=f"portal-ref-{seed}"), ref


def _timeline(status: StatusCollector, message_id: str) -> list[StatusEvent]:
    """The events of one application in timeline order (time, then precedence), as a tracker orders them."""
    return sorted(status.of(message_id), key=lambda e: (e.at, e.precedence))


def _steps(events: list[StatusEvent]) -> list[tuple[str, int | None]]:
    return [(e.event, e.attempt) for e in events]


def _assert_no_payload(status: StatusCollector) -> None:
    bodies = [e.body().decode() for e in status.events]
    assert bodies, "no events collected"
    for body in bodies:
        for form in (MARKER, "STATUS-Geheim", "Anlage"):
            assert form not in body, f"payload text {form!r} in a status event"


def _assert_common(events: list[StatusEvent], envelope: Envelope) -> None:
    for e in events:
        assert (e.portal, e.destination, e.adapter) == (PORTAL, DESTINATION, "alpha"), e
        assert e.correlation_id == envelope.correlation_id, e
        assert e.routing_key == f"{PORTAL}.{e.event}.{DESTINATION}"
        assert StatusEvent.from_body(e.body()) == e
    assert len({e.event_id for e in events}) == len(events)  # every event is a distinct event


def test_delivered_application_has_its_full_life(fresh_broker_url, pki) -> None:
    clock = SteppedClock()  # the report stays open until the worker has polled it open once
    with serve(sim_config(pki, report_delay=30, clock=clock)) as sim:
        config = make_config(fresh_broker_url, pki, sim.url, adapter_overrides={"report_poll_interval": 0.3})
        envelope, ref = _marked_application(9501)
        status = StatusCollector(fresh_broker_url, binding=f"{PORTAL}.#")  # a portal's own binding
        try:
            with running_worker(config, "alpha"):
                publish(config, [envelope])
                wait_for(lambda: [e for e in status.of(envelope.message_id, TRANSPORT_REPORT)
                                  if e.detail["traffic_light"] == "open"], 60, what="the open report")
                clock.advance(30)
                wait_for(lambda: [e for e in status.of(envelope.message_id, TRANSPORT_REPORT)
                                  if e.detail["traffic_light"] == "green"], 60, what="the green report")
                wait_for(lambda: len(status.of(envelope.message_id)) >= 5, 10, what="all events")
            xta_id = sim.store.messages()[0].message_id
        finally:
            status.close()
    events = _timeline(status, envelope.message_id)
    steps = _steps(events)
    assert steps[:4] == [(ACCEPTED, 1), (DELIVERING, 1), (DELIVERED, 1), (TRANSPORT_REPORT, 1)], steps
    assert len(events) == 5 and events[4].event == TRANSPORT_REPORT, steps  # "open" once, then the final light
    accepted, delivering, delivered, opened, green = events
    assert [opened.detail["traffic_light"], green.detail["traffic_light"]] == ["open", "green"]
    assert green.attempt is not None and green.attempt >= 2  # the poll count: open was polled first
    # events arrive in the order they happened (one publisher channel)
    assert [e.event_id for e in status.of(envelope.message_id)] == [e.event_id for e in events]
    _assert_common(events, envelope)
    assert accepted.transport_message_id is None and accepted.application_ref is None
    for e in (delivering, delivered, opened, green):
        assert e.transport_message_id == xta_id, e
    assert delivered.detail["xta_message_id"] == xta_id and delivered.detail["duplicate"] is False
    assert delivering.application_ref == delivered.application_ref == ref
    assert ref.startswith("OZG-ANTRAG-")
    assert delivered.reason is None
    _assert_no_payload(status)


def test_transient_failure_then_delivery(fresh_broker_url, pki) -> None:
    with serve(sim_config(pki)) as sim:
        sim.inject(InjectedFault(operation="sendMessage", code="9030"))  # once: the retry goes through
        config = make_config(fresh_broker_url, pki, sim.url, retry_delays=[1, 1],
                             adapter_overrides={"poll_transport_reports": False})
        envelope, ref = _marked_application(9502)
        status = StatusCollector(fresh_broker_url)
        try:
            with running_worker(config, "alpha"):
                publish(config, [envelope])
                wait_for(partial(status.of, envelope.message_id, DELIVERED), 60, what="the delivery")
            xta_id = sim.store.messages()[0].message_id
        finally:
            status.close()
    events = _timeline(status, envelope.message_id)
    assert _steps(events) == [(ACCEPTED, 1), (DELIVERING, 1), (RETRY_SCHEDULED, 1),
                              (ACCEPTED, 2), (DELIVERING, 2), (DELIVERED, 2)], _steps(events)
    _assert_common(events, envelope)
    retry = events[2]
    assert retry.reason == retry.detail["reason"] == "xta_9030"
    assert retry.detail["attempts"] == 1 and retry.detail["error"] == "XtaFault"
    # the transport id is created once and kept across retries
    for e in events:
        known = e.event != ACCEPTED  # accepted comes before the message is even decoded
        assert e.transport_message_id == (xta_id if known else None), e
        assert e.application_ref == (ref if known else None), e
    assert events[5].detail["xta_message_id"] == xta_id
    _assert_no_payload(status)


def test_dead_letter_then_replay_then_delivery(fresh_broker_url, pki) -> None:
    with serve(sim_config(pki)) as sim:
        sim.inject(InjectedFault(operation="sendMessage", code="9012"))  # permanent, once: the replay goes through
        config = make_config(fresh_broker_url, pki, sim.url, retry_delays=[1],
                             adapter_overrides={"poll_transport_reports": False})
        envelope, ref = _marked_application(9503)
        status = StatusCollector(fresh_broker_url)
        try:
            with running_worker(config, "alpha"):
                publish(config, [envelope])
                wait_for(partial(status.of, envelope.message_id, DEAD_LETTERED), 60, what="the dead letter")
                counts = DeadLetterQueue(config.broker).replay(DeadLetterFilter(adapter="alpha"))
                assert counts == {"replayed": 1, "unroutable": 0, "skipped": 0}
                wait_for(partial(status.of, envelope.message_id, DELIVERED), 60, what="the delivery after replay")
            xta_id = sim.store.messages()[0].message_id
        finally:
            status.close()
    events = _timeline(status, envelope.message_id)
    assert _steps(events) == [(ACCEPTED, 1), (DELIVERING, 1), (DEAD_LETTERED, 1), (REPLAYED, None),
                              (ACCEPTED, 1), (DELIVERING, 1), (DELIVERED, 1)], _steps(events)
    worker_events = [e for e in events if e.event != REPLAYED]
    _assert_common(worker_events, envelope)
    dead, replayed = events[2], events[3]
    assert dead.reason == dead.detail["reason"] == "xta_9012"
    assert (replayed.reason, replayed.detail["previous_reason"]) == ("xta_9012", "xta_9012")
    assert (replayed.portal, replayed.destination, replayed.adapter) == (PORTAL, DESTINATION, "alpha")
    assert replayed.correlation_id == envelope.correlation_id
    # an explicit refusal frees the transport id: the replay delivers under a new one
    assert dead.transport_message_id == events[1].transport_message_id != xta_id
    assert events[5].transport_message_id == events[6].transport_message_id == xta_id
    assert all(e.application_ref == ref for e in (events[1], dead, events[5], events[6]))
    _assert_no_payload(status)
