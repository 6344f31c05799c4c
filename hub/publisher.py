"""Publishing with publisher confirms and a window of unconfirmed messages.

One confirm per message caps publishing at ~1–2k msg/s (pitfall 3); this publisher keeps up to
``window`` messages in flight and resolves a ``Future`` per message when the broker confirms it.
It runs its own pika ``SelectConnection`` on a background I/O thread, so any thread (a portal's
request handler, a worker's delivery thread) may publish; pika objects are touched only on that
thread (pitfall 1). ``mandatory`` returns are matched to their message and fail the future with
``UnknownDestination``: the caller learns of it, nothing is silently dropped.

Several broker nodes (``broker.urls``): a ``ConfirmingPublisher`` opens its one connection to the
first node of a shuffled list that takes it; when that connection is lost, every message not yet
confirmed fails with ``BrokerUnavailable``. ``ResilientPublisher`` then opens the next one, on the
next node of its own shuffled list, and publishes those messages again there (at-least-once: a
message whose confirm was lost with the node may arrive twice; the receiver's ledger makes its
effect once).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Self

import pika
import pika.exceptions
from pika.adapters.select_connection import IOLoop
from pika.channel import Channel

from hub.amqp_stream import STREAM_THRESHOLD, BodyStream, Chunk, body_length
from hub.broker import (
    access_refused,
    broker_failure,
    node_address,
    node_parameters,
    publish_refused,
    redacted_addresses,
    refused_body_size,
    shuffled_addresses,
)
from hub.config import BrokerConfig
from hub.envelope import PUBLISH_VERSION, Envelope
from hub.errors import BrokerUnavailable, HubError, PublishNotConfirmed, UnknownDestination
from hub.limits import SizeLimits, check_publishable
from hub.topology import INBOUND_CHECKED

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    future: Future[None]
    message_id: str | None
    routing_key: str
    returned: str | None = None
    body_size: int = 0


class ConfirmingPublisher:
    """A thread-safe publisher; ``publish`` returns a Future resolved on the broker's confirm.

    ``order``: the node URLs to try, in that order (default: ``broker.urls`` shuffled); each gets
    an equal share of ``connect_timeout``. The first that opens is the publisher's node for its
    life; a refusal (login, vhost) ends the attempt at once."""

    _node: pika.URLParameters | None = None  # the node being tried, then the one connected to

    def __init__(self, config: BrokerConfig, client_name: str, *, window: int | None = None,
                 connect_timeout: float = 15.0, order: Sequence[str] | None = None) -> None:
        self._config = config
        urls = shuffled_addresses(config) if order is None else list(order)
        # a hung node must leave time for the next, but each node gets long enough for TCP, TLS and
        # the AMQP handshake while the whole cluster reconnects at once after a failover
        share = max(8.0, connect_timeout / len(urls))
        self._nodes = [node_parameters(url, config, client_name) for url in urls]
        for node in self._nodes:
            node.connection_attempts = 1  # the rounds over all nodes are counted here
            node.stack_timeout = share
            node.socket_timeout = min(node.socket_timeout, share)
        self._tried = 0  # connections started, over all rounds
        self._window = threading.BoundedSemaphore(window or config.confirm_window)
        self._pending: dict[int, _Pending] = {}
        self._seq = 0
        self._ready = threading.Event()
        self._failure: str | None = None
        self._open_error: BaseException | None = None
        self._closing = False
        self.blocked = False
        self._channel: Channel | None = None
        self._stream: BodyStream | None = None  # a large message being written frame by frame
        self._held: deque[Callable[[], None]] = deque()  # publishes waiting for that stream to end
        self._queued: dict[int, _Pending] = {}  # handed to the I/O thread, not yet taken up by it
        self._queue_lock = threading.Lock()
        self._stopped = False  # the I/O loop has ended: nothing handed over would ever run
        self._ioloop = IOLoop()
        self._connection = self._open_next()
        self._thread = threading.Thread(target=self._run, name=f"publisher-{client_name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(max(connect_timeout, share * len(urls)) + 1.0) or self._failure:
            self._closing = True
            self._stop_loop()
            if self._open_error is not None:  # refused login/vhost is a configuration error, not an outage
                raise broker_failure(self._open_error, config, connecting=True, node=self._node)
            raise BrokerUnavailable(
                f"cannot connect to RabbitMQ at {redacted_addresses(config)} ({self._failure or 'timeout'}). "
                "Start it (e.g. `rabbitmq-server -detached`) or set AMQP_URL=amqp://user:pass@host:5672/vhost"
            )

    @property
    def node_index(self) -> int:
        """Position in ``order`` of the node this publisher is connected to."""
        return (self._tried - 1) % len(self._nodes)

    @property
    def address(self) -> str:
        """``host:port`` of the node this publisher is connected to (or trying)."""
        return node_address(self._node) if self._node is not None else "?"

    def _open_next_later(self) -> None:
        if self._closing:
            self._ioloop.stop()
        else:
            self._connection = self._open_next()

    def _open_next(self) -> pika.SelectConnection:
        """Start opening a connection to the next node to try (I/O thread, or ``__init__``)."""
        self._node = self._nodes[self._tried % len(self._nodes)]
        self._tried += 1
        return pika.SelectConnection(
            self._node,
            on_open_callback=self._on_connection_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_connection_closed,
            custom_ioloop=self._ioloop,
        )

    def _run(self) -> None:
        try:
            self._ioloop.start()
        finally:
            with self._queue_lock:
                self._stopped = True
                queued, self._queued = self._queued, {}
            for entry in queued.values():  # handed over after the connection was lost: never sent
                if not entry.future.done():
                    entry.future.set_exception(BrokerUnavailable("publish not confirmed, publisher connection is gone"))
                self._window.release()

    # --- I/O thread -------------------------------------------------------------------------
    def _on_connection_open(self, connection: pika.SelectConnection) -> None:
        connection.add_on_connection_blocked_callback(self._on_blocked)
        connection.add_on_connection_unblocked_callback(self._on_unblocked)
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_blocked(self, _connection: Any, frame: Any) -> None:
        self.blocked = True
        log.warning("broker blocked publishing (%s): resource alarm", getattr(frame.method, "reason", "?"))

    def _on_unblocked(self, _connection: Any, _frame: Any) -> None:
        self.blocked = False
        log.info("broker unblocked publishing")

    def _on_open_error(self, _connection: Any, error: BaseException) -> None:
        """This node did not open: a refusal ends the attempt (another node of the cluster would
        refuse too); an outage moves on to the next node, if any is left."""
        refused = access_refused(error, self._config, node=self._node) is not None
        if not refused and not self._closing and self._tried < len(self._nodes) * self._config.connection_attempts:
            log.info("broker node %s not reachable (%s); trying the next", self.address, type(error).__name__)
            if self._tried % len(self._nodes):
                self._connection = self._open_next()
            else:  # a round over all nodes failed: the next one after retry_delay, as pika would
                self._ioloop.call_later(self._config.retry_delay, self._open_next_later)
            return
        self._failure = f"{type(error).__name__}: {error}"
        self._open_error = error if refused else None
        self._ready.set()
        self._ioloop.stop()

    def _on_channel_open(self, channel: Channel) -> None:
        self._channel = channel
        channel.add_on_return_callback(self._on_return)
        channel.add_on_close_callback(self._on_channel_closed)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=lambda _frame: self._ready.set())

    def _on_channel_closed(self, _channel: Channel, reason: Exception) -> None:
        self._channel = None
        self._abort_stream()
        # 403 ACCESS_REFUSED (no write permission) or 406 PRECONDITION_FAILED (e.g. a body above
        # max_message_size): retrying cannot help. A size refusal names the body size, so only the
        # message(s) of that size fail for it; the rest of the window fails as an outage, to be retried.
        self._fail_all(f"channel closed: {reason}", publish_refused(reason, self._config, node=self._node),
                       only_body_size=refused_body_size(reason))
        if not self._connection.is_closed and not self._connection.is_closing:
            self._connection.close()

    def _on_connection_closed(self, _connection: Any, reason: Exception) -> None:
        self._channel = None
        if not self._ready.is_set():  # opened, but closed before the channel was ready
            self._on_open_error(_connection, reason)
            return
        self._abort_stream()
        self._fail_all(f"connection closed: {reason}")
        self._ioloop.stop()

    def _fail_all(self, why: str, error: HubError | None = None, *, only_body_size: int | None = None) -> None:
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if not entry.future.done():
                hit = error is not None and only_body_size in (None, entry.body_size)
                entry.future.set_exception(error if hit else BrokerUnavailable(f"publish not confirmed, {why}"))
            self._window.release()
        self._release_held()  # they fail at once: the channel is gone

    def _do_publish(self, entry: _Pending, exchange: str, body: Sequence[Chunk],
                    properties: pika.BasicProperties, mandatory: bool) -> None:
        if self._stream is not None:  # no frame of another message may cut into a streamed one
            self._held.append(lambda: self._do_publish(entry, exchange, body, properties, mandatory))
            return
        if self._channel is None or not self._channel.is_open:
            entry.future.set_exception(BrokerUnavailable("publisher channel is not open"))
            self._window.release()
            return
        # the broker numbers confirms in publish order: the tag is taken before a stream can end
        # synchronously and let held messages go out
        self._seq += 1
        tag = self._seq
        self._pending[tag] = entry
        try:
            if entry.body_size > STREAM_THRESHOLD:
                self._start_stream(entry, exchange, body, properties, mandatory)
            else:
                whole = body[0] if len(body) == 1 else b"".join(body)
                self._channel.basic_publish(exchange, entry.routing_key, bytes(whole), properties, mandatory=mandatory)
        except Exception as exc:  # noqa: BLE001 - e.g. a header value AMQP cannot encode; never kill the I/O loop
            # nothing of it was written (frames are marshalled before any is sent): no tag used
            self._seq -= 1
            del self._pending[tag]
            self._stream = None
            entry.future.set_exception(PublishNotConfirmed(f"message could not be published: {type(exc).__name__}"))
            self._window.release()
            self._release_held()

    def _start_stream(self, entry: _Pending, exchange: str, body: Sequence[Chunk],
                      properties: pika.BasicProperties, mandatory: bool) -> None:
        """Write a large body frame by frame as the socket drains (hub/amqp_stream.py)."""
        assert self._channel is not None
        method = pika.spec.Basic.Publish(exchange=exchange, routing_key=entry.routing_key, mandatory=mandatory)
        stream = BodyStream(self._connection, self._channel, method, properties, body,
                            lambda _error: self._stream_done(stream))
        self._stream = stream
        stream.start()

    def _abort_stream(self) -> None:
        """The channel is gone: the stream's parts are released now, not when its timer would fire."""
        if self._stream is not None:
            self._stream.abort()
            self._stream = None

    def _stream_done(self, stream: BodyStream) -> None:
        # after an error the channel is closed or closing: _fail_all fails the message's future
        if self._stream is stream:
            self._stream = None
            self._release_held()

    def _release_held(self) -> None:
        """Publish what waited for a stream, in order, until one of them starts a stream itself."""
        while self._held and self._stream is None:
            self._held.popleft()()

    def _on_return(self, _channel: Channel, method: Any, properties: pika.BasicProperties, _body: bytes) -> None:
        for tag in sorted(self._pending):
            entry = self._pending[tag]
            if entry.returned is None and entry.message_id == properties.message_id and entry.routing_key == method.routing_key:
                entry.returned = method.reply_text or "NO_ROUTE"
                return

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        ack = isinstance(method, pika.spec.Basic.Ack)
        tags = [t for t in self._pending if t <= method.delivery_tag] if method.multiple else [method.delivery_tag]
        for tag in tags:
            entry = self._pending.pop(tag, None)
            if entry is None:
                continue
            if entry.returned is not None:
                entry.future.set_exception(UnknownDestination(
                    f"no route for destination '{entry.routing_key}' ({entry.returned}): "
                    "it is not in the hub's directory"))
            elif ack:
                entry.future.set_result(None)
            else:
                entry.future.set_exception(PublishNotConfirmed("broker nacked the message"))
            self._window.release()

    # --- any thread -------------------------------------------------------------------------
    def publish(self, exchange: str, routing_key: str, body: Chunk | Sequence[Chunk], properties: pika.BasicProperties,
                *, mandatory: bool = False, timeout: float | None = 60.0) -> Future[None]:
        """Queue one message; blocks only while the window is full.

        ``body`` is the message's bytes, or its parts in order (e.g. ``Envelope.body_chunks``): a
        body above 1 MiB is written frame by frame from them as the socket drains
        (hub/amqp_stream.py), so the publisher never holds a second copy of a large payload. The
        parts must not change until the future is done."""
        if self._closing:
            raise BrokerUnavailable("publisher is closed")
        chunks: Sequence[Chunk] = (body,) if isinstance(body, (bytes, bytearray, memoryview)) else tuple(body)
        if not self._window.acquire(timeout=timeout):
            raise PublishNotConfirmed(f"no confirm window free after {timeout}s (broker blocked?)")
        future: Future[None] = Future()
        entry = _Pending(future, properties.message_id, routing_key, body_size=body_length(chunks))
        key = id(entry)

        # a closure, not functools.partial: pika logs the callback's repr at DEBUG, and a
        # partial's repr would carry the body (personal data) into the logs
        def publish_on_io_thread() -> None:
            with self._queue_lock:
                queued = key in self._queued
            if queued:  # (else the loop's end has failed it already)
                # into ``_pending`` first, out of ``_queued`` after: ``wait_confirms`` never sees a
                # moment in which the message is in neither (the loop's end runs on this thread too)
                self._do_publish(entry, exchange, chunks, properties, mandatory)
                with self._queue_lock:
                    self._queued.pop(key, None)

        with self._queue_lock:  # the loop's end fails whatever is queued then: nothing waits forever
            if self._stopped:
                self._window.release()
                raise BrokerUnavailable("publisher connection is gone")
            self._queued[key] = entry
            try:
                self._ioloop.add_callback_threadsafe(publish_on_io_thread)
            except OSError as exc:  # loop already closed: its wake-up socket is closed
                del self._queued[key]
                self._window.release()
                raise BrokerUnavailable(f"publisher connection is gone: {exc}") from None
        return future

    def publish_and_wait(self, exchange: str, routing_key: str, body: Chunk | Sequence[Chunk],
                         properties: pika.BasicProperties, *, mandatory: bool = False,
                         timeout: float = 60.0) -> None:
        """Publish and return only after the broker confirmed (raises the mapped HubError)."""
        future = self.publish(exchange, routing_key, body, properties, mandatory=mandatory, timeout=timeout)
        try:
            future.result(timeout=timeout)
        except TimeoutError:
            raise PublishNotConfirmed(f"no confirm within {timeout}s") from None

    @property
    def is_open(self) -> bool:
        return self._channel is not None and self._channel.is_open

    def _outstanding(self) -> bool:
        """A message handed over and not yet confirmed, nacked or failed: still queued for the I/O
        thread, waiting for a stream to end, or sent and waiting for its confirm."""
        return bool(self._queued or self._held or self._stream is not None or self._pending)

    def wait_confirms(self, timeout: float) -> bool:
        """Wait until every message published so far is confirmed, nacked or failed (at most
        ``timeout`` seconds); True if none is outstanding. Their futures (and callbacks) have run by
        then, so a publish just handed over (not yet on the wire) is waited for too."""
        waited = 0.0
        while self._outstanding() and waited < timeout and self._thread.is_alive():
            threading.Event().wait(0.05)
            waited += 0.05
        return not self._outstanding()

    def close(self, timeout: float = 30.0) -> None:
        """Wait for outstanding confirms (up to ``timeout``), then close the connection."""
        self._closing = True
        self.wait_confirms(timeout)
        self._stop_loop()

    def _stop_loop(self) -> None:
        def _close() -> None:
            if not self._connection.is_closed and not self._connection.is_closing:
                self._connection.close()
            else:
                self._ioloop.stop()
        if self._thread.is_alive():
            with contextlib.suppress(OSError):  # the loop stopped already; the join below suffices
                self._ioloop.add_callback_threadsafe(_close)
            self._thread.join(10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class ResilientPublisher:
    """A ConfirmingPublisher that survives broker restarts and node losses: a publish that fails
    for a broker reason (among them every message whose confirm was outstanding when the
    connection dropped) is published again on a fresh connection (with backoff) until
    ``deadline`` seconds have passed. Each fresh connection starts at the node after the one just
    used, in an order shuffled once per publisher. Re-publishing can duplicate a message whose
    confirm was lost; consumers dedupe by message_id (the worker's ledger), so at-least-once here
    is safe."""

    RETRYABLE = (BrokerUnavailable, PublishNotConfirmed)

    def __init__(self, config: BrokerConfig, client_name: str, *, window: int | None = None) -> None:
        self._config = config
        self._name = client_name
        self._window = window
        self._lock = threading.Lock()
        self._current: ConfirmingPublisher | None = None
        self._order = shuffled_addresses(config)  # once: then each connection moves on to the next node
        self.reconnects = 0  # connects lazily: a broker that is down now may be back by the first publish

    def _get(self) -> ConfirmingPublisher:
        with self._lock:
            if self._current is None or not self._current.is_open:
                if self._current is not None:
                    self._current.close(timeout=0)
                    self.reconnects += 1
                self._current = None
                self._current = ConfirmingPublisher(self._config, self._name, window=self._window,
                                                    order=self._order)
                used = self._current.node_index
                self._order = self._order[used + 1:] + self._order[:used + 1]  # the next one is next
            return self._current

    def ensure_connected(self) -> None:
        """Connect now (raises BrokerUnavailable): for processes that should fail fast at start."""
        self._get()

    @property
    def is_open(self) -> bool:
        current = self._current
        return current is not None and current.is_open

    @property
    def blocked(self) -> bool:
        current = self._current
        return current is not None and current.blocked

    def publish_and_wait(self, exchange: str, routing_key: str, body: Chunk | Sequence[Chunk],
                         properties: pika.BasicProperties, *, mandatory: bool = False, timeout: float = 30.0,
                         deadline: float = 300.0) -> None:
        """Publish until confirmed, on the next node when the connection is lost before the confirm;
        raises UnknownDestination at once, other errors after ``deadline``."""
        give_up = time.monotonic() + deadline
        backoff = 0.5
        while True:
            try:
                self._get().publish_and_wait(exchange, routing_key, body, properties, mandatory=mandatory,
                                             timeout=timeout)
                return
            except self.RETRYABLE as exc:
                if time.monotonic() + backoff > give_up:
                    raise
                log.warning("publish to %s failed (%s); retrying in %.1fs", exchange or routing_key, exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def publish_nowait(self, exchange: str, routing_key: str, body: bytes, properties: pika.BasicProperties,
                       *, on_failure: Callable[[BaseException], None] | None = None,
                       window_timeout: float = 5.0) -> None:
        """Publish without waiting for the confirm, for messages whose loss is tolerable
        (informational status events): no confirm round trip in the caller's path. Never raises:
        a failure (no connection, no window free within ``window_timeout``, a nack or a lost
        confirm) goes to ``on_failure`` (on the caller's or the publisher's I/O thread)."""
        def failed(error: BaseException) -> None:
            if on_failure is not None:
                try:
                    on_failure(error)
                except Exception:  # a failing callback must not kill the I/O loop
                    log.exception("publish failure callback failed")

        def settled(future: Future[None]) -> None:
            error = future.exception()
            if error is not None:
                failed(error)

        try:
            future = self._get().publish(exchange, routing_key, body, properties, timeout=window_timeout)
        except Exception as exc:  # noqa: BLE001 - the caller's work goes on without this message
            failed(exc)
            return
        future.add_done_callback(settled)

    def publish_all(self, items: Iterable[tuple[str, str, Chunk | Sequence[Chunk], pika.BasicProperties, bool]],
                    *, deadline: float = 600.0) -> None:
        """Publish many with a full window. What is not confirmed (the connection was lost before
        the confirm came, or before the message was sent) is published again on a new
        connection, until ``deadline``; raises UnknownDestination at once."""
        pending = list(items)
        give_up = time.monotonic() + deadline
        backoff = 0.5
        while pending:
            futures: list[tuple[Any, Future[None]]] = []
            unsent: list[Any] = []
            try:
                publisher = self._get()
                for n, item in enumerate(pending):
                    try:
                        futures.append((item, publisher.publish(item[0], item[1], item[2], item[3], mandatory=item[4])))
                    except self.RETRYABLE:  # the connection is gone: this one and the rest go again
                        unsent = pending[n:]
                        break
            except self.RETRYABLE:
                unsent = pending
            failed = [item for item, future in futures if not self._confirmed(future, give_up)]
            pending = failed + unsent
            if pending:
                if time.monotonic() + backoff > give_up:
                    raise BrokerUnavailable(f"{len(pending)} messages not confirmed before the deadline")
                log.warning("%d publishes not confirmed (connection lost?); publishing them again in %.1fs",
                            len(pending), backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def _confirmed(self, future: Future[None], give_up: float) -> bool:
        """True once confirmed; False if it failed for a broker reason or not in time (worth
        another try); other errors (UnknownDestination, a refusal) are raised."""
        try:
            future.result(timeout=max(1.0, min(60.0, give_up - time.monotonic())))
        except (*self.RETRYABLE, TimeoutError):
            return False
        return True

    def wait_confirms(self, timeout: float = 30.0) -> bool:
        """Wait for the confirms of what was published on the current connection (see
        ``ConfirmingPublisher.wait_confirms``): before a shutdown hands unconfirmed messages on."""
        current = self._current
        return current is None or current.wait_confirms(timeout)

    def close(self) -> None:
        with self._lock:
            if self._current is not None:
                self._current.close()
                self._current = None


def publish_envelope(publisher: ConfirmingPublisher, envelope: Envelope, limits: SizeLimits | None = None,
                     *, check: bool = True, version: int = PUBLISH_VERSION) -> Future[None]:
    """Publish a portal's application to the checked inbound exchange with ``mandatory``.

    First, in the caller's thread, the size limit of its message type and a well-formed XML
    message (``limits``, default ``SizeLimits()``; from a config: ``SizeLimits.from_config``):
    raises ``ContentTooLarge`` / ``XmlRejected`` and sends nothing. ``check=False`` skips that, for
    tests that hand the worker hostile input on purpose (the worker checks everything again).
    ``version`` 2 (default) sends the parts as raw bytes straight from ``envelope`` (no join, no
    base64, no JSON copy; a large one is written frame by frame as the socket drains, so keep the
    envelope's parts unchanged until the future is done); ``version=1`` writes the JSON envelope for workers older than version 2 (roll workers
    out first, then publishers; docs/message-contract.md)."""
    if check:
        check_publishable(envelope.content, envelope.message_type, limits or SizeLimits())
    properties = envelope.properties(version=version)
    return publisher.publish(INBOUND_CHECKED, envelope.destination, envelope.body_chunks(version=version),
                             properties, mandatory=True)
