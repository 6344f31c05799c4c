"""The adapter worker: consume an adapter's queue, deliver on a thread pool, settle each message.

The pika ``BlockingConnection`` lives on the main thread, which only pumps I/O (heartbeats keep
flowing while SOAP calls run, pitfall 1); deliveries run on a pool of ``concurrency`` threads; the
ack goes back to the I/O thread via ``add_callback_threadsafe``. A message is acked only after its
outcome is safe: delivered (endpoint accepted), or copied to a retry wait queue / the dead-letter
queue with a broker confirm. If that copy cannot be confirmed the message is nacked with requeue,
so nothing is lost; the quorum queue's delivery limit stops endless loops (pitfall 4).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import pika
import pika.exceptions

from adapters.base import StatusFollowUp
from hub.amqp_stream import assemble_into_one_buffer
from hub.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    STATE_VALUES,
    BreakerSettings,
    CircuitBreaker,
)
from hub.broker import broker_failure, connect
from hub.config import HubConfig
from hub.envelope import copy_properties
from hub.errors import (
    BrokerAccessRefused,
    ConfigError,
    HubError,
    TransportError,
    UnknownDestination,
)
from hub.failures import (
    H_FIRST_FAILURE,
    dead_letter_headers,
    epoch_ms,
    error_reason,
    header_int,
    retry_headers,
    safe_error_text,
)
from hub.health import Heartbeat, OutageRecord
from hub.ledger import ReportSchedule
from hub.metrics import WorkerMetrics
from hub.pipeline import DeliveryPipeline
from hub.publisher import ResilientPublisher
from hub.report_scheduler import ReportLedger, ReportScheduler, ReportTiming
from hub.reports import PollRequest
from hub.stages import observing
from hub.status import ACCEPTED, DEAD_LETTERED, RETRY_SCHEDULED
from hub.topology import (
    DEAD_EXCHANGE,
    apply_configured,
    deliver_queue,
    report_queue,
    retry_queue,
)
from hub.worker_events import MessageIds, Progress, StatusBatcher, WorkerEvents, message_log_context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Inbound:
    tag: int
    properties: pika.BasicProperties
    body: bytes | bytearray  # a large one arrives as one bytearray (hub/amqp_stream.py)
    connection: pika.BlockingConnection
    channel: Any
    generation: int  # the connection it came on; after a reconnect the broker has requeued it


class AdapterWorker:
    """Runs until ``stop()``; reconnects with backoff when the broker connection is lost."""

    def __init__(self, config: HubConfig, adapter_name: str, pipeline: DeliveryPipeline,
                 metrics: WorkerMetrics, *, apply_topology_on_start: bool = True,
                 breaker_settings: BreakerSettings | None = None) -> None:
        self.config = config
        self.adapter = adapter_name
        self.adapter_config = config.adapter(adapter_name)
        self.pipeline = pipeline
        self.metrics = metrics
        self.queue = deliver_queue(adapter_name)
        self._apply_topology = apply_topology_on_start
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(self.adapter_config.concurrency, thread_name_prefix=f"deliver-{adapter_name}")
        self._in_flight = 0
        self._lock = threading.Lock()
        self.publisher: ResilientPublisher | None = None
        self.connected = threading.Event()
        self.connections_opened = 0
        self.outage = OutageRecord()
        self.heartbeat = Heartbeat("consume loop")  # /healthz: the I/O loop (or its reconnect backoff) ticks
        self.blocked = False  # the broker blocks our connection (resource alarm); a new connection is not
        self.consumer_tag: str | None = None  # set while a consumer is attached to the adapter queue
        self._cautious = threading.Event()
        self._generation = 0
        if breaker_settings is None:
            b = self.adapter_config.breaker
            breaker_settings = BreakerSettings(b.consecutive_failures, b.failure_rate, b.window, b.cool_down)
        self.breaker = CircuitBreaker(breaker_settings, on_change=self._on_breaker_change)
        self.metrics.breaker_state.labels(adapter_name).set(STATE_VALUES[CLOSED])
        self.metrics.broker_blocked.labels(adapter_name).set(0)  # a series from the start: alerts/dashboards see it
        status = self.config.status
        batcher = (StatusBatcher(self._ensure_publisher, status.batch_window, status.batch_max_events)
                   if status.batch_window > 0 else None)
        self.events = WorkerEvents(adapter_name, self._ensure_publisher, metrics.status_events_failed, batcher=batcher)
        self.reports = self._report_scheduler()

    def _report_scheduler(self) -> ReportScheduler | None:
        """The transport-report scheduler (hub/report_scheduler.py), if the adapter's profile follows
        deliveries up (the ``StatusFollowUp`` capability) and the ledger can keep the schedule."""
        adapter = self.pipeline.adapter
        ledger = self.pipeline.ledger
        if (not isinstance(adapter, StatusFollowUp) or not self.adapter_config.poll_transport_reports
                or not hasattr(ledger, "claim_reports")):
            return None
        poll = adapter.transport_report
        cfg = self.adapter_config
        failed = self.metrics.status_events_failed
        return ReportScheduler(
            self.adapter, cast(ReportLedger, ledger), poll, self._ensure_publisher,
            ReportTiming(cfg.first_poll_delay, cfg.report_poll_interval, cfg.report_poll_max),
            paused=lambda: self.breaker.state == OPEN or not self.connected.is_set(),
            counted=lambda result: self.metrics.transport_reports.labels(self.adapter, result).inc(),
            lost=lambda event: failed.labels(self.adapter, event.event).inc(),
            lease=2 * cfg.timeout + 5.0,  # a poll that hangs for the timeout ends well inside it
            batch_events=self.config.status.batch_max_events if self.config.status.batch_window > 0 else None)

    # --- lifecycle ---------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Consume until ``stop()``. Raises ConfigError when retrying cannot help: the broker's
        queues disagree with the config, or at start the broker refused login, vhost or permission
        (``BrokerAccessRefused``; a refusal after a successful start is retried like an outage)."""
        backoff = 1.0
        if self.reports is not None:
            self.reports.start()
        try:
            while not self._stop.is_set():
                opened = self.connections_opened
                self.heartbeat.tick()
                try:
                    self._run_connected()
                except (HubError, pika.exceptions.AMQPError, OSError) as exc:
                    error = exc if isinstance(exc, HubError) else broker_failure(exc, self.config.broker)
                    self.connected.clear()
                    self.metrics.consumer_connected.labels(self.adapter).set(0)
                    self._set_blocked(False, quiet=True)  # the alarm was of the connection that is gone
                    started = self.connections_opened > 0
                    if isinstance(error, ConfigError) and not (started and isinstance(error, BrokerAccessRefused)):
                        raise error from None
                    if self._stop.is_set():
                        break
                    if self.connections_opened > opened:  # it was up for a while: start the ladder again
                        backoff = 1.0
                    what = "broker connection lost" if started else "broker not reachable at start"
                    self.outage.down(what)
                    log.warning("%s (%s); reconnecting in %.0fs", what, error, backoff)
                    self.heartbeat.tick()
                    self._stop.wait(backoff)  # at most 30 s: well inside the heartbeat's stall limit
                    backoff = min(backoff * 2, 30.0)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            if self.reports is not None:  # its round ends with its events confirmed, or leased for later
                self.reports.stop()
            # status events: a batch in hand goes out, then the confirms still outstanding (a failed
            # one goes to the retrier), then the retrier's tries, then the publisher; whatever is
            # still unconfirmed is counted lost
            self.events.flush(15)
            if self.publisher is not None:
                self.publisher.wait_confirms(15)
            self.events.close(15)
            if self.publisher is not None:
                self.publisher.close()

    def broker_readiness(self) -> tuple[bool, str]:
        """(ready, reason) of the broker side, for /readyz: connected, or since when it reconnects."""
        if self.connected.is_set() and self.publisher is not None and self.publisher.is_open:
            return True, "connected to the broker"
        if self.connected.is_set():  # the publisher's connection reconnects on its next publish
            return False, "broker publisher connection lost, reconnecting"
        return False, self.outage.describe() or "connecting to the broker"

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason) of the consuming side, for /readyz: connected to the broker and not
        blocked by it, a consumer attached to the adapter queue (none while the breaker is open),
        and the breaker not open. Keys and the XTA account are checked by the caller (hub/cli.py)."""
        breaker = self.breaker.state
        connected, detail = self.broker_readiness()
        if not connected:
            return False, f"{detail}; circuit {breaker}"
        problems = []
        if self.broker_blocked:
            problems.append("the broker blocks this worker's connection (memory or disk alarm)")
        if breaker == OPEN:
            problems.append(f"circuit open: the endpoint of {self.adapter} failed, consumer cancelled until the "
                            "cool-down has passed")
        elif self.consumer_tag is None:
            problems.append(f"no consumer attached to {self.queue} yet")
        if problems:
            return False, "connected; " + "; ".join(problems)
        return True, f"connected; consuming {self.queue}; circuit {breaker}"

    @property
    def broker_blocked(self) -> bool:
        """The broker blocks one of this worker's connections (memory or disk alarm). It blocks a
        connection only once it publishes during the alarm, so the publisher's connection (status
        events, retries, dead letters) is the one that notices; the consuming one only at a reconnect."""
        publisher = self.publisher
        return self.blocked or (publisher is not None and publisher.blocked)

    def _on_breaker_change(self, old: str, new: str) -> None:
        self.metrics.breaker_state.labels(self.adapter).set(STATE_VALUES[new])
        self.metrics.breaker_transitions.labels(self.adapter, new).inc()
        log.warning("circuit breaker for %s: %s -> %s", self.adapter, old, new)

    def _ensure_publisher(self) -> ResilientPublisher:
        if self.publisher is None:
            self.publisher = ResilientPublisher(self.config.broker, f"hub-worker-{self.adapter}-publisher")
        return self.publisher

    def _consume(self, channel: Any, connection: pika.BlockingConnection, prefetch: int) -> str:
        assemble_into_one_buffer(channel)  # a large body is held once, not as frames + their join
        channel.basic_qos(prefetch_count=prefetch)
        consumer_tag: str = channel.basic_consume(self.queue, partial(self._on_message, connection))
        return consumer_tag

    def _run_connected(self) -> None:
        connection = connect(self.config.broker, f"hub-worker-{self.adapter}")
        self._generation += 1
        self.heartbeat.tick()
        try:
            if self._apply_topology:
                setup = connection.channel()
                setup.confirm_delivery()
                # declare only: removing stale bindings is `hub topology apply`'s job, so a worker
                # on an older config (rolling deploy) cannot unbind newly added authorities
                apply_configured(setup, self.config, remove_stale=False)
                if setup.is_open:  # (closed by the broker when the topology record was unavailable)
                    setup.close()
            self._ensure_publisher().ensure_connected()
            connection.add_on_connection_blocked_callback(lambda *_: self._set_blocked(True))
            connection.add_on_connection_unblocked_callback(lambda *_: self._set_blocked(False))
            channel = connection.channel()
            self._cautious.set()
            # no more unacked messages than threads: a prefetched message waiting in the pool would
            # be requeued on a reconnect while its task still ran
            full_prefetch = min(self.config.broker.prefetch, self.adapter_config.concurrency)
            consumer_tag: str | None = None
            report_tag: str | None = None
            report_channel = None
            if self.reports is not None:
                report_channel = connection.channel()
                report_channel.basic_qos(prefetch_count=self.adapter_config.concurrency)
            mode = None
            self.connections_opened += 1
            self.outage.up()
            self.connected.set()
            self.metrics.consumer_connected.labels(self.adapter).set(1)
            log.info("worker %s consuming %s", self.adapter, self.queue)
            while not self._stop.is_set():
                self.heartbeat.tick()
                self.metrics.broker_blocked.labels(self.adapter).set(1 if self.broker_blocked else 0)
                # the breaker decides how we consume: fully, one probe at a time, or not at all
                # (and after a (re)start, one at a time until a message settles cleanly: if a
                # redelivered message crashed the previous process, only it is in flight when it
                # crashes us again, so only its delivery count reaches the queue's limit)
                self.breaker.try_half_open()
                wanted = self.breaker.state
                if wanted == CLOSED and self._cautious.is_set():
                    wanted = "cautious"
                if wanted != mode:
                    if consumer_tag is not None:
                        channel.basic_cancel(consumer_tag)
                        consumer_tag = self.consumer_tag = None
                    if wanted == CLOSED:
                        consumer_tag = self._consume(channel, connection, full_prefetch)
                    elif wanted in (HALF_OPEN, "cautious"):
                        consumer_tag = self._consume(channel, connection, 1)
                    self.consumer_tag = consumer_tag
                    if report_channel is not None and report_tag is None:  # the previous release's requests
                        report_tag = report_channel.basic_consume(
                            report_queue(self.adapter), partial(self._on_report, connection))
                    mode = wanted
                connection.process_data_events(time_limit=0.25)
            # graceful: stop taking new messages, let in-flight ones settle (bounded)
            if consumer_tag is not None:
                channel.basic_cancel(consumer_tag)
                self.consumer_tag = None
            if report_tag is not None and report_channel is not None:
                report_channel.basic_cancel(report_tag)
            deadline = time.monotonic() + max(30.0, self.adapter_config.timeout * 2)
            while self._in_flight and time.monotonic() < deadline:
                self.heartbeat.tick()
                connection.process_data_events(time_limit=0.2)
            connection.process_data_events(time_limit=0)  # run the last settle callbacks
        finally:
            self.connected.clear()
            self.consumer_tag = None
            if connection.is_open:
                with contextlib.suppress(pika.exceptions.AMQPError, OSError):  # closing a broken connection
                    connection.close()

    def _set_blocked(self, blocked: bool, *, quiet: bool = False) -> None:
        self.blocked = blocked
        self.metrics.broker_blocked.labels(self.adapter).set(1 if blocked else 0)
        if not quiet:
            log.warning("broker %s this worker's connection (resource alarm)", "blocked" if blocked else "unblocked")

    # --- I/O thread --------------------------------------------------------------------------
    def _on_message(self, connection: pika.BlockingConnection, channel: Any, method: Any,
                    properties: pika.BasicProperties, body: bytes) -> None:
        self.metrics.received.labels(self.adapter).inc()
        self.metrics.in_flight.labels(self.adapter).inc()
        with self._lock:
            self._in_flight += 1
        self._pool.submit(self._handle, _Inbound(method.delivery_tag, properties, body, connection, channel,
                                                 self._generation))

    def _on_report(self, connection: pika.BlockingConnection, channel: Any, method: Any,
                   properties: pika.BasicProperties, body: bytes) -> None:
        with self._lock:
            self._in_flight += 1
        self._pool.submit(self._handle_report, _Inbound(method.delivery_tag, properties, body, connection, channel,
                                                        self._generation))

    def _handle_report(self, msg: _Inbound) -> None:
        """A poll request of the previous release (hub/reports.py): moved into the ledger, acked
        once the ledger has it (flushed), polled by the scheduler from then on."""
        ok = False
        if msg.generation != self._generation:
            return self._settle(msg, ack=False)  # its connection is gone: the broker requeued it
        try:
            assert self.reports is not None
            with message_log_context(msg.properties, self.adapter):
                try:
                    pending = PollRequest.from_body(msg.body).pending()
                except (ValueError, TypeError):
                    log.warning("dropping an unparsable transport-report poll request (%d bytes)", len(msg.body))
                else:
                    self.reports.ledger.schedule_report(self.adapter, pending)
                    self.reports.wake()
            ok = True
        except Exception:
            log.exception("transport-report poll request for %s not taken over; it will be retried",
                          msg.properties.message_id)
        finally:
            self._settle(msg, ack=ok)

    # --- delivery threads --------------------------------------------------------------------
    def _handle(self, msg: _Inbound) -> None:
        started = time.monotonic()
        outcome = "dead_lettered"
        settle_ok = False
        if msg.generation != self._generation:  # its connection is gone: another delivery of it may run
            self.metrics.in_flight.labels(self.adapter).dec()
            return self._settle(msg, ack=False)
        with (message_log_context(msg.properties, self.adapter, len(self.adapter_config.retry_delays)),
              observing(self._observe_stage)):
            try:
                outcome = self._process(msg)
                settle_ok = True
                self._cautious.clear()
            except Exception:
                log.exception("could not settle message %s; returning it to the queue", msg.properties.message_id)
            finally:
                self.metrics.duration.labels(self.adapter, outcome).observe(time.monotonic() - started)
                self.metrics.in_flight.labels(self.adapter).dec()
                self._settle(msg, ack=settle_ok)

    def _observe_stage(self, stage: str, seconds: float) -> None:
        """The stage observer of a delivery (hub/stages.py): never raises into the delivery."""
        try:
            self.metrics.stage_duration.labels(self.adapter, stage).observe(seconds)
        except Exception:  # a metric must not fail a delivery
            log.debug("stage %s not observed", stage, exc_info=True)

    def _process(self, msg: _Inbound) -> str:
        """Deliver, or copy to retry/dead-letter; return the outcome. Raises only if the copy failed."""
        props = msg.properties
        destination = (props.headers or {}).get("x-destination")
        ids = MessageIds.from_properties(props, len(self.adapter_config.retry_delays))
        self.events.publish_nowait(self.events.event(ids, ACCEPTED))
        progress = Progress()
        report = (ReportSchedule(ids.portal, ids.correlation_id, self.adapter_config.first_poll_delay)
                  if self.reports is not None else None)
        try:
            envelope = self.pipeline.decode(props, msg.body)
            receipt = self.pipeline.process(envelope, on_delivering=self.events.on_delivering(ids, progress),
                                            report=report)
        except Exception as error:
            if not isinstance(error, HubError):  # a bug: the traceback (no payload) helps fix it
                log.exception("unexpected error delivering %s", props.message_id)
            if _endpoint_failure(error):
                self.breaker.record_failure()
            return self._fail(msg, error, destination if isinstance(destination, str) else None, ids, progress)
        # a ledger duplicate confirmed nothing new (it was followed up when first confirmed); an
        # acceptance confirmed on a re-send ("id already used") is a first delivery like any other
        if not receipt.duplicate:
            self.breaker.record_success()
        detail = self.events.delivered(ids, progress, receipt.transport_message_id, duplicate=receipt.duplicate,
                                       accepted_on_resend=receipt.accepted_on_resend)
        self.metrics.processed.labels(self.adapter, "delivered").inc()
        log.info("delivered %s to %s as %s%s", envelope.message_id, envelope.destination, receipt.transport_message_id,
                 " (accepted on re-send)" if detail.get("accepted_on_resend") else "", extra={"outcome": "delivered"})
        return "delivered"

    def _fail(self, msg: _Inbound, error: BaseException, destination: str | None, ids: MessageIds,
              progress: Progress) -> str:
        failed_at = time.time()  # the event's time: before the copy can reach a worker again
        props = msg.properties
        headers = dict(props.headers or {})
        ladder = self.adapter_config.retry_delays
        attempts = ids.attempt  # x-hub-attempt + 1; forged/stale values clamp to the ladder
        first_failure = header_int(headers, H_FIRST_FAILURE, epoch_ms())
        transient = isinstance(error, HubError) and error.transient
        reason = error_reason(error)
        self.metrics.failures.labels(self.adapter, reason).inc()
        publisher = self._ensure_publisher()
        text = safe_error_text(error)
        outcome, event = "retry_scheduled", RETRY_SCHEDULED
        if transient and attempts <= len(ladder):
            # the wait queue: this attempt's level, or a later one that honours the endpoint's Retry-After;
            # the attempt count stays as it is (a long Retry-After never brings the dead letters closer)
            level = retry_level(ladder, attempts, error.retry_after if isinstance(error, HubError) else None)
            try:
                publisher.publish_and_wait("", retry_queue(self.adapter, level), msg.body,
                                           copy_properties(props, retry_headers(headers, error, attempts, first_failure)),
                                           mandatory=True, deadline=60)
                self.metrics.retries.labels(self.adapter, str(level)).inc()  # confirmed: it is on level N
                log.warning("message %s: %s; retry %d of %d in %ss", props.message_id, text, attempts, len(ladder),
                            ladder[level - 1], extra={"outcome": outcome})
            except UnknownDestination:  # the wait queue is missing (topology drift): keep it in the DLQ
                outcome = "dead_lettered"
        else:
            outcome = "dead_lettered"
        if outcome == "dead_lettered":
            publisher.publish_and_wait(DEAD_EXCHANGE, f"{self.adapter}.{reason}", msg.body, copy_properties(
                props, dead_letter_headers(headers, error, adapter=self.adapter, destination=destination,
                                           attempts=attempts, first_failure=first_failure)),
                mandatory=True, deadline=60)
            self.metrics.dead_lettered.labels(self.adapter, reason).inc()
            event = DEAD_LETTERED
            log.warning("message %s dead-lettered: %s", props.message_id, text, extra={"outcome": outcome})
        self.metrics.processed.labels(self.adapter, outcome).inc()
        # best effort: the outcome is already safe; a lost status event must not cause a redelivery
        self.events.failed(ids, event, progress, error, reason, at=failed_at)
        return outcome

    def _settle(self, msg: _Inbound, *, ack: bool) -> None:
        """Ack or return the message on its connection's I/O thread; the in-flight count drops
        there too, so a draining shutdown waits until the ack has really been sent."""
        def settle() -> None:
            try:
                if msg.channel.is_open:  # else the broker has requeued it already
                    if ack:
                        msg.channel.basic_ack(msg.tag)
                    else:  # reject, not nack: it counts towards the quorum queue's delivery limit
                        msg.channel.basic_reject(msg.tag, requeue=True)
            finally:
                self._done()
        try:
            msg.connection.add_callback_threadsafe(settle)
        except Exception:  # noqa: BLE001 - connection gone: the broker redelivers
            log.info("connection closed before settling %s; it will be redelivered", msg.properties.message_id)
            self._done()

    def _done(self) -> None:
        with self._lock:
            self._in_flight -= 1


def retry_level(ladder: tuple[float, ...], attempts: int, retry_after: float | None) -> int:
    """The wait queue's level for retry ``attempts``: its own, or the first later level that waits at
    least the endpoint's ``Retry-After`` (the last level if none does). Only the wait is chosen here:
    the attempt count the message carries on stays ``attempts``."""
    if retry_after is None or retry_after <= 0:
        return attempts
    level = attempts
    while level < len(ladder) and ladder[level - 1] < retry_after:
        level += 1
    return level


def _endpoint_failure(error: BaseException) -> bool:
    """Failures that say the endpoint is unwell (count for the breaker); input errors do not.
    ``MalformedAnswer`` (an answer that makes no sense) is an ``EndpointUnavailable``: it counts;
    so does a transient fault the endpoint raised on purpose (XTA 9030-9032)."""
    return isinstance(error, TransportError) and error.transient
