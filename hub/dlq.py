"""Operator access to the dead-letter queue: list, show, replay, purge.

AMQP has no "peek": browsing takes messages unacked and returns them by closing the channel, so
the queue is unchanged afterwards. Replay publishes a message to the checked inbound exchange
(same ``message_id``, hub failure headers stripped, mandatory, confirmed) and acks it in the DLQ
only after the broker confirmed the copy. Interrupted at any point, a message is therefore either
still in the DLQ, or both in the DLQ and back in its adapter queue (the worker's ledger keeps the
receiver from seeing it twice) — never lost.
"""

from __future__ import annotations

import builtins
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pika

from hub.broker import connect
from hub.config import BrokerConfig
from hub.envelope import copy_properties
from hub.envelope_v2 import MAGIC, describe_parts
from hub.errors import BrokerError, HubError, UnknownDestination
from hub.failures import clean_headers, header_int
from hub.publisher import ResilientPublisher
from hub.status import REPLAYED, StatusEvent
from hub.topology import DEAD_QUEUE, INBOUND_CHECKED
from hub.worker_events import MessageIds, clip_id

log = logging.getLogger(__name__)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class DeadLetter:
    """What an operator needs to decide about one dead letter (ids and reasons, no payload)."""

    message_id: str
    portal: str
    adapter: str | None
    destination: str | None
    reason: str
    error_class: str | None
    error_message: str | None
    xta_code: str | None
    attempts: int
    first_failure: float | None
    last_failure: float | None
    size: int

    @classmethod
    def from_amqp(cls, props: pika.BasicProperties, body: bytes) -> DeadLetter:
        h = props.headers or {}
        reason = _text(h.get("x-hub-reason"))
        adapter = _text(h.get("x-hub-adapter"))
        last_ms = header_int(h, "x-hub-last-failure", -1)
        last: float | None = last_ms / 1000 if last_ms >= 0 else None
        if reason is None:  # dead-lettered by the broker itself (delivery limit = poison message)
            reason = _text(h.get("x-first-death-reason")) or "unknown"
            queue = _text(h.get("x-first-death-queue")) or ""
            adapter = queue.removeprefix("hub.deliver.") if queue.startswith("hub.deliver.") else adapter
            deaths = h.get("x-death") or []
            when = deaths[0].get("time") if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else None
            if isinstance(when, datetime):
                last = when.timestamp()
        return cls(
            message_id=_text(props.message_id) or "?",
            portal=_text(props.app_id) or "?",
            adapter=adapter,
            destination=_text(h.get("x-hub-destination")) or _text(h.get("x-destination")),
            reason=reason,
            error_class=_text(h.get("x-hub-error-class")),
            error_message=_text(h.get("x-hub-error-message")),
            xta_code=_text(h.get("x-hub-xta-code")),
            attempts=header_int(h, "x-hub-attempts", header_int(h, "x-delivery-count", 0)),
            first_failure=first_ms / 1000 if (first_ms := header_int(h, "x-hub-first-failure", -1)) >= 0 else None,
            last_failure=last,
            size=len(body),
        )

    def age(self, now: float | None = None) -> float | None:
        return None if self.last_failure is None else (now or time.time()) - self.last_failure

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DeadLetterFilter:
    adapter: str | None = None
    destination: str | None = None
    reason: str | None = None
    older_than: float | None = None  # seconds
    message_id: str | None = None

    def matches(self, d: DeadLetter, now: float | None = None) -> bool:
        if self.message_id is not None and d.message_id != self.message_id:
            return False
        if self.adapter is not None and d.adapter != self.adapter:
            return False
        if self.destination is not None and d.destination != self.destination:
            return False
        if self.reason is not None and d.reason != self.reason:
            return False
        if self.older_than is not None:
            age = d.age(now)
            if age is None or age < self.older_than:
                return False
        return True


def replay_properties(props: pika.BasicProperties) -> pika.BasicProperties:
    """The original properties, minus what the hub and the broker added on failure."""
    return copy_properties(props, clean_headers(props.headers or {}))


class DeadLetterQueue:
    """One session on the DLQ; every method leaves non-selected messages in place."""

    def __init__(self, config: BrokerConfig, queue: str = DEAD_QUEUE) -> None:
        self._config = config
        self.queue = queue

    def _take_all(self, channel: Any) -> Iterator[tuple[int, pika.BasicProperties, bytes]]:
        depth = channel.queue_declare(self.queue, passive=True).method.message_count
        for _ in range(depth):
            method, props, body = channel.basic_get(self.queue, auto_ack=False)
            if method is None:
                return
            yield method.delivery_tag, props, body

    def list(self, flt: DeadLetterFilter = DeadLetterFilter()) -> list[DeadLetter]:
        connection = connect(self._config, "hub-dlq")
        try:
            channel = connection.channel()
            now = time.time()
            found = [d for _t, p, b in self._take_all(channel) if (d := DeadLetter.from_amqp(p, b)) and flt.matches(d, now)]
        finally:
            connection.close()  # returns every message we took
        return found

    def show(self, message_id: str) -> builtins.list[tuple[DeadLetter, dict[str, Any]]]:
        """Dead letters with that id, with their headers and an envelope summary (no content)."""
        connection = connect(self._config, "hub-dlq")
        try:
            channel = connection.channel()
            out = []
            for _t, props, body in self._take_all(channel):
                if _text(props.message_id) == message_id:
                    out.append((DeadLetter.from_amqp(props, body), {"headers": _plain(props.headers or {}),
                                                                     "parts": _parts_summary(body)}))
        finally:
            connection.close()
        return out

    def replay(self, flt: DeadLetterFilter, *, on_progress: Callable[[DeadLetter, str], None] | None = None) -> dict[str, int]:
        """Republish matching dead letters; returns counts: replayed, unroutable, skipped."""
        counts = {"replayed": 0, "unroutable": 0, "skipped": 0}
        connection = connect(self._config, "hub-dlq-replay")
        publisher = ResilientPublisher(self._config, "hub-dlq-replay")
        try:
            channel = connection.channel()
            now = time.time()
            for tag, props, body in self._take_all(channel):
                dead = DeadLetter.from_amqp(props, body)
                if not flt.matches(dead, now):
                    counts["skipped"] += 1
                    continue
                destination = dead.destination or ""
                # stamped before the copy goes out: the worker's next "accepted" is later in any timeline
                event = replayed_event(props, dead)
                try:
                    publisher.publish_and_wait(INBOUND_CHECKED, destination, body, replay_properties(props),
                                               mandatory=True, deadline=60)
                except UnknownDestination:
                    counts["unroutable"] += 1
                    if on_progress:
                        on_progress(dead, "unroutable")
                    continue
                channel.basic_ack(tag)  # only after the copy is confirmed
                counts["replayed"] += 1
                try:
                    if event is not None:
                        publisher.publish_and_wait(event.exchange, event.routing_key, event.body(),
                                                   event.properties(), deadline=10)
                except BrokerError as exc:  # the replay itself is done; the event is informational
                    log.warning("replayed %s but its status event was not published: %s", dead.message_id, exc)
                if on_progress:
                    on_progress(dead, "replayed")
        finally:
            publisher.close()
            connection.close()
        return counts

    def purge(self, flt: DeadLetterFilter) -> int:
        connection = connect(self._config, "hub-dlq-purge")
        removed = 0
        try:
            channel = connection.channel()
            now = time.time()
            for tag, props, body in self._take_all(channel):
                if flt.matches(DeadLetter.from_amqp(props, body), now):
                    channel.basic_ack(tag)
                    removed += 1
        finally:
            connection.close()
        return removed


def replayed_event(props: pika.BasicProperties, dead: DeadLetter) -> StatusEvent | None:
    """The ``replayed`` status event of a dead letter, its ids built as the worker builds them
    (hub/worker_events.py); None without a message id (there is no application to attribute it to)."""
    ids = MessageIds.of(props.message_id, props.app_id, dead.destination, props.correlation_id)
    if not ids.message_id:
        return None
    reason = clip_id(dead.reason)
    return StatusEvent(ids.message_id, REPLAYED, ids.portal, ids.destination, clip_id(dead.adapter) or None,
                       detail={"previous_reason": reason}, reason=reason, correlation_id=ids.correlation_id)


def _plain(headers: dict[str, Any]) -> dict[str, Any]:
    plain: dict[str, Any] = json.loads(json.dumps(headers, default=str))
    return plain


def _parts_summary(body: bytes) -> list[dict[str, Any]]:
    if body.startswith(MAGIC):  # envelope version 2: the preamble says it (nothing is hashed here)
        try:
            return [{k: p.get(k) for k in ("filename", "content_type", "size", "sha256")} for p in describe_parts(body)]
        except HubError:
            return [{"unparsable_body_bytes": len(body)}]
    try:
        doc = json.loads(body)
        parts = [doc["message"], *doc.get("attachments", [])]
        return [{k: p.get(k) for k in ("filename", "content_type", "size", "sha256")} for p in parts]
    except (ValueError, KeyError, TypeError, AttributeError):
        return [{"unparsable_body_bytes": len(body)}]
