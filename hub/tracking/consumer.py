"""The tracker's feed: status events from the ``hub.tracker`` queue into the tracking store.

One pika ``BlockingConnection`` on the consumer's own thread (pitfall 1). A message carries one
event, or several of one portal (a status batch, ``BATCH_CONTENT_TYPE``; ``events_from_message``).
Events are collected until ``batch_size`` (events and messages; a batch message is never split)
or 0.2 s, written with one ``store.ingest`` (one transaction), then acked together
(``multiple=True``). Nothing is acked before all of its events are stored, and nothing is ever
dropped:

- a message that is not a status event or a valid status batch (whatever fails while parsing it;
  a batch with one bad event is refused whole) is copied (publisher
  confirm, ``mandatory``) to ``hub.dead`` with reason ``invalid_status_event`` and acked right
  after the confirm, on its own: a batch that is not written afterwards (a stop during a store
  outage) brings back only its valid events, never a second dead letter; its error text names
  what is wrong, never the body;
- a store that fails (``TrackingStoreUnavailable``, transient) keeps the batch in hand: the
  consumer waits (backoff, I/O keeps flowing) and writes the same batch again;
- a store that refuses an event for good (a non-transient ``HubError``: ``InvalidStatusEvent`` for
  text it cannot hold, such as a NUL) has the batch written one event at a time, and only that
  event dead-lettered (``invalid_status_event``, else ``tracker_store_rejected``), so one poison
  event cannot stall the tracker: a single-event message is copied and acked on its own as above;
  an event of a batch message is copied alone, as a single-event message (its body and properties
  as if published alone), and the batch's other events are stored and the batch acked with the
  rest. The process remembers the last ``REMEMBERED_REFUSALS`` such events (by ``event_id``): a
  batch written again or redelivered (a reconnect) does not copy one twice;
- a lost broker connection is reopened with backoff; the broker redelivers what was not acked,
  and ``ingest`` skips events it already has (by ``event_id``);
- anything else (a bug) is logged with its traceback and ends ``run`` with ``error`` set, so
  `hub tracker` exits non-zero instead of idling with a dead consumer.

``hub_tracker_lag_seconds`` is the lag of the last batch written, and 0 once the queue is idle (no
delivery and no write for ``IDLE_AFTER``, five batch intervals): a drained backlog must not keep
HubTrackerLagHigh firing.

/healthz: the loop ticks on every turn, before every store write (also each single-event write),
and around every backoff wait; its stall limit (``TRACKER_STALL_AFTER``) adds the longest one write
may legitimately take, so a slow or unreachable store never fails liveness, only readiness.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from hub.broker import broker_failure, connect
from hub.config import HubConfig
from hub.envelope import copy_properties
from hub.errors import (
    BrokerAccessRefused,
    BrokerUnavailable,
    ConfigError,
    HubError,
    PublishNotConfirmed,
)
from hub.failures import clean_headers, epoch_ms, error_reason, safe_error_text
from hub.health import STALL_AFTER, Heartbeat, OutageRecord
from hub.metrics import DURATION_BUCKETS
from hub.status import BATCH_CONTENT_TYPE, InvalidStatusEvent, StatusEvent, events_from_message
from hub.topology import DEAD_EXCHANGE, TRACKER_QUEUE, apply_configured
from hub.tracking.model import TrackingStore
from hub.tracking.sql import CONNECT_TIMEOUT_S, STATEMENT_TIMEOUT_MS

log = logging.getLogger("hub.tracker")

BATCH_WAIT = 0.2  # seconds an event may wait for its batch to fill
IDLE_AFTER = 1.0  # seconds without a delivery (and none in hand) after which the queue counts as idle
STOP_CHECK = 0.25  # seconds between two looks at stop()
STORE_BACKOFF = (0.5, 30.0)  # first and longest wait between writes of a batch the store refused
BROKER_BACKOFF = (1.0, 30.0)
STORE_UNREACHABLE = "tracking store unreachable"  # the /readyz reason (details only in the log)
STORE_REJECTED = "tracker_store_rejected"
REMEMBERED_REFUSALS = 1000  # event ids of batch events dead-lettered (not to copy one twice)
#: the consume loop's liveness limit: the usual one plus the longest one store write may take (a
#: reconnect and a statement, twice: PostgresDatabase.run retries once on a new connection; more
#: than SQLite's busy timeout)
TRACKER_STALL_AFTER = STALL_AFTER + 2 * (CONNECT_TIMEOUT_S + STATEMENT_TIMEOUT_MS / 1000)


class TrackerConsumerFailed(HubError):
    """The consumer thread met an error nobody expected (a bug); the traceback is in the log."""

    reason = "tracker_consumer_failed"


class TrackerMetrics:
    """The tracker's metrics (docs/metrics.md); labels are event names only (a fixed set)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events = Counter("hub_tracker_events", "Valid status events taken from hub.tracker, by event "
                              "(redelivered duplicates included)", ["event"], registry=registry)
        self.duplicates = Counter("hub_tracker_duplicate_events", "Events the store already had (redelivered or "
                                  "published twice); skipped", registry=registry)
        self.invalid = Counter("hub_tracker_invalid_events", "Messages on hub.tracker that are not status events or "
                               "status batches, and events the store cannot hold (dead-lettered with reason "
                               "invalid_status_event)", registry=registry)
        self.ingest_seconds = Histogram("hub_tracker_ingest_seconds", "Time of one successful store.ingest "
                                        "(one batch, one transaction)", buckets=DURATION_BUCKETS, registry=registry)
        self.store_errors = Counter("hub_tracker_store_errors", "Failed writes to the tracking store (the batch "
                                    "is kept and written again)", registry=registry)
        self.lag = Gauge("hub_tracker_lag_seconds", "Age of the newest event of the last batch written, "
                         "when it was written; 0 while the queue is idle", registry=registry)
        self.connected = Gauge("hub_tracker_consumer_connected", "1 while the tracker's broker connection is open",
                               registry=registry)


@dataclass(frozen=True)
class _Delivery:
    tag: int
    properties: pika.BasicProperties
    body: bytes


class StatusConsumer:
    """Consumes ``hub.tracker`` into ``store`` until ``stop()``; run ``run`` on its own thread."""

    def __init__(self, config: HubConfig, store: TrackingStore, metrics: TrackerMetrics, *,
                 batch_size: int | None = None, apply_topology_on_start: bool = True,
                 client_name: str = "hub-tracker") -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.batch_size = batch_size or config.tracker.batch_size
        self.connected = threading.Event()
        self.connections_opened = 0
        self.outage = OutageRecord()
        self.heartbeat = Heartbeat("tracker consume loop", stall_after=TRACKER_STALL_AFTER)  # /healthz
        self.error: HubError | None = None  # what ended ``run`` for good (ConfigError, a bug), if anything
        self._apply_topology = apply_topology_on_start
        self._client_name = client_name
        self._stop = threading.Event()
        self._inbox: list[_Delivery] = []
        self._acked: set[int] = set()  # tags acked on their own (dead letters) in the batch being written
        # batch events dead-lettered alone (their message is acked later, or redelivered): kept across
        # reconnects, oldest dropped first; a dict is an ordered set
        self._refused_events: dict[str, None] = {}
        self._first_at = 0.0
        self._last_activity = 0.0  # monotonic time of the last delivery or write (idle: lag back to 0)
        self._store_problem: str | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop taking events; the batch in hand is still written (if the store answers) and acked."""
        self._stop.set()

    @property
    def in_hand(self) -> int:
        """Deliveries received and not yet written (the batch being collected)."""
        return len(self._inbox)

    @property
    def store_problem(self) -> str | None:
        """What the last failed store write said; None once a write succeeds (or none failed)."""
        return self._store_problem

    def run(self) -> None:
        """Consume until ``stop()``. A ConfigError that retrying cannot cure (the broker's queues
        disagree with the config; login or vhost refused at start) ends it, and so does any
        unexpected error (logged with its traceback): kept in ``error``."""
        backoff = BROKER_BACKOFF[0]
        try:
            while not self._stop.is_set():
                opened = self.connections_opened
                self.heartbeat.tick()
                try:
                    self._run_connected()
                except (HubError, pika.exceptions.AMQPError, OSError) as exc:
                    error = exc if isinstance(exc, HubError) else broker_failure(exc, self.config.broker)
                    self.connected.clear()
                    self.metrics.connected.set(0)
                    started = self.connections_opened > 0
                    if isinstance(error, ConfigError) and not (started and isinstance(error, BrokerAccessRefused)):
                        self.error = error
                        log.error("tracker consumer stopped: %s", error)
                        return
                    if self._stop.is_set():
                        break
                    if self.connections_opened > opened:
                        backoff = BROKER_BACKOFF[0]
                    what = "broker connection lost" if started else "broker not reachable at start"
                    self.outage.down(what)
                    log.warning("%s (%s); reconnecting in %.0fs", what, error, backoff)
                    self.heartbeat.tick()
                    self._stop.wait(backoff)  # at most 30 s: inside the heartbeat's stall limit
                    backoff = min(backoff * 2, BROKER_BACKOFF[1])
        except Exception as exc:  # a bug: say so loudly and end (the process exits non-zero)
            log.exception("tracker consumer failed unexpectedly; stopping")
            self.error = TrackerConsumerFailed(f"tracker consumer failed unexpectedly ({type(exc).__name__}); "
                                               "see the log")
        finally:
            self.connected.clear()
            self.metrics.connected.set(0)

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason) for /readyz: consuming, and the last write to the store succeeded. The
        reason is generic (it is answered without authentication); the details are in the log."""
        if self.error is not None:
            return False, "tracker consumer stopped (see the log)"
        if not self.connected.is_set():
            return False, self.outage.describe() or "connecting to the broker"
        if self._store_problem is not None:
            return False, STORE_UNREACHABLE
        return True, "consuming hub.tracker; store ok"

    # --- the connected loop ------------------------------------------------------------------
    def _run_connected(self) -> None:
        connection = connect(self.config.broker, self._client_name)
        self._inbox = []  # delivery tags of an earlier connection mean nothing on this one
        self._acked = set()
        try:
            if self._apply_topology:
                setup = connection.channel()
                setup.confirm_delivery()
                # declare only (like the workers): removing bindings is `hub topology apply`'s job
                apply_configured(setup, self.config, remove_stale=False)
                setup.close()
            channel = connection.channel()
            channel.confirm_delivery()  # dead-letter copies are confirmed before their ack
            channel.basic_qos(prefetch_count=2 * self.batch_size)
            consumer_tag = channel.basic_consume(TRACKER_QUEUE, self._on_message)
            self.connections_opened += 1
            self.outage.up()
            self.connected.set()
            self.metrics.connected.set(1)
            log.info("tracker consuming %s (batches of %d)", TRACKER_QUEUE, self.batch_size)
            written = True  # False once a batch stays unwritten: no later ack may cover its tags
            while written and not self._stop.is_set():
                self.heartbeat.tick()
                connection.process_data_events(time_limit=self._wait_time())
                self._reset_lag_when_idle()
                while written and self._inbox and (len(self._inbox) >= self.batch_size
                                                   or time.monotonic() - self._first_at >= BATCH_WAIT):
                    written = self._flush(connection, channel)
            # graceful: no new deliveries (pika returns undispatched ones), write what is in hand
            channel.basic_cancel(consumer_tag)
            while written and self._inbox:
                written = self._flush(connection, channel)
        finally:
            self.connected.clear()
            self.metrics.connected.set(0)
            if connection.is_open:
                with contextlib.suppress(pika.exceptions.AMQPError, OSError):  # closing a broken connection
                    connection.close()

    def _reset_lag_when_idle(self) -> None:
        """Nothing in hand, delivered or written for ``IDLE_AFTER``: the queue is drained, events
        reach the store as they come, so the lag is 0 (not the last batch's, kept forever). A
        write counts: the lag of a batch written after a long store outage stays visible."""
        if not self._inbox and time.monotonic() - self._last_activity >= IDLE_AFTER:
            self.metrics.lag.set(0)

    def _on_message(self, _channel: Any, method: Any, properties: pika.BasicProperties, body: bytes) -> None:
        self._last_activity = time.monotonic()
        if not self._inbox:
            self._first_at = time.monotonic()
        self._inbox.append(_Delivery(method.delivery_tag, properties, body))

    def _wait_time(self) -> float:
        """How long to pump I/O: until the batch in hand is due, at most ``STOP_CHECK`` (stop() is
        noticed between two calls)."""
        if not self._inbox:
            return STOP_CHECK
        return min(STOP_CHECK, max(0.0, self._first_at + BATCH_WAIT - time.monotonic()))

    def _flush(self, connection: pika.BlockingConnection, channel: Any) -> bool:
        """Write and ack the oldest deliveries (``_take``). False: not written (stopped while the
        store was failing); they stay unacked and come back after the connection closes."""
        batch, events = self._take(channel)
        if events and not self._write(connection, channel, events):
            return False
        rest = [d.tag for d in batch if d.tag not in self._acked]
        if rest:  # one ack for the batch; tags acked on their own before it are not acked twice
            channel.basic_ack(max(rest), multiple=True)
        self._acked.difference_update(d.tag for d in batch)
        return True

    def _take(self, channel: Any) -> tuple[list[_Delivery], list[tuple[_Delivery, StatusEvent]]]:
        """The oldest deliveries, parsed, until ``batch_size`` deliveries or events (batch messages
        would otherwise make one transaction of up to 500 times ``batch_size`` events); at least
        one, and never part of a message. An invalid one is dead-lettered (acked alone) here."""
        batch: list[_Delivery] = []
        events: list[tuple[_Delivery, StatusEvent]] = []
        for delivery in self._inbox:
            if len(batch) >= self.batch_size or len(events) >= self.batch_size:
                break
            batch.append(delivery)
            try:
                events.extend((delivery, e) for e in events_from_message(delivery.properties.content_type,
                                                                         delivery.body))
            except InvalidStatusEvent as exc:  # every parsing failure is this, a batch is refused whole
                self._dead_letter(channel, delivery, exc)  # acked on its own once the copy is confirmed
                self.metrics.invalid.inc()
        del self._inbox[:len(batch)]
        if self._inbox and len(batch) >= self.batch_size:
            # the rest of the inbox waits for its own batch; one cut short by the event count is
            # due as the taken part was (a backlog of batch messages goes on without a pause)
            self._first_at = time.monotonic()
        return batch, events

    def _write(self, connection: pika.BlockingConnection, channel: Any,
               events: list[tuple[_Delivery, StatusEvent]]) -> bool:
        """``store.ingest`` the batch, retrying with backoff until it succeeds (True) or the
        consumer stops while the store keeps failing (False). I/O keeps flowing while it waits."""
        backoff = STORE_BACKOFF[0]
        while True:
            self.heartbeat.tick()  # one write may take a reconnect and a statement timeout, twice
            try:
                self._ingest([e for _d, e in events])
                return True
            except Exception as exc:  # noqa: BLE001 - any store failure keeps the batch; see below
                if isinstance(exc, HubError) and not exc.transient:
                    log.warning("tracking store refused a batch of %d (%s); writing it one event at a time",
                                len(events), safe_error_text(exc))
                    if self._write_one_by_one(channel, events):
                        return True
                else:
                    self._store_failed(exc)
                    log.warning("tracking store failed (%s); writing the batch of %d again in %.1fs",
                                self._store_problem, len(events), backoff)
            if self._stop.is_set():  # stopping while the store fails: the broker redelivers the rest
                return False
            self.heartbeat.tick()
            connection.sleep(backoff)  # up to 30 s; heartbeats and new deliveries keep flowing meanwhile
            backoff = min(backoff * 2, STORE_BACKOFF[1])

    def _write_one_by_one(self, channel: Any, events: list[tuple[_Delivery, StatusEvent]]) -> bool:
        """Store each event alone; one the store refuses for good is dead-lettered (``_refuse``)
        and leaves ``events``. False when a transient failure interrupts (the rest of the batch is
        written again later: ingest is idempotent)."""
        for item in list(events):
            event = item[1]
            self.heartbeat.tick()  # a batch of single writes: each is bounded, their sum is not
            try:
                self._ingest([event])
            except InvalidStatusEvent as exc:  # text the store cannot hold (e.g. a NUL): invalid
                self._refuse(channel, events, item, exc)
                self.metrics.invalid.inc()
            except Exception as exc:  # noqa: BLE001 - sorted below
                if not isinstance(exc, HubError) or exc.transient:  # an outage: the batch is retried
                    self._store_failed(exc)
                    return False
                self.metrics.store_errors.inc()
                log.error("tracking store refused event %s of %s for good (%s); dead-lettered",
                          event.event_id, event.message_id, safe_error_text(exc))
                self._refuse(channel, events, item, exc, reason=STORE_REJECTED)
        self._store_problem = None
        return True

    def _refuse(self, channel: Any, events: list[tuple[_Delivery, StatusEvent]],
                item: tuple[_Delivery, StatusEvent], error: HubError, reason: str | None = None) -> None:
        """Dead-letter an event the store refused for good and take it out of ``events`` (a second
        write of the batch after a transient failure must not meet it again). A single-event
        message is copied and acked alone (its tag is in ``_acked`` from now on: a second ack of a
        tag is a channel error). An event of a batch message is copied alone, as a single-event
        message, and its message is left to the flush's ack: its other events are valid and are
        stored. Such an event is copied once per process (``_refused_events``), even when its
        batch comes back after a reconnect."""
        delivery, event = item
        if delivery.properties.content_type != BATCH_CONTENT_TYPE:
            self._dead_letter(channel, delivery, error, reason=reason)
        elif event.event_id not in self._refused_events:
            self._dead_letter_event(channel, event, error, reason=reason)
            self._refused_events[event.event_id] = None
            if len(self._refused_events) > REMEMBERED_REFUSALS:
                del self._refused_events[next(iter(self._refused_events))]
        else:
            log.info("event %s of a status batch was dead-lettered before; not copied again", event.event_id)
        events[:] = [other for other in events if other is not item]

    def _store_failed(self, error: BaseException) -> None:
        self.metrics.store_errors.inc()
        self._store_problem = safe_error_text(error)

    def _ingest(self, events: Sequence[StatusEvent]) -> None:
        started = time.monotonic()
        new = self.store.ingest(events)
        self.metrics.ingest_seconds.observe(time.monotonic() - started)
        self._store_problem = None
        for event in events:
            self.metrics.events.labels(event.event).inc()
        self.metrics.duplicates.inc(max(0, len(events) - new))
        self.metrics.lag.set(max(0.0, time.time() - max(e.at for e in events)))
        self._last_activity = time.monotonic()

    def _dead_letter(self, channel: Any, delivery: _Delivery, error: HubError,
                     reason: str | None = None) -> None:
        """Copy the message to hub.dead with its reason (confirmed, mandatory), then ack it alone:
        a later failure of its batch cannot bring it back for a second copy."""
        slug = self._publish_dead(channel, delivery.body, delivery.properties, error, reason)
        channel.basic_ack(delivery.tag)
        self._acked.add(delivery.tag)
        log.warning("dead-lettered a message of %d bytes from %s: %s (%s)", len(delivery.body), TRACKER_QUEUE, slug,
                    safe_error_text(error))

    def _dead_letter_event(self, channel: Any, event: StatusEvent, error: HubError,
                           reason: str | None = None) -> None:
        """Copy one event of a batch message to hub.dead as a single-event message, not acking its
        batch: the batch's other events are still to be stored, and the flush acks it after them."""
        slug = self._publish_dead(channel, event.body(), event.properties(), error, reason)
        log.warning("dead-lettered event %s of a status batch from %s: %s (%s)", event.event_id, TRACKER_QUEUE,
                    slug, safe_error_text(error))

    def _publish_dead(self, channel: Any, body: bytes, properties: pika.BasicProperties, error: HubError,
                      reason: str | None) -> str:
        """Publish ``body`` to hub.dead (``tracker.<reason>``) with the reason headers and wait for
        the confirm; a copy the broker does not take raises (nothing is acked then). The reason."""
        slug = reason or error_reason(error)
        headers = {
            **clean_headers(properties.headers or {}),
            "x-hub-reason": slug,
            "x-hub-error-class": type(error).__name__,
            "x-hub-error-message": safe_error_text(error),
            "x-hub-adapter": "tracker",
            "x-hub-attempts": 1,
            "x-hub-first-failure": epoch_ms(),
            "x-hub-last-failure": epoch_ms(),
        }
        try:
            channel.basic_publish(DEAD_EXCHANGE, f"tracker.{slug}", body, copy_properties(properties, headers),
                                  mandatory=True)
        except pika.exceptions.UnroutableError:
            raise BrokerUnavailable("hub.dead did not take a dead letter of the tracker (unroutable); "
                                    "is the topology applied?") from None
        except pika.exceptions.NackError:
            raise PublishNotConfirmed("the broker refused a dead letter of the tracker") from None
        return slug
