"""The return channel: read a portal's own mailbox and hand the authorities' replies to the portal.

One ``ReplyPoller`` per configured mailbox (``[mailboxes.<portal>]``). One cycle::

    pending(batch) -> for each id: fetch (verified + decrypted by the mailbox)
        -> usable?  message type configured, hardened parse, schema valid
           yes: publish to hub.replies (routing key = portal, mandatory, confirmed)
                -> reply_received status event (best effort)
           no:  park in hub.replies.parked with the reason (mandatory, confirmed)
        -> commit (XTA close) only after the confirm

A crash anywhere before the commit leaves the reply in the mailbox: it is fetched and published
again, with the same AMQP ``message_id`` (the reply's XTA MessageID), so portals drop duplicates by
it. Nothing is committed that is not safely in the broker; nothing is dropped. The poller never
raises. Only a fault of the reply itself parks it (what the mailbox reported as ``problem``, or a
``MessageError`` of the checks); trouble of ours (a ``ConfigError``, a bug) never does.

Trouble is sorted by whose it is (hub/reply_failures.py): the endpoint unreachable or the broker
ends the cycle; anything else while handling one reply is that reply's: it stays in the mailbox
and the cycle goes on with the next id, so one reply that never works cannot block the others.
Either way: one log line, a metric; a cycle in which nothing succeeded backs off exponentially
(capped at four poll intervals). Logs, events and metrics carry ids, reasons and sizes, never content.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import pika
from lxml import etree
from prometheus_client import CollectorRegistry, Counter, Gauge

from adapters.base import FetchedReply, ReplyMailbox
from hub.config import DESTINATION_PATTERN
from hub.envelope import CONTENT_TYPE, Envelope
from hub.errors import MessageError, ProtocolError, UnknownMessageType
from hub.failures import error_reason, safe_error_text
from hub.health import STALL_AFTER, Heartbeat
from hub.limits import SizeLimits, check_content_size
from hub.logs import log_context
from hub.reply_failures import STUCK_AFTER, FailureCounts, ends_cycle, where
from hub.status import REPLY_RECEIVED, StatusEvent, event_id_for
from hub.topology import REPLIES_EXCHANGE, REPLIES_PARKED, STATUS_EXCHANGE
from schemas.registry import SchemaRegistry
from transport.security.xml import parse_xml

log = logging.getLogger(__name__)

APP_ID = "xoev-hub"
REPLY_TYPE = "hub.reply"
H_PORTAL = "x-hub-portal"
H_AUTHORITY = "x-hub-authority"
H_MESSAGE_TYPE = "x-message-type"
H_APPLICATION_REF = "x-hub-application-ref"
H_REPLY_UUID = "x-hub-reply-uuid"
H_XTA_MESSAGE_ID = "x-hub-xta-message-id"
H_REASON = "x-hub-reason"
H_ERROR_CLASS = "x-hub-error-class"
H_ERROR_MESSAGE = "x-hub-error-message"

_MAX_ID = 200  # ids are ids: anything longer (or with control characters) is not used as one
_MAX_MESSAGE_ID_BYTES = 200  # AMQP message_id is a short string (<= 255 bytes)


class ConfirmedPublisher(Protocol):
    """What the poller needs of a publisher (``hub.publisher.ResilientPublisher``)."""

    @property
    def is_open(self) -> bool: ...

    def publish_and_wait(self, exchange: str, routing_key: str, body: bytes, properties: pika.BasicProperties,
                         *, mandatory: bool = False, timeout: float = 30.0, deadline: float = 300.0) -> None: ...


class ReplyMetrics:
    """Return-channel metrics of one process (catalogue: docs/metrics.md); labels are portal ids,
    outcomes, results and reason slugs only."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.replies = Counter("hub_replies", "Replies taken from a mailbox, by outcome (published, parked)",
                               ["portal", "outcome"], registry=registry)
        self.parked = Counter("hub_replies_parked", "Replies parked in hub.replies.parked, by reason",
                              ["portal", "reason"], registry=registry)
        self.polls = Counter("hub_mailbox_polls", "Mailbox polls by result (replies, empty, failed)",
                             ["portal", "result"], registry=registry)
        self.errors = Counter("hub_mailbox_errors", "Endpoint or broker trouble of the return channel, by reason",
                              ["portal", "reason"], registry=registry)
        self.stuck = Gauge("hub_mailbox_stuck_replies",
                           f"Replies that failed {STUCK_AFTER} or more polls in a row (they stay in the mailbox)",
                           ["portal"], registry=registry)


@dataclass(frozen=True)
class ReplyIds:
    """The ids a usable reply carries (XAusländer antragsidentifikation, nachrichtenUUID)."""

    application_ref: str | None
    reply_uuid: str | None


@dataclass(frozen=True)
class CycleResult:
    """What one poll did: ``handled`` replies published or parked and committed; ``failed`` when
    the endpoint or the broker got in the way, or when no listed reply could be handled (the caller
    backs off)."""

    handled: int = 0
    listed: int = 0
    failed: bool = False


class _Trouble(Exception):
    """Internal: endpoint or broker trouble that ends a cycle (already logged and counted)."""


class _Skip(Exception):
    """Internal: trouble with one reply only; it stays in the mailbox, the cycle goes on (logged, counted)."""


def clean_id(value: str | None) -> str | None:
    """``value`` stripped, if it looks like an id (short, printable); else None."""
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > _MAX_ID or not text.isprintable():
        return None
    return text


def amqp_message_id(transport_message_id: str) -> str:
    """The reply's stable AMQP message_id: its XTA MessageID, or a hash of it if that is too long
    for an AMQP short string (stable either way, so duplicates stay recognisable)."""
    if len(transport_message_id.encode("utf-8")) <= _MAX_MESSAGE_ID_BYTES and transport_message_id.isprintable():
        return transport_message_id
    return "xta-sha256:" + hashlib.sha256(transport_message_id.encode("utf-8", "replace")).hexdigest()


def reply_ids(document: etree._Element) -> ReplyIds:
    """antragsidentifikation (top level) and nachrichtenUUID (message head) of a reply."""
    ref = document.find("{*}antragsidentifikation")
    uuid_el = document.find("{*}nachrichtenkopf.g2g/{*}identifikation.nachricht/{*}nachrichtenUUID")
    if uuid_el is None:
        uuid_el = document.find(".//{*}nachrichtenUUID")
    return ReplyIds(clean_id(ref.text if ref is not None else None),
                    clean_id(uuid_el.text if uuid_el is not None else None))


def park_reason(error: BaseException) -> str:
    """The reason slug a parked reply carries (header, metric label)."""
    if isinstance(error, ProtocolError):
        return "reply_protocol"
    return error_reason(error)


class ReplyPoller:
    """Polls one mailbox until ``stop()``; ``poll_once``/``drain`` for a single pass. Not shared
    between threads: one poller (and one mailbox) per thread; the publisher may be shared."""

    def __init__(self, portal: str, mailbox: ReplyMailbox, publisher: ConfirmedPublisher,
                 registry: SchemaRegistry, message_types: Iterable[str], limits: SizeLimits,
                 metrics: ReplyMetrics, *, poll_interval: float = 30.0, batch: int = 50,
                 publish_timeout: float = 30.0, publish_deadline: float = 30.0,
                 stall_after: float = STALL_AFTER) -> None:
        self.portal = portal
        self.mailbox = mailbox
        self.publisher = publisher
        self.registry = registry
        self.message_types = frozenset(message_types)
        self.limits = limits
        self.metrics = metrics
        self.poll_interval = poll_interval
        self.batch = batch
        self.publish_timeout = publish_timeout
        self.publish_deadline = publish_deadline
        self.max_backoff = poll_interval * 4
        self.last_poll_ok: bool | None = None  # None until the first poll finished
        self._stop = threading.Event()
        # /healthz: ticks on every turn, every reply and every few seconds of a wait; a single
        # mailbox or broker call may legitimately take up to its timeout, so ``stall_after`` covers one
        self.heartbeat = Heartbeat(f"mailbox poller {portal}", stall_after=stall_after)
        self._failing = FailureCounts(portal, metrics.stuck)
        for outcome in ("published", "parked"):
            metrics.replies.labels(portal, outcome)
        for result in ("replies", "empty", "failed"):
            metrics.polls.labels(portal, result)

    # --- lifecycle -----------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Poll until ``stop()``: at once again after replies, ``poll_interval`` after an empty
        mailbox, an exponential back-off (capped at 4 poll intervals) after trouble."""
        backoff = 0.0
        while not self._stop.is_set():
            self.heartbeat.tick()
            result = self.poll_once()
            if result.failed:
                backoff = min(max(backoff * 2, min(1.0, self.max_backoff)), self.max_backoff)
                self._wait(backoff)
                continue
            backoff = 0.0
            if result.handled == 0:
                self._wait(self.poll_interval)

    def _wait(self, seconds: float) -> None:
        """Wait until ``stop()`` or ``seconds`` passed, ticking the heartbeat every 5 s, or more often
        under a shorter stall limit (a poll interval may be longer than the stall limit)."""
        step = min(5.0, self.heartbeat.stall_after / 4)
        left = seconds
        while left > 0 and not self._stop.is_set():
            chunk = min(left, step)
            if self._stop.wait(chunk):
                return
            self.heartbeat.tick()
            left -= chunk

    def drain(self) -> bool:
        """Poll until the mailbox has nothing more to hand out (``--once``); False on trouble."""
        while not self._stop.is_set():
            result = self.poll_once()
            if result.failed:
                return False
            if result.handled == 0:
                return True
        return True

    # --- one cycle -----------------------------------------------------------------------------
    def poll_once(self) -> CycleResult:
        """One pass over up to ``batch`` pending replies (plus those failing so far: they do not use
        up the batch); never raises."""
        asked = self.batch + len(self._failing)
        try:
            ids = self.mailbox.pending(asked)
        except Exception as exc:  # noqa: BLE001 - endpoint trouble (or a bug): never kill the poller
            self._failure("listing the mailbox", exc)
            return self._finish(CycleResult(failed=True))
        if len(ids) < asked:  # the whole mailbox was listed: what is not in it has left
            self._failing.keep_only({amqp_message_id(i) for i in ids})
        handled = skipped = 0
        trouble = False
        for transport_id in ids:
            if self._stop.is_set():
                break
            self.heartbeat.tick()
            try:
                with log_context(message_id=amqp_message_id(transport_id)):  # every line of it (hub/logs.py)
                    if self._handle(transport_id):
                        handled += 1
                self._failing.succeeded(amqp_message_id(transport_id))
            except _Skip as skip:
                skipped += 1
                key = amqp_message_id(transport_id)
                self._failing.failed(key, clean_id(transport_id) or key, str(skip))
            except _Trouble:
                trouble = True
                break
        self._failing.publish()
        if trouble or (skipped and not handled):
            return self._finish(CycleResult(handled, len(ids), failed=True))
        self.metrics.polls.labels(self.portal, "replies" if ids else "empty").inc()
        self.last_poll_ok = True
        return CycleResult(handled, len(ids))

    def _finish(self, result: CycleResult) -> CycleResult:
        self.metrics.polls.labels(self.portal, "failed").inc()
        self.last_poll_ok = False
        return result

    def _handle(self, transport_id: str) -> bool:
        """Fetch, publish or park, commit one reply; True if it was committed. Raises _Trouble or _Skip."""
        try:
            reply = self.mailbox.fetch(transport_id)
        except Exception as exc:  # noqa: BLE001
            raise self._failure(f"fetching reply {clean_id(transport_id) or '(bad id)'}", exc) from None
        if reply is None:  # left the mailbox meanwhile (another poller took it)
            return False
        try:
            problem, ids = self._examine(reply)
        except Exception as exc:  # noqa: BLE001 - our trouble, not the reply's: never parked, read again
            raise self._failure(f"checking reply {self._log_id(reply)} (not parked: the trouble is ours)",
                                exc) from None
        try:
            if problem is None:
                self._publish(reply, ids)
            else:
                self._park(reply, problem)
        except Exception as exc:  # noqa: BLE001 - not confirmed: keep it in the mailbox, fetch it again
            raise self._failure(f"publishing reply {self._log_id(reply)} (not closed, fetched again later)",
                                exc) from None
        outcome = "published" if problem is None else "parked"
        self.metrics.replies.labels(self.portal, outcome).inc()
        if problem is None:
            self._status_event(reply, ids)
        try:
            self.mailbox.commit(reply)
        except Exception as exc:  # noqa: BLE001 - it stays in the mailbox: a duplicate later, never a loss
            raise self._failure(f"closing reply {self._log_id(reply)} (it will be fetched again)", exc) from None
        log.info("reply %s from %s for portal %s %s%s", self._log_id(reply), _authority(reply.author), self.portal,
                 outcome, "" if problem is None else f" ({park_reason(problem)})", extra={"outcome": outcome})
        return True

    def _examine(self, reply: FetchedReply) -> tuple[BaseException | None, ReplyIds]:
        """(why to park it, or None; its ids). Only a fault of the reply parks it: the problem the
        mailbox reported, or a ``MessageError`` of the checks; anything else (a ConfigError, a
        KeyStoreError, a bug of ours) raises: the reply stays in the mailbox and is read again."""
        none = ReplyIds(None, None)
        if reply.problem is not None:
            return reply.problem, none
        if reply.content is None:
            return ProtocolError("reply without content"), none
        if reply.message_type not in self.message_types:
            return UnknownMessageType(
                f"message type '{clean_id(reply.message_type) or '(not an id)'}' is not one of the mailbox's "
                "message_types"), none
        try:
            content = reply.content
            check_content_size(content.size, len(content.parts), reply.message_type, self.limits)
            document = parse_xml(content.message.data, self.limits.xml_limits(reply.message_type))
            self.registry.validate(reply.message_type, document)
            return None, reply_ids(document)
        except MessageError as exc:  # XmlRejected, SchemaViolation, ContentTooLarge, UnknownMessageType
            return exc, none

    # --- broker --------------------------------------------------------------------------------
    def _headers(self, reply: FetchedReply) -> dict[str, Any]:
        headers: dict[str, Any] = {H_PORTAL: self.portal, H_AUTHORITY: _authority(reply.author),
                                   H_XTA_MESSAGE_ID: _clip(reply.transport_message_id)}
        message_type = clean_id(reply.message_type)
        if message_type:
            headers[H_MESSAGE_TYPE] = message_type
        return headers

    def _properties(self, reply: FetchedReply, headers: dict[str, Any], content_type: str) -> pika.BasicProperties:
        return pika.BasicProperties(
            message_id=amqp_message_id(reply.transport_message_id), app_id=APP_ID, type=REPLY_TYPE,
            content_type=content_type, delivery_mode=pika.DeliveryMode.Persistent, timestamp=int(time.time()),
            headers=headers)

    def _publish(self, reply: FetchedReply, ids: ReplyIds) -> None:
        assert reply.content is not None  # _examine let it through
        headers = self._headers(reply)
        if ids.application_ref:
            headers[H_APPLICATION_REF] = ids.application_ref
        if ids.reply_uuid:
            headers[H_REPLY_UUID] = ids.reply_uuid
        body = Envelope(message_id=amqp_message_id(reply.transport_message_id), destination=_authority(reply.author),
                        message_type=reply.message_type, content=reply.content, portal=self.portal).body()
        self.publisher.publish_and_wait(REPLIES_EXCHANGE, self.portal, body,
                                        self._properties(reply, headers, CONTENT_TYPE), mandatory=True,
                                        timeout=self.publish_timeout, deadline=self.publish_deadline)

    def _park(self, reply: FetchedReply, problem: BaseException) -> None:
        reason = park_reason(problem)
        headers = {**self._headers(reply), H_REASON: reason, H_ERROR_CLASS: type(problem).__name__,
                   H_ERROR_MESSAGE: safe_error_text(problem)}
        self.publisher.publish_and_wait("", REPLIES_PARKED, reply.raw,
                                        self._properties(reply, headers, "application/xml"), mandatory=True,
                                        timeout=self.publish_timeout, deadline=self.publish_deadline)
        self.metrics.parked.labels(self.portal, reason).inc()
        log.warning("reply %s for portal %s parked: %s", self._log_id(reply), self.portal, reason)

    def _status_event(self, reply: FetchedReply, ids: ReplyIds) -> None:
        """reply_received, linked by antragsidentifikation; best effort (the reply is safe already)."""
        if not ids.application_ref:  # nothing to link it by: the tracker could not place it
            log.info("reply %s names no antragsidentifikation: no reply_received event", self._log_id(reply))
            return
        destination = reply.author if DESTINATION_PATTERN.match(reply.author or "") else "unknown"
        event = StatusEvent(
            message_id="", event=REPLY_RECEIVED, portal=self.portal, destination=destination,
            transport_message_id=_clip(reply.transport_message_id), application_ref=ids.application_ref,
            event_id=event_id_for(REPLY_RECEIVED, reply.transport_message_id),
            detail={"reply_id": _clip(reply.transport_message_id), "message_type": reply.message_type,
                    "reply_uuid": ids.reply_uuid})
        try:
            self.publisher.publish_and_wait(STATUS_EXCHANGE, event.routing_key, event.body(), event.properties(),
                                            timeout=10, deadline=30)
        except Exception as exc:  # noqa: BLE001
            log.warning("reply_received event for reply %s not published: %s", self._log_id(reply),
                        safe_error_text(exc))

    # --- helpers -------------------------------------------------------------------------------
    def _failure(self, doing: str, exc: BaseException) -> _Trouble | _Skip:
        """Log and count ``exc``; _Trouble if it ends the cycle, _Skip if it is this reply's alone."""
        reason = error_reason(exc)
        self.metrics.errors.labels(self.portal, reason).inc()
        if ends_cycle(exc):
            log.warning("mailbox %s: %s failed: %s", self.portal, doing, safe_error_text(exc))
            return _Trouble(reason)
        log.warning("mailbox %s: %s failed: %s%s; it stays in the mailbox, going on with the next reply",
                    self.portal, doing, safe_error_text(exc), where(exc))
        return _Skip(reason)

    @staticmethod
    def _log_id(reply: FetchedReply) -> str:
        return clean_id(reply.transport_message_id) or amqp_message_id(reply.transport_message_id)


def _clip(text: str) -> str:
    """An id from the far side, bounded for headers and events."""
    return text if len(text) <= _MAX_ID else text[:_MAX_ID]


def _authority(author: str | None) -> str:
    return clean_id(author) or "unknown"

