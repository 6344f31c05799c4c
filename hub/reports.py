"""Transport-report polling: after a delivery, ask the endpoint how it went, until it says.

XTA answers getTransportReport with status 0 (open) until the message is through; then 1 green,
2 yellow (warnings) or 3 red (critical errors), with error/warning records. The hub polls in the
broker, not in memory, so a restart loses no pending poll: a poll request waits in
``hub.report.<adapter>.wait`` (TTL = poll interval), dead-letters into ``hub.report.<adapter>``,
the worker polls once and either emits a ``transport_report`` status event or sends the request
back to wait. After ``report_poll_max`` polls it gives up with ``transport_report_timeout``.

Events: ``transport_report`` with ``traffic_light`` ``open`` once (the first poll that answers
open; the request remembers it), then once with the final light (or ``error`` if polling failed for
good). Each carries the transport message id and ``attempt`` = the number of polls so far.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import pika

from hub.errors import HubError
from hub.publisher import ResilientPublisher
from hub.status import TRANSPORT_REPORT, TRANSPORT_REPORT_TIMEOUT, StatusEvent
from hub.topology import report_wait_queue

log = logging.getLogger(__name__)

__all__ = ["TRANSPORT_REPORT", "TRANSPORT_REPORT_TIMEOUT", "PollRequest", "ReportPoller"]

TRAFFIC_LIGHT = {1: "green", 2: "yellow", 3: "red"}


@dataclass(frozen=True)
class PollRequest:
    message_id: str
    transport_message_id: str
    portal: str
    destination: str
    attempt: int = 1  # polls so far, this one included
    correlation_id: str | None = None
    open_sent: bool = False  # the "open" event went out already

    def body(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_body(cls, body: bytes) -> PollRequest:
        raw = json.loads(body)
        if not isinstance(raw, dict):
            raise TypeError("poll request is not an object")
        known = {f.name for f in fields(cls)}  # a newer worker may add fields: ignore them
        return cls(**{k: v for k, v in raw.items() if k in known})

    def next(self, *, open_sent: bool = False) -> PollRequest:
        return replace(self, attempt=self.attempt + 1, open_sent=self.open_sent or open_sent)


class ReportPoller:
    """Schedules and performs report polls for one adapter; thread-safe (the publisher is)."""

    def __init__(self, adapter_name: str, poll: Callable[[str], Any], publisher: Callable[[], ResilientPublisher],
                 *, max_polls: int) -> None:
        self.adapter = adapter_name
        self._poll = poll
        self._publisher = publisher
        self.max_polls = max_polls

    def schedule(self, request: PollRequest) -> None:
        """Put a poll request in the wait queue; it comes back after the poll interval."""
        props = pika.BasicProperties(message_id=request.message_id, content_type="application/json", delivery_mode=2,
                                     correlation_id=request.correlation_id)
        self._publisher().publish_and_wait("", report_wait_queue(self.adapter), request.body(), props, deadline=30)

    def handle(self, body: bytes) -> str:
        """Poll once; returns what happened: a traffic light, 'open', 'timeout', 'unparsable' or 'failed'."""
        try:
            request = PollRequest.from_body(body)
        except (ValueError, TypeError):
            log.warning("dropping an unparsable transport-report poll request (%d bytes)", len(body))
            return "unparsable"
        try:
            result = self._poll(request.transport_message_id)
        except HubError as error:
            if error.transient and request.attempt < self.max_polls:  # endpoint trouble: next interval
                self.schedule(request.next())
                return "open"
            self._emit(request, TRANSPORT_REPORT, {"xta_message_id": request.transport_message_id,
                                                    "traffic_light": "unknown", "error": type(error).__name__,
                                                    "reason": error.reason})
            return "failed"
        if result.final:
            light = TRAFFIC_LIGHT.get(result.status, "unknown")  # a metric label: bounded values only
            self._emit(request, TRANSPORT_REPORT, {**result.detail(), "traffic_light": light})
            return light
        if not request.open_sent:  # the first open answer; published before the next poll is queued
            self._emit(request, TRANSPORT_REPORT, {"xta_message_id": request.transport_message_id,
                                                    "traffic_light": "open"})
        if request.attempt >= self.max_polls:
            self._emit(request, TRANSPORT_REPORT_TIMEOUT, {"xta_message_id": request.transport_message_id,
                                                           "polls": request.attempt})
            return "timeout"
        self.schedule(request.next(open_sent=True))
        return "open"

    def _emit(self, request: PollRequest, event: str, detail: dict[str, Any]) -> None:
        status = StatusEvent(request.message_id, event, request.portal, request.destination, self.adapter,
                             detail=detail, correlation_id=request.correlation_id,
                             transport_message_id=request.transport_message_id, attempt=request.attempt)
        self._publisher().publish_and_wait(status.exchange, status.routing_key, status.body(), status.properties(),
                                           deadline=30)
