"""Status events: what happened to an application, published to the ``hub.status`` exchange.

Routing key ``<portal>.<event>.<destination>`` (dots in the portal id become '_') so that a portal
can bind its own queue (``my-portal.#``) and ops can bind ``*.dead_lettered.#``. The body is JSON
with ids, times and reasons only, never payload content (docs/asyncapi.yaml, ``StatusEvent``).

The life of an application, in the order the events normally happen::

    accepted -> delivering -> delivered -> transport_report (-> reply_received ...)
             \\-> retry_scheduled -> accepted (next attempt) ...
             \\-> dead_lettered -> replayed -> accepted ...

Each event has an ``event_id``: the same event published twice (a publish retried after a lost
confirm, a redelivered status message) carries the same id, so a consumer (the tracker) stores it
once. ``PRECEDENCE`` orders events that carry the same time stamp, so a timeline and the current
state do not depend on the order in which events arrive.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pika

from hub.errors import EnvelopeError
from hub.topology import STATUS_EXCHANGE

ACCEPTED = "accepted"
DELIVERING = "delivering"
DELIVERED = "delivered"
RETRY_SCHEDULED = "retry_scheduled"
DEAD_LETTERED = "dead_lettered"
REPLAYED = "replayed"
TRANSPORT_REPORT = "transport_report"
TRANSPORT_REPORT_TIMEOUT = "transport_report_timeout"
REPLY_RECEIVED = "reply_received"

# Tie-break for events with the same time stamp (and the order of a normal life): higher = later.
PRECEDENCE: dict[str, int] = {
    ACCEPTED: 10,
    DELIVERING: 20,
    RETRY_SCHEDULED: 30,
    DEAD_LETTERED: 40,
    DELIVERED: 50,
    REPLAYED: 60,
    TRANSPORT_REPORT: 70,
    TRANSPORT_REPORT_TIMEOUT: 70,
    REPLY_RECEIVED: 80,
}
EVENTS = frozenset(PRECEDENCE)
# Events that set an application's current state (the others add to its timeline only).
STATE_EVENTS = frozenset({ACCEPTED, DELIVERING, RETRY_SCHEDULED, DEAD_LETTERED, DELIVERED, REPLAYED})

SCHEMA_VERSION = 1
# A status batch: several events of one portal in one message (hub.config.StatusConfig). The
# events are the same objects as single events' bodies; the message is accepted or refused whole.
BATCH_CONTENT_TYPE = "application/vnd.xoev-hub.status-batch+json"
BATCH = "batch"  # the event word of a batch's routing key: <portal>.batch
MAX_BATCH_EVENTS = 500
_EVENT_NAMESPACE = uuid.UUID("6f1c8d2e-3b7a-4f57-9a51-0d6c1e2f9b40")
_MAX_ID = 200  # ids are ids: anything longer is not one
# 'at' must be a plausible time: no event of this hub happened before 2000-01-01, and none comes
# from more than a day ahead (clock skew); a millisecond stamp (1.7e12) would sort first forever
EARLIEST_AT = 946_684_800.0  # 2000-01-01T00:00:00Z
MAX_FUTURE = 86_400.0  # seconds
_MAX_DETAIL_DEPTH = 32  # nesting of 'detail' (its records are two or three levels deep)


class InvalidStatusEvent(EnvelopeError):
    """A message on hub.status that is not a status event of this contract (permanent)."""

    reason = "invalid_status_event"


def event_id_for(*parts: object) -> str:
    """A stable event id from the parts that make an event unique (same parts, same id)."""
    return str(uuid.uuid5(_EVENT_NAMESPACE, "|".join("" if p is None else repr(p) for p in parts)))


@dataclass(frozen=True)
class StatusEvent:
    """One state change of one application (or a reply to it).

    ``message_id`` is the application's id (its nachrichtenUUID); a ``reply_received`` event whose
    reply names no application id carries ``""`` and ``application_ref`` instead (the XAusländer
    ``antragsidentifikation``), by which the tracker links it. ``attempt`` counts deliveries (1 =
    first). ``reason`` is the low-cardinality failure slug of retry_scheduled / dead_lettered.
    """

    message_id: str
    event: str
    portal: str
    destination: str
    adapter: str | None = None
    at: float = field(default_factory=time.time)
    detail: dict[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None
    transport_message_id: str | None = None
    attempt: int | None = None
    reason: str | None = None
    application_ref: str | None = None
    event_id: str = ""
    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not self.event_id:
            object.__setattr__(self, "event_id", event_id_for(
                self.message_id, self.event, self.at, self.attempt, self.transport_message_id, self.portal))

    @property
    def routing_key(self) -> str:
        return f"{self.portal.replace('.', '_')}.{self.event}.{self.destination}"

    @property
    def precedence(self) -> int:
        return PRECEDENCE.get(self.event, 0)

    def body(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    def properties(self) -> pika.BasicProperties:
        return pika.BasicProperties(
            message_id=self.event_id, correlation_id=self.message_id or None, content_type="application/json",
            delivery_mode=2, timestamp=int(self.at), type=f"hub.status.{self.event}")

    @classmethod
    def from_body(cls, body: bytes, *, now: float | None = None) -> StatusEvent:
        """Parse and check one event; ``InvalidStatusEvent`` names what is wrong. Unknown keys are
        ignored (a newer producer may add some); the body is never echoed into the error. Any
        failure while parsing (a body nested too deep for the parser, say) is an invalid event:
        a consumer can dead-letter it instead of dying on it."""
        try:
            return cls._parse(body, time.time() if now is None else now)
        except InvalidStatusEvent:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. RecursionError of a deeply nested body: invalid too
            raise InvalidStatusEvent(f"status event cannot be parsed ({type(exc).__name__}, "
                                     f"{len(body)} bytes)") from None

    @classmethod
    def _parse(cls, body: bytes, now: float) -> StatusEvent:
        try:
            raw = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise InvalidStatusEvent(f"status event is not JSON ({len(body)} bytes)") from None
        return cls._from_raw(raw, now)

    @classmethod
    def _from_raw(cls, raw: Any, now: float) -> StatusEvent:
        if not isinstance(raw, dict):
            raise InvalidStatusEvent("status event is not a JSON object")
        values: dict[str, Any] = {}
        for name in ("message_id", "event", "portal", "destination"):
            values[name] = _text(raw, name, required=True)
        for name in ("adapter", "correlation_id", "transport_message_id", "reason", "application_ref", "event_id"):
            if raw.get(name) is not None:
                values[name] = _text(raw, name)
        if values["event"] not in EVENTS:
            # not echoed: an unknown name is unknown text (the error goes to logs and dead-letter headers)
            raise InvalidStatusEvent(f"unknown status event ({len(values['event'])} characters)")
        if not values["message_id"] and not (values["event"] == REPLY_RECEIVED and values.get("application_ref")):
            raise InvalidStatusEvent("status event without message_id")
        at = raw.get("at")
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
            raise InvalidStatusEvent("status event 'at' is not a time stamp")
        if not EARLIEST_AT <= at <= now + MAX_FUTURE:
            raise InvalidStatusEvent("status event 'at' is not a time stamp in epoch seconds between 2000-01-01 "
                                     "and one day from now")
        values["at"] = float(at)
        attempt = raw.get("attempt")
        if attempt is not None:
            if isinstance(attempt, bool) or not isinstance(attempt, int) or not 0 <= attempt < 1_000_000:
                raise InvalidStatusEvent("status event 'attempt' is not a count")
            values["attempt"] = attempt
        detail = raw.get("detail", {})
        if not isinstance(detail, dict):
            raise InvalidStatusEvent("status event 'detail' is not an object")
        if _depth(detail) > _MAX_DETAIL_DEPTH:
            raise InvalidStatusEvent(f"status event 'detail' is nested deeper than {_MAX_DETAIL_DEPTH} levels")
        values["detail"] = detail
        version = raw.get("version", SCHEMA_VERSION)
        if not isinstance(version, int) or isinstance(version, bool):
            raise InvalidStatusEvent("status event 'version' is not a number")
        values["version"] = version
        return cls(**values)

    exchange = STATUS_EXCHANGE


def _text(raw: dict[str, Any], name: str, *, required: bool = False) -> str:
    value = raw.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise InvalidStatusEvent(f"status event field '{name}' is {'missing' if value is None else 'not text'}")
    if len(value) > _MAX_ID:
        raise InvalidStatusEvent(f"status event field '{name}' is longer than {_MAX_ID} characters")
    return value


def _depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (iteratively: no recursion on hostile input)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > _MAX_DETAIL_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def batch_message(events: Sequence[StatusEvent]) -> tuple[str, bytes, pika.BasicProperties]:
    """(routing key, body, properties) of one batch message carrying ``events`` (all of one portal,
    at most MAX_BATCH_EVENTS). Its ``message_id`` is derived from the events' ids: a batch published
    again carries the same id, and the tracker skips its events as duplicates anyway."""
    if not 0 < len(events) <= MAX_BATCH_EVENTS:
        raise ValueError(f"a status batch carries 1 to {MAX_BATCH_EVENTS} events, not {len(events)}")
    portals = {e.portal for e in events}
    if len(portals) != 1:
        raise ValueError("a status batch carries the events of one portal")
    body = json.dumps({"version": SCHEMA_VERSION, "events": [asdict(e) for e in events]},
                      separators=(",", ":")).encode()
    properties = pika.BasicProperties(
        message_id=event_id_for(BATCH, *(e.event_id for e in events)), content_type=BATCH_CONTENT_TYPE,
        delivery_mode=2, timestamp=int(max(e.at for e in events)), type=f"hub.status.{BATCH}")
    return f"{events[0].portal.replace('.', '_')}.{BATCH}", body, properties


def events_from_message(content_type: str | None, body: bytes, *, now: float | None = None) -> list[StatusEvent]:
    """The events of one hub.status message: a batch (``BATCH_CONTENT_TYPE``) or a single event
    (any other content type). ``InvalidStatusEvent`` if it, or any event in it, breaks the contract:
    a batch is refused whole, naming the first bad event's position (never its content)."""
    if content_type != BATCH_CONTENT_TYPE:
        return [StatusEvent.from_body(body, now=now)]
    moment = time.time() if now is None else now
    try:
        raw = json.loads(body)
    except Exception:  # noqa: BLE001 - not JSON, bad UTF-8, nested too deep for the parser
        raise InvalidStatusEvent(f"status batch is not JSON ({len(body)} bytes)") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("events"), list):
        raise InvalidStatusEvent("status batch is not an object with a list 'events'")
    items = raw["events"]
    if not 0 < len(items) <= MAX_BATCH_EVENTS:
        raise InvalidStatusEvent(f"status batch has {len(items)} events; 1 to {MAX_BATCH_EVENTS} allowed")
    events = []
    for index, item in enumerate(items):
        try:
            events.append(StatusEvent._from_raw(item, moment))
        except InvalidStatusEvent as exc:
            raise InvalidStatusEvent(f"status batch event {index}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - e.g. RecursionError: invalid like any other
            raise InvalidStatusEvent(f"status batch event {index} cannot be read ({type(exc).__name__})") from None
    if len({e.portal for e in events}) != 1:
        raise InvalidStatusEvent("status batch mixes portals (a batch carries the events of one portal)")
    return events
