"""The status events of an adapter worker, built from the message's AMQP properties.

No status event is waited for in the delivery's path (the ack of an application never waits for
an event's confirm; pitfall 13): each goes out through the publisher's confirm window and its
confirm is checked asynchronously. ``accepted`` and ``delivering`` are informational: a failed one
is logged with its id and counted (``hub_status_events_failed_total``). The outcomes
(``delivered``, ``retry_scheduled``, ``dead_lettered``) are what the tracker and the portal build
on: a failed one is handed to the ``EventRetrier``, which publishes it again, waiting for the
confirm, on a thread of its own, and only after ``attempts`` failures logs and counts it. Neither
kind may fail a delivery: the message's outcome is safe by other means.

The properties are the portal's, i.e. untrusted: every id is kept within the contract (at most 200
characters; portal and destination at most 100 bytes, so the routing key stays an AMQP short string).
A longer id is not cut (two ids sharing a prefix would merge into one application) but shortened to
its beginning, ``~`` and 40 hex digits of its SHA-256: stable and distinct. A missing portal
(``app_id``) is ``(unknown)``, which no portal id can be (``hub.config.PORTAL_PATTERN``), so no
token can ever see such events as its own. ``hub dlq replay`` builds its ``replayed`` events with
the same helpers.

With ``[status] batch_window`` > 0 the events are not published one by one: a ``StatusBatcher``
collects them for that long and publishes one batch message per portal (hub/status.py,
``batch_message``), so the broker routes and stores one message where it did up to a few hundred.
A batch that is not confirmed is taken apart again: its outcome events go to the retrier (and are
published singly), its informational ones are counted lost, as without batches.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import pika
from prometheus_client import Counter

from hub.failures import H_ATTEMPT, header_int
from hub.logs import log_context
from hub.publisher import ResilientPublisher
from hub.status import DELIVERED, DELIVERING, MAX_BATCH_EVENTS, StatusEvent, batch_message
from hub.topology import STATUS_EXCHANGE

log = logging.getLogger(__name__)

_MAX_ID = 200
_MAX_KEY_PART = 100  # bytes: portal + event + destination stay below the 255-byte routing key limit
_KEPT = 150  # characters of an over-long id kept in front of its hash
_HASH_HEX = 40
MISSING_PORTAL = "(unknown)"  # no app_id: a placeholder that PORTAL_PATTERN cannot match
MISSING_DESTINATION = "unknown"


def clip_id(value: Any, *, max_bytes: int | None = None) -> str:
    """``value`` as an id of the status-event contract: itself when it fits (at most 200
    characters, and ``max_bytes`` UTF-8 bytes if given), else its first 150 characters (fewer if
    ``max_bytes`` asks) + ``~`` + the first 40 hex digits of its SHA-256. "" for None."""
    if value is None:
        return ""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    raw = text.encode("utf-8", "surrogatepass")
    if len(text) <= _MAX_ID and (max_bytes is None or len(raw) <= max_bytes):
        return text
    suffix = "~" + hashlib.sha256(raw).hexdigest()[:_HASH_HEX]
    head = text[:_KEPT]
    if max_bytes is not None:
        head = head.encode("utf-8", "surrogatepass")[:max_bytes - len(suffix)].decode("utf-8", "ignore")
    return head + suffix


def key_part(value: Any, missing: str) -> str:
    """A portal or destination id: within 100 bytes (part of the routing key); ``missing`` if absent."""
    return clip_id(value, max_bytes=_MAX_KEY_PART) if isinstance(value, (str, bytes)) and value else missing


def attempt_of(headers: Mapping[str, Any], ladder_length: int) -> int:
    """This delivery's attempt: 1 for a first (or replayed) delivery, the retry header + 1 after a
    retry; a forged or stale header clamps to the ladder (as the retry decision does)."""
    return min(header_int(headers, H_ATTEMPT, 0), ladder_length) + 1


@dataclass(frozen=True)
class MessageIds:
    """The ids of one delivery attempt, as the status events carry them."""

    message_id: str
    portal: str
    destination: str
    correlation_id: str | None
    attempt: int

    @classmethod
    def of(cls, message_id: Any, app_id: Any, destination: Any, correlation_id: Any, attempt: int = 1) -> MessageIds:
        """The ids from untrusted values (AMQP properties and headers), within the contract."""
        return cls(message_id=clip_id(message_id), portal=key_part(app_id, MISSING_PORTAL),
                   destination=key_part(destination, MISSING_DESTINATION),
                   correlation_id=clip_id(correlation_id) or None, attempt=attempt)

    @classmethod
    def from_properties(cls, props: pika.BasicProperties, ladder_length: int) -> MessageIds:
        headers = props.headers or {}
        return cls.of(props.message_id, props.app_id, headers.get("x-destination"), props.correlation_id,
                      attempt_of(headers, ladder_length))


def message_log_context(props: pika.BasicProperties, adapter: str,
                        ladder_length: int | None = None) -> AbstractContextManager[None]:
    """The log context of handling one message (hub/logs.py): every line logged meanwhile by this
    thread, the adapter's and transport's too, carries its ids (clipped like the events' ids, never
    content); ``ladder_length`` None: no delivery attempt (a transport-report poll)."""
    ids = MessageIds.from_properties(props, ladder_length or 0)
    return log_context(message_id=ids.message_id or None, correlation_id=ids.correlation_id, adapter=adapter,
                       destination=ids.destination, attempt=None if ladder_length is None else ids.attempt)


@dataclass
class Progress:
    """What the pipeline told us on its way (filled by the ``delivering`` callback)."""

    transport_message_id: str | None = None
    application_ref: str | None = None


class EventRetrier:
    """Publishes failed outcome events again, confirmed, on a thread of its own: a broker hiccup
    (connection lost with confirms outstanding, a nack) does not lose the tracker's record of an
    outcome, and no delivery thread waits for it. ``attempts`` tries with backoff (0.5 s doubling),
    then ``on_lost``; a full queue (the broker is gone for long) also ends in ``on_lost``. An event
    published twice is harmless: its ``event_id`` is stable and the tracker skips the duplicate."""

    def __init__(self, publisher: Callable[[], ResilientPublisher],
                 on_lost: Callable[[StatusEvent, BaseException], None], *, attempts: int = 5,
                 max_queued: int = 10_000, confirm_timeout: float = 10.0) -> None:
        self._publisher = publisher
        self._on_lost = on_lost
        self._attempts = attempts
        self._confirm_timeout = confirm_timeout
        self._queue: queue.Queue[StatusEvent | None] = queue.Queue(max_queued)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, event: StatusEvent, error: BaseException) -> None:
        """Queue ``event`` (its async publish failed with ``error``) for another try; never blocks.
        After ``close`` nothing is tried any more: the event is reported lost at once."""
        with self._lock:
            if self._closed:
                self._report_lost(event, error)
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="status-event-retrier", daemon=True)
                self._thread.start()
        log.info("status event %s for %s not confirmed (%s); publishing it again", event.event, event.message_id,
                 type(error).__name__)
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._report_lost(event, error)

    def _report_lost(self, event: StatusEvent, error: BaseException) -> None:
        try:
            self._on_lost(event, error)
        except Exception:  # a failing report must not stop the retrier
            log.exception("reporting a lost status event failed")

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            self._republish(event)

    def _republish(self, event: StatusEvent) -> None:
        backoff = 0.5
        for attempt in range(1, self._attempts + 1):
            try:
                self._publisher().publish_and_wait(event.exchange, event.routing_key, event.body(), event.properties(),
                                                   timeout=self._confirm_timeout, deadline=0)
                return
            except Exception as exc:  # noqa: BLE001 - every failure is retried, then reported
                if attempt == self._attempts:
                    self._report_lost(event, exc)
                    return
                if self._stop.wait(backoff):  # closing: one last try without waiting
                    backoff = 0.0
                backoff = min(backoff * 2, 10.0)

    def close(self, timeout: float = 30.0) -> None:
        """Try what is queued (at most ``timeout`` seconds more), then stop; what is left is lost."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        self._queue.put(None)
        thread.join(timeout)
        while True:  # the thread did not get to these: report them, never drop them silently
            try:
                left = self._queue.get_nowait()
            except queue.Empty:
                return
            if left is not None:
                self._report_lost(left, TimeoutError("worker stopped before it could be published"))


OnFailure = Callable[[StatusEvent, BaseException], None]


class StatusBatcher:
    """Publishes status events as batch messages: each event waits at most ``window`` seconds, a
    portal's batch goes out at once when it holds ``max_events``. One thread; never blocks ``add``.

    The events in hand are lost if the process is killed within the window (the messages they
    belong to may have been acked already): the window widens the crash window of
    docs/operations.md ("Shutdown") by ``window``. ``close`` publishes what is in hand."""

    def __init__(self, publisher: Callable[[], ResilientPublisher], window: float,
                 max_events: int = 100) -> None:
        if window <= 0 or not 0 < max_events <= MAX_BATCH_EVENTS:
            raise ValueError("a status batcher needs a window > 0 and 1 to 500 events per batch")
        self._publisher = publisher
        self.window = window
        self.max_events = max_events
        self._cond = threading.Condition()
        self._pending: dict[str, list[tuple[StatusEvent, OnFailure]]] = {}
        self._due: float | None = None  # when the oldest event in hand must go out
        self._full = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self.batches_published = 0

    def add(self, event: StatusEvent, on_failure: OnFailure) -> None:
        """Hand ``event`` over; ``on_failure(event, error)`` if its batch is not confirmed. After
        ``close`` it is published on its own at once."""
        with self._cond:
            if not self._closed:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="status-batcher", daemon=True)
                    self._thread.start()
                batch = self._pending.setdefault(event.portal, [])
                batch.append((event, on_failure))
                if self._due is None:
                    self._due = time.monotonic() + self.window
                if len(batch) >= self.max_events:
                    self._full = True
                self._cond.notify()
                return
        self._publish_single(event, on_failure)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._full and (
                        self._due is None or time.monotonic() < self._due):
                    self._cond.wait(None if self._due is None else max(0.0, self._due - time.monotonic()))
                taken, self._pending = self._pending, {}
                self._due, self._full = None, False
                closed = self._closed
            try:
                self._publish(taken)
            except Exception:  # a bug must not end the thread: later events would wait forever
                log.exception("publishing status batches failed")
            if closed:
                return

    def _publish(self, taken: dict[str, list[tuple[StatusEvent, OnFailure]]]) -> None:
        for items in taken.values():
            for start in range(0, len(items), self.max_events):
                self._publish_batch(items[start:start + self.max_events])

    def _publish_batch(self, items: list[tuple[StatusEvent, OnFailure]]) -> None:
        def failed(error: BaseException) -> None:
            for event, on_failure in items:
                on_failure(event, error)

        try:
            routing_key, body, properties = batch_message([event for event, _ in items])
        except Exception as exc:  # never lose the events over a batch that cannot be built
            log.exception("status batch of %d events cannot be built; its outcome events go out singly",
                          len(items))
            failed(exc)
            return
        self.batches_published += 1
        self._publisher().publish_nowait(STATUS_EXCHANGE, routing_key, body, properties, on_failure=failed)

    def _publish_single(self, event: StatusEvent, on_failure: OnFailure) -> None:
        self._publisher().publish_nowait(event.exchange, event.routing_key, event.body(), event.properties(),
                                         on_failure=lambda error: on_failure(event, error))

    def close(self, timeout: float = 15.0) -> None:
        """Publish the events in hand now (not waiting for their window) and stop the thread."""
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify()
        if thread is not None:
            thread.join(timeout)


class WorkerEvents:
    """Builds and publishes one adapter worker's status events; thread-safe (the publisher is)."""

    def __init__(self, adapter: str, publisher: Callable[[], ResilientPublisher], failed: Counter, *,
                 batcher: StatusBatcher | None = None) -> None:
        self.adapter = adapter
        self._publisher = publisher
        self._failed = failed
        self.retrier = EventRetrier(publisher, self._lost)
        self.batcher = batcher

    def event(self, ids: MessageIds, event: str, *, progress: Progress | None = None, reason: str | None = None,
              detail: dict[str, Any] | None = None, transport_message_id: str | None = None,
              at: float | None = None) -> StatusEvent:
        """One event of this delivery attempt; ``at`` (default now) is when it happened."""
        progress = progress or Progress()
        return StatusEvent(
            ids.message_id, event, ids.portal, ids.destination, self.adapter, at=time.time() if at is None else at,
            detail=detail or {},
            correlation_id=ids.correlation_id, attempt=ids.attempt, reason=reason,
            transport_message_id=clip_id(transport_message_id or progress.transport_message_id) or None,
            application_ref=clip_id(progress.application_ref) or None)

    def on_delivering(self, ids: MessageIds, progress: Progress) -> Callable[[str, str | None], None]:
        """The pipeline's ``on_delivering`` callback: keeps the ids in ``progress`` (the later events
        carry them) and publishes ``delivering`` without waiting."""
        def delivering(transport_message_id: str, application_ref: str | None) -> None:
            progress.transport_message_id, progress.application_ref = transport_message_id, application_ref
            self.publish_nowait(self.event(ids, DELIVERING, progress=progress))
        return delivering

    def delivered(self, ids: MessageIds, progress: Progress, transport_message_id: str, *, duplicate: bool,
                  accepted_on_resend: bool) -> dict[str, Any]:
        """Publish ``delivered`` (not waited for; retried if not confirmed); returns its detail."""
        detail: dict[str, Any] = {"xta_message_id": transport_message_id, "duplicate": duplicate}
        if accepted_on_resend and not duplicate:
            detail["accepted_on_resend"] = True
        self.publish(self.event(ids, DELIVERED, progress=progress, detail=detail,
                                transport_message_id=transport_message_id))
        return detail

    def failed(self, ids: MessageIds, event: str, progress: Progress, error: BaseException, reason: str, *,
               at: float) -> None:
        """Publish ``retry_scheduled`` or ``dead_lettered`` (not waited for; retried if not
        confirmed) for a failure at ``at``."""
        self.publish(self.event(ids, event, progress=progress, reason=reason, at=at, detail={
            "reason": reason, "error": type(error).__name__, "attempts": ids.attempt}))

    def publish_nowait(self, event: StatusEvent) -> None:
        """Publish an informational event without waiting for its confirm."""
        if not event.message_id:  # nothing to attribute it to (the message is dead-lettered for it)
            return
        self._send(event, self._lost)

    def publish(self, event: StatusEvent) -> None:
        """Publish an outcome event without waiting; if it is not confirmed, the retrier publishes
        it again (confirmed, off the delivery's path) before it is counted as lost."""
        if not event.message_id:
            return
        self._send(event, self.retrier.submit)

    def _send(self, event: StatusEvent, on_failure: OnFailure) -> None:
        if self.batcher is not None:
            self.batcher.add(event, on_failure)
            return
        self._publisher().publish_nowait(event.exchange, event.routing_key, event.body(), event.properties(),
                                         on_failure=lambda error: on_failure(event, error))

    def flush(self, timeout: float = 15.0) -> None:
        """At shutdown, once no delivery runs any more: publish the events a batch still holds."""
        if self.batcher is not None:
            self.batcher.close(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """At shutdown, before the publisher closes: publish the events still waiting for a retry."""
        self.retrier.close(timeout)

    def _lost(self, event: StatusEvent, error: BaseException) -> None:
        self._failed.labels(self.adapter, event.event).inc()
        log.warning("status event %s for %s not published: %s", event.event, event.message_id,
                    type(error).__name__ if not str(error) else error)

