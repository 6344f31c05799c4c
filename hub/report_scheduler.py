"""Transport-report polling from the ledger: one scheduler thread per worker, no broker traffic per poll.

A delivered application's pending report is a few columns of its ledger row (hub/ledger.py), set by
the statement that marks it delivered. The scheduler wakes every ``tick`` seconds (sooner when
woken), claims its adapter's due reports with a lease (two workers of one adapter sharing the
ledger never poll one report at once; a killed worker's claims come due again when the lease runs
out), polls ``getTransportReport`` once for each and then, per report:

* final (1 green, 2 yellow, 3 red): a ``transport_report`` event with the light; done.
* open (0): the first time a ``transport_report`` event with light ``open``; poll again later.
  Delays: ``first_delay`` from the delivery to the first poll, then doubling (``first_delay`` x 2,
  x 4, ...) up to ``interval``, which stays the delay from then on. After ``max_polls`` polls:
  ``transport_report_timeout``; done.
* endpoint trouble (a transient ``HubError``): counts as a poll, polled again later (after
  ``max_polls``: as a permanent error); permanent: ``transport_report`` with light ``unknown`` and
  the error; done.

The events of a batch are published together with a full confirm window and confirmed *before*
the ledger records the outcome: a crash in between polls the report again (an event may go out
twice; the tracker keeps the latest light), never loses one. An event that cannot be confirmed is
logged and counted (``hub_status_events_failed_total``) and the ledger is left alone: the lease
runs out and the report is polled and published again. Polling pauses while ``paused()`` (the
worker's circuit breaker is open: same endpoint; or the worker is not connected to the broker).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pika

from hub.errors import HubError
from hub.ledger import PendingReport
from hub.logs import log_context
from hub.publisher import ResilientPublisher
from hub.status import TRANSPORT_REPORT, TRANSPORT_REPORT_TIMEOUT, StatusEvent, batch_message
from hub.topology import STATUS_EXCHANGE

log = logging.getLogger(__name__)

TRAFFIC_LIGHT = {1: "green", 2: "yellow", 3: "red"}


class ReportLedger(Protocol):
    def claim_reports(self, adapter: str, *, lease: float, limit: int) -> list[PendingReport]: ...
    def reschedule_report(self, message_id: str, *, delay: float, polls: int, open_sent: bool) -> None: ...
    def finish_report(self, message_id: str) -> None: ...
    def schedule_report(self, adapter: str, pending: PendingReport, *, delay: float = 0.0) -> None: ...


@dataclass(frozen=True)
class ReportTiming:
    first_delay: float  # delivery -> first poll
    interval: float  # the longest delay between two polls
    max_polls: int

    def delay_after(self, polls: int) -> float:
        """The delay before poll ``polls + 1``: ``first_delay`` doubled per poll so far, at most
        ``interval`` (or ``first_delay`` if that is longer)."""
        return min(self.first_delay * 2.0 ** min(polls, 60), max(self.interval, self.first_delay))


@dataclass
class _Outcome:
    """One poll's result: the metric label, its events, and the ledger's next step (None: done)."""

    result: str
    events: list[StatusEvent] = field(default_factory=list)
    again: tuple[float, int, bool] | None = None  # (delay, polls, open_sent)


class ReportScheduler:
    """Polls one adapter's pending reports on a thread of its own (``start``/``stop``); ``run_once``
    does one claim-poll-publish-record round (for tests)."""

    def __init__(self, adapter: str, ledger: ReportLedger, poll: Callable[[str], Any],
                 publisher: Callable[[], ResilientPublisher], timing: ReportTiming, *,
                 paused: Callable[[], bool] = lambda: False, counted: Callable[[str], None] = lambda _r: None,
                 lost: Callable[[StatusEvent], None] = lambda _e: None, lease: float = 30.0, batch: int = 64,
                 tick: float = 0.5, publish_deadline: float = 30.0, batch_events: int | None = None) -> None:
        self.adapter = adapter
        self.ledger = ledger
        self._poll = poll
        self._publisher = publisher
        self.timing = timing
        self._paused = paused
        self._counted = counted
        self._lost = lost
        self.lease = lease
        self.batch = batch
        self.tick = tick
        self._publish_deadline = publish_deadline
        self.batch_events = batch_events  # a round's events as status batches of this many (None: singly)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # --- thread ------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"reports-{self.adapter}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look for due reports now rather than at the next tick."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                full = self.run_once() >= self.batch
            except HubError as exc:  # the ledger is down: try again at the next tick
                log.warning("transport reports of %s not polled: %s", self.adapter, exc)
                full = False
            except Exception:  # a bug must not end report polling for good
                log.exception("transport-report scheduler of %s failed; going on", self.adapter)
                full = False
            if not full:
                self._wake.wait(self.tick)
                self._wake.clear()

    # --- one round ---------------------------------------------------------------------------
    def run_once(self) -> int:
        """Claim due reports, poll each once, publish the events (confirmed), record the outcomes;
        returns how many were claimed. Stops polling a batch when paused, stopped, or half the
        lease has passed; the rest are released for the next round."""
        if self._paused():
            return 0
        claimed = self.ledger.claim_reports(self.adapter, lease=self.lease, limit=self.batch)
        if not claimed:
            return 0
        started = time.monotonic()
        done: list[tuple[PendingReport, _Outcome]] = []
        for index, report in enumerate(claimed):
            if self._paused() or self._stop.is_set() or time.monotonic() - started > self.lease / 2:
                for left in claimed[index:]:  # not polled: due again at once
                    self.ledger.reschedule_report(left.message_id, delay=0.0, polls=left.polls,
                                                  open_sent=left.open_sent)
                break
            with log_context(message_id=report.message_id, correlation_id=report.correlation_id,
                             adapter=self.adapter, destination=report.destination):
                outcome = self.poll(report)
            self._counted(outcome.result)
            done.append((report, outcome))
        events = [event for _, outcome in done for event in outcome.events]
        if events:
            try:
                self._publisher().publish_all(self._messages(events), deadline=self._publish_deadline)
            except Exception as exc:  # noqa: BLE001 - leased: polled and published again later
                log.warning("%d transport-report events of %s not confirmed (%s); the reports are polled again "
                            "in %.0fs", len(events), self.adapter, exc, self.lease)
                for event in events:
                    self._lost(event)
                return len(claimed)
        for report, outcome in done:
            if outcome.again is None:
                self.ledger.finish_report(report.message_id)
            else:
                delay, polls, open_sent = outcome.again
                self.ledger.reschedule_report(report.message_id, delay=delay, polls=polls, open_sent=open_sent)
        return len(claimed)

    def _messages(self, events: list[StatusEvent]) -> list[tuple[str, str, bytes, pika.BasicProperties, bool]]:
        """The messages that carry a round's events: one each, or status batches per portal."""
        if self.batch_events is None:
            return [(e.exchange, e.routing_key, e.body(), e.properties(), False) for e in events]
        by_portal: dict[str, list[StatusEvent]] = {}
        for event in events:
            by_portal.setdefault(event.portal, []).append(event)
        messages = []
        for group in by_portal.values():
            for start in range(0, len(group), self.batch_events):
                routing_key, body, properties = batch_message(group[start:start + self.batch_events])
                messages.append((STATUS_EXCHANGE, routing_key, body, properties, False))
        return messages

    def poll(self, report: PendingReport) -> _Outcome:
        """Poll one report once and decide (no side effects but the call)."""
        polls = report.polls + 1
        xta_id = report.transport_message_id
        try:
            result = self._poll(xta_id)
        except Exception as error:
            transient = not isinstance(error, HubError) or error.transient
            if not isinstance(error, HubError):
                log.exception("transport-report poll of %s failed unexpectedly", report.message_id)
            if transient and polls < self.timing.max_polls:  # endpoint trouble: next interval
                return _Outcome("open", again=(self.timing.delay_after(polls), polls, report.open_sent))
            return _Outcome("failed", [self._event(report, polls, TRANSPORT_REPORT, {
                "xta_message_id": xta_id, "traffic_light": "unknown", "error": type(error).__name__,
                "reason": getattr(error, "reason", "unexpected")})])
        if result.final:
            light = TRAFFIC_LIGHT.get(result.status, "unknown")  # a metric label: bounded values only
            return _Outcome(light, [self._event(report, polls, TRANSPORT_REPORT,
                                                {**result.detail(), "traffic_light": light})])
        events = []
        if not report.open_sent:  # the first open answer
            events.append(self._event(report, polls, TRANSPORT_REPORT, {"xta_message_id": xta_id,
                                                                         "traffic_light": "open"}))
        if polls >= self.timing.max_polls:
            events.append(self._event(report, polls, TRANSPORT_REPORT_TIMEOUT, {"xta_message_id": xta_id,
                                                                                "polls": polls}))
            return _Outcome("timeout", events)
        return _Outcome("open", events, again=(self.timing.delay_after(polls), polls, True))

    def _event(self, report: PendingReport, polls: int, event: str, detail: dict[str, Any]) -> StatusEvent:
        return StatusEvent(report.message_id, event, report.portal, report.destination, self.adapter, detail=detail,
                           correlation_id=report.correlation_id, transport_message_id=report.transport_message_id,
                           attempt=polls)
