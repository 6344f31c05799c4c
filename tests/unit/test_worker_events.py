"""The pieces behind the worker's status events, without a broker: ids from untrusted AMQP
properties, the application reference, the "open" report event once, and the non-blocking publish
that never raises into a delivery thread. (The events on the real broker: tests/integration/
test_status_events.py.)"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from concurrent.futures import Future
from typing import Any

import pika
import pytest
from prometheus_client import CollectorRegistry

from hub.config import PORTAL_PATTERN
from hub.errors import BrokerUnavailable, PublishNotConfirmed
from hub.metrics import WorkerMetrics
from hub.pipeline import application_ref
from hub.publisher import ResilientPublisher
from hub.reports import PollRequest
from hub.status import (
    ACCEPTED,
    DELIVERED,
    RETRY_SCHEDULED,
    StatusEvent,
)
from hub.worker_events import (
    MISSING_PORTAL,
    EventRetrier,
    MessageIds,
    Progress,
    WorkerEvents,
    attempt_of,
    clip_id,
)
from transport.security.xml import parse_xml

XAU = "http://www.osci.de/xauslaender2611"


def _doc(inner: str) -> Any:
    return parse_xml(f'<xau:ozg.antrag.130101 xmlns:xau="{XAU}">{inner}</xau:ozg.antrag.130101>'.encode())


def test_application_ref_is_the_top_level_antragsidentifikation() -> None:
    assert application_ref(_doc("<xau:kopf/><xau:antragsidentifikation> OZG-1 </xau:antragsidentifikation>")) == "OZG-1"
    assert application_ref(_doc("<antragsidentifikation>plain</antragsidentifikation>")) == "plain"
    assert application_ref(_doc(f"<xau:antragsidentifikation>{'x' * 500}</xau:antragsidentifikation>")) == "x" * 200
    # only the top level counts; comments are skipped; empty means none
    assert application_ref(_doc("<xau:a><xau:antragsidentifikation>deep</xau:antragsidentifikation></xau:a>")) is None
    assert application_ref(_doc("<!-- c --><xau:antragsidentifikation>ok</xau:antragsidentifikation>")) == "ok"
    assert application_ref(_doc("<xau:antragsidentifikation>  </xau:antragsidentifikation>")) is None
    assert application_ref(_doc("")) is None


def test_attempt_follows_the_retry_header_and_clamps() -> None:
    assert attempt_of({}, 3) == 1
    assert attempt_of({"x-hub-attempt": 1}, 3) == 2
    assert attempt_of({"x-hub-attempt": 3}, 3) == 4
    for forged in (99, -5, "2", True, 2.0):
        assert attempt_of({"x-hub-attempt": forged}, 3) in (1, 4)
    assert attempt_of({"x-hub-attempt": 99}, 3) == 4


def test_message_ids_from_untrusted_properties_stay_a_valid_event() -> None:
    props = pika.BasicProperties(message_id="m" * 250, app_id="p" * 250, correlation_id="c" * 250,
                                 headers={"x-destination": "ü" * 200, "x-hub-attempt": 1})
    ids = MessageIds.from_properties(props, 2)
    events = WorkerEvents("alpha", lambda: ResilientPublisher.__new__(ResilientPublisher),
                          WorkerMetrics(CollectorRegistry()).status_events_failed)
    event = events.event(ids, ACCEPTED, progress=Progress("t" * 300, "r" * 300))
    assert ids.attempt == 2
    parsed = StatusEvent.from_body(event.body())  # every id within the contract's limit
    assert parsed == event
    assert len(event.routing_key.encode()) <= 255  # an AMQP short string
    missing = MessageIds.from_properties(pika.BasicProperties(headers={"x-destination": 5}), 2)
    assert (missing.message_id, missing.portal, missing.destination, missing.correlation_id) == (
        "", "(unknown)", "unknown", None)
    assert not PORTAL_PATTERN.match(MISSING_PORTAL)  # no token can ever be configured for it
    assert MessageIds.from_properties(pika.BasicProperties(app_id="unknown"), 2).portal == "unknown"  # a real id


def test_long_ids_are_shortened_to_a_stable_distinct_form_never_cut() -> None:
    """Cutting at 200 characters would merge two applications that share a 200-character prefix."""
    shared = "urn:de:portal:" + "x" * 200
    one, two = shared + "-1", shared + "-2"
    assert clip_id(one) != clip_id(two)
    assert clip_id(one) == clip_id(one) == clip_id(one.encode())  # stable (and the same from bytes)
    assert clip_id(one) == one[:150] + "~" + hashlib.sha256(one.encode()).hexdigest()[:40]
    assert len(clip_id(one)) == 191
    assert clip_id("x" * 200) == "x" * 200 and clip_id(None) == ""  # what fits stays as it is
    # portal and destination: also within 100 bytes (the routing key), multi-byte text included
    for value in ("ü" * 60, "p" * 101, "ü" * 300):
        part = clip_id(value, max_bytes=100)
        assert len(part.encode()) <= 100 and part.endswith(hashlib.sha256(value.encode()).hexdigest()[:40])
    assert clip_id("ü" * 60, max_bytes=100) != clip_id("ü" * 61, max_bytes=100)
    a = MessageIds.from_properties(pika.BasicProperties(message_id=one, app_id="p" * 101 + "a"), 2)
    b = MessageIds.from_properties(pika.BasicProperties(message_id=two, app_id="p" * 101 + "b"), 2)
    assert a.message_id != b.message_id and a.portal != b.portal


def test_a_replayed_event_has_the_ids_the_worker_would_give_it() -> None:
    from hub.dlq import DeadLetter, replayed_event

    long_id = "m" * 250
    props = pika.BasicProperties(message_id=long_id, correlation_id="c" * 250, headers={
        "x-hub-reason": "r" * 250, "x-hub-adapter": "a" * 250, "x-hub-destination": "azr:000100"})
    event = replayed_event(props, DeadLetter.from_amqp(props, b"{}"))
    assert event is not None
    worker = MessageIds.from_properties(pika.BasicProperties(
        message_id=long_id, correlation_id="c" * 250, headers={"x-destination": "azr:000100"}), 2)
    assert (event.message_id, event.portal, event.destination, event.correlation_id) == (
        worker.message_id, MISSING_PORTAL, "azr:000100", worker.correlation_id)
    assert StatusEvent.from_body(event.body()) == event  # a valid event, not one the tracker dead-letters
    assert event.reason == clip_id("r" * 250) and event.adapter == clip_id("a" * 250)
    assert replayed_event(pika.BasicProperties(app_id="portal-a"), DeadLetter.from_amqp(
        pika.BasicProperties(app_id="portal-a"), b"")) is None  # no message id: no event


def test_poll_request_tolerates_old_and_newer_bodies() -> None:
    old = json.dumps({"message_id": "m", "transport_message_id": "t", "portal": "p", "destination": "d",
                      "attempt": 2}).encode()
    assert PollRequest.from_body(old) == PollRequest("m", "t", "p", "d", 2)
    newer = json.dumps({**json.loads(old), "open_sent": True, "added_later": 1}).encode()
    assert PollRequest.from_body(newer).open_sent is True
    with pytest.raises(TypeError):
        PollRequest.from_body(b"[1]")


class _Current:
    def __init__(self, outcome: BaseException | None, *, raise_now: bool = False) -> None:
        self.outcome, self.raise_now = outcome, raise_now
        self.future: Future[None] = Future()

    def publish(self, *_args: Any, **_kw: Any) -> Future[None]:
        if self.raise_now:
            raise BrokerUnavailable("publisher is closed")
        return self.future

    def settle(self) -> None:
        if self.outcome is None:
            self.future.set_result(None)
        else:
            self.future.set_exception(self.outcome)


@pytest.mark.parametrize("outcome, raise_now", [(None, False), (PublishNotConfirmed("nacked"), False),
                                                (BrokerUnavailable("gone"), True)])
def test_publish_nowait_never_raises_and_reports_failures(monkeypatch: pytest.MonkeyPatch,
                                                          outcome: BaseException | None, raise_now: bool) -> None:
    resilient = ResilientPublisher.__new__(ResilientPublisher)
    current = _Current(outcome, raise_now=raise_now)
    monkeypatch.setattr(resilient, "_get", lambda: current)
    failures: list[BaseException] = []
    resilient.publish_nowait("hub.status", "k", b"{}", pika.BasicProperties(), on_failure=failures.append)
    assert [type(f) for f in failures] == ([BrokerUnavailable] if raise_now else [])  # nothing waited for
    if not raise_now:
        current.settle()
        assert failures == ([] if outcome is None else [outcome])
    # a failing failure callback is logged, not raised
    resilient.publish_nowait("hub.status", "k", b"{}", pika.BasicProperties(),
                             on_failure=lambda _e: (_ for _ in ()).throw(RuntimeError("bug")))


def test_lost_status_events_are_counted_by_event(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    failing = _Current(None, raise_now=True)
    resilient = ResilientPublisher.__new__(ResilientPublisher)
    monkeypatch.setattr(resilient, "_get", lambda: failing)
    events = WorkerEvents("alpha", lambda: resilient, metrics.status_events_failed)
    ids = MessageIds("m-1", "portal", "azr:000100", None, 1)
    events.publish_nowait(events.event(ids, ACCEPTED))
    events.publish_nowait(events.event(MessageIds("", "portal", "azr:000100", None, 1), ACCEPTED))  # no id: skipped
    assert metrics.status_events_failed.labels("alpha", ACCEPTED)._value.get() == 1


class _FlakyPublisher:
    """Stands in for ResilientPublisher: every async publish fails (on_failure), the confirmed
    re-publish fails ``failing`` times and then succeeds; records which thread did what."""

    def __init__(self, failing: int) -> None:
        self.failing = failing
        self.nowait: list[str] = []
        self.confirmed: list[str] = []
        self.threads: set[str] = set()

    def publish_nowait(self, exchange: str, routing_key: str, body: bytes, properties: pika.BasicProperties,
                       *, on_failure: Any = None, window_timeout: float = 5.0) -> None:
        self.nowait.append(properties.message_id)
        on_failure(BrokerUnavailable("publish not confirmed, connection closed"))

    def publish_and_wait(self, exchange: str, routing_key: str, body: bytes, properties: pika.BasicProperties,
                         *, mandatory: bool = False, timeout: float = 30.0, deadline: float = 300.0) -> None:
        self.threads.add(threading.current_thread().name)
        if self.failing > 0:
            self.failing -= 1
            raise BrokerUnavailable("still down")
        self.confirmed.append(StatusEvent.from_body(body).event)


def _outcome_events(publisher: _FlakyPublisher) -> tuple[WorkerEvents, WorkerMetrics]:
    metrics = WorkerMetrics(CollectorRegistry())
    events = WorkerEvents("alpha", lambda: publisher, metrics.status_events_failed)  # type: ignore[arg-type, return-value]
    events.retrier._attempts = 3
    return events, metrics


def test_an_unconfirmed_outcome_event_is_published_again_off_the_delivery_thread() -> None:
    publisher = _FlakyPublisher(failing=1)
    events, metrics = _outcome_events(publisher)
    ids = MessageIds("m-1", "portal", "azr:000100", None, 1)
    events.delivered(ids, Progress("t-1"), "t-1", duplicate=False, accepted_on_resend=False)
    assert publisher.confirmed == []  # the caller did not wait for any confirm
    events.close(timeout=30)
    assert publisher.confirmed == [DELIVERED]  # the second confirmed try went through
    assert publisher.threads == {"status-event-retrier"}
    assert metrics.status_events_failed.labels("alpha", DELIVERED)._value.get() == 0


def test_an_outcome_event_that_stays_unconfirmed_is_logged_with_its_id_and_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    publisher = _FlakyPublisher(failing=99)
    events, metrics = _outcome_events(publisher)
    ids = MessageIds("m-lost", "portal", "azr:000100", None, 2)
    with caplog.at_level(logging.WARNING, logger="hub.worker_events"):
        events.failed(ids, RETRY_SCHEDULED, Progress(), BrokerUnavailable("x"), "endpoint_unavailable", at=time.time())
        events.close(timeout=30)
    assert publisher.confirmed == []
    assert metrics.status_events_failed.labels("alpha", RETRY_SCHEDULED)._value.get() == 1  # once, after 3 tries
    assert "status event retry_scheduled for m-lost not published" in caplog.text


def test_events_still_queued_at_close_are_reported_lost_not_dropped() -> None:
    lost: list[str] = []
    blocker = threading.Event()

    class Stuck:
        def publish_and_wait(self, *_args: Any, **_kwargs: Any) -> None:
            blocker.wait(5)
            raise BrokerUnavailable("down")

    retrier = EventRetrier(lambda: Stuck(), lambda event, _error: lost.append(event.message_id),  # type: ignore[arg-type, return-value]
                           attempts=1)
    for n in range(3):
        retrier.submit(StatusEvent(f"m-{n}", DELIVERED, "portal", "azr:000100", "alpha", at=time.time()),
                       BrokerUnavailable("x"))
    retrier.close(timeout=0.5)  # the first is stuck in its publish: the other two are reported at once
    assert sorted(lost) == ["m-1", "m-2"]
    blocker.set()


def test_an_event_failing_after_close_is_reported_at_once_and_starts_no_thread() -> None:
    lost: list[str] = []
    retrier = EventRetrier(lambda: _FlakyPublisher(failing=0), lambda event, _error: lost.append(event.message_id),  # type: ignore[arg-type, return-value]
                           attempts=1)
    retrier.submit(StatusEvent("m-0", DELIVERED, "portal", "azr:000100", "alpha", at=time.time()), BrokerUnavailable("x"))
    retrier.close(timeout=30)
    threads_before = set(threading.enumerate())
    retrier.submit(StatusEvent("m-late", DELIVERED, "portal", "azr:000100", "alpha", at=time.time()),
                   BrokerUnavailable("connection closed at shutdown"))
    assert lost == ["m-late"]  # m-0 was published by the retrier; m-late came after close
    assert not {t for t in set(threading.enumerate()) - threads_before if t.name == "status-event-retrier"}
