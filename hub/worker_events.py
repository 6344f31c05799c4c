"""The status events of an adapter worker, built from the message's AMQP properties.

``accepted`` and ``delivering`` are informational and published without waiting for the broker's
confirm (no extra round trip per delivery, pitfall 13); the outcomes (``delivered``,
``retry_scheduled``, ``dead_lettered``) wait for it as before. Neither kind may fail a delivery: the
message's outcome is safe by other means, so a lost event is logged and counted
(``hub_status_events_failed_total``), never raised.

The properties are the portal's, i.e. untrusted: every id is clipped so that the event stays a valid
status event (ids of at most 200 characters) and its routing key an AMQP short string.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pika
from prometheus_client import Counter

from hub.failures import H_ATTEMPT, header_int
from hub.publisher import ResilientPublisher
from hub.status import StatusEvent

log = logging.getLogger(__name__)

_MAX_ID = 200
_MAX_KEY_PART = 100  # bytes: portal + event + destination stay below the 255-byte routing key limit


def _clip(value: Any, limit: int = _MAX_ID) -> str:
    if value is None:
        return ""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text[:limit]


def _clip_bytes(text: str, limit: int = _MAX_KEY_PART) -> str:
    return text.encode()[:limit].decode("utf-8", "ignore")


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
    def from_properties(cls, props: pika.BasicProperties, ladder_length: int) -> MessageIds:
        headers = props.headers or {}
        destination = headers.get("x-destination")
        return cls(
            message_id=_clip(props.message_id),
            portal=_clip_bytes(_clip(props.app_id)) or "unknown",
            destination=_clip_bytes(_clip(destination)) if isinstance(destination, (str, bytes)) else "unknown",
            correlation_id=_clip(props.correlation_id) or None,
            attempt=attempt_of(headers, ladder_length),
        )


@dataclass
class Progress:
    """What the pipeline told us on its way (filled by the ``delivering`` callback)."""

    transport_message_id: str | None = None
    application_ref: str | None = None


class WorkerEvents:
    """Builds and publishes one adapter worker's status events; thread-safe (the publisher is)."""

    def __init__(self, adapter: str, publisher: Callable[[], ResilientPublisher], failed: Counter) -> None:
        self.adapter = adapter
        self._publisher = publisher
        self._failed = failed

    def event(self, ids: MessageIds, event: str, *, progress: Progress | None = None, reason: str | None = None,
              detail: dict[str, Any] | None = None, transport_message_id: str | None = None,
              at: float | None = None) -> StatusEvent:
        """One event of this delivery attempt; ``at`` (default now) is when it happened."""
        progress = progress or Progress()
        return StatusEvent(
            ids.message_id, event, ids.portal, ids.destination, self.adapter, at=time.time() if at is None else at,
            detail=detail or {},
            correlation_id=ids.correlation_id, attempt=ids.attempt, reason=reason,
            transport_message_id=_clip(transport_message_id or progress.transport_message_id) or None,
            application_ref=_clip(progress.application_ref) or None)

    def publish_nowait(self, event: StatusEvent) -> None:
        """Publish an informational event without waiting for its confirm."""
        if not event.message_id:  # nothing to attribute it to (the message is dead-lettered for it)
            return
        self._publisher().publish_nowait(event.exchange, event.routing_key, event.body(), event.properties(),
                                         on_failure=lambda error: self._lost(event, error))

    def publish(self, event: StatusEvent) -> None:
        """Publish an outcome event and wait for the confirm (bounded); a failure is logged and counted."""
        if not event.message_id:
            return
        try:
            self._publisher().publish_and_wait(event.exchange, event.routing_key, event.body(), event.properties(),
                                               timeout=10, deadline=30)
        except Exception as exc:  # noqa: BLE001 - the outcome is safe already; a redelivery would not help
            self._lost(event, exc)

    def _lost(self, event: StatusEvent, error: BaseException) -> None:
        self._failed.labels(self.adapter, event.event).inc()
        log.warning("status event %s for %s not published: %s", event.event, event.message_id,
                    type(error).__name__ if not str(error) else error)
