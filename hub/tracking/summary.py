"""Pure parts of the tracking store: event rows, the order of a timeline, an application's summary
from its events, page cursors. No SQL here (hub/tracking/store.py), so the rules that make the
summary independent of arrival order can be read, and tested, on their own.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from hub.errors import InvalidQuery
from hub.status import (
    DEAD_LETTERED,
    PRECEDENCE,
    REPLY_RECEIVED,
    RETRY_SCHEDULED,
    STATE_EVENTS,
    TRANSPORT_REPORT,
    TRANSPORT_REPORT_TIMEOUT,
    InvalidStatusEvent,
    StatusEvent,
)
from hub.tracking.model import ApplicationSummary, TimelineEntry

EVENT_COLUMNS = ("event_id", "message_id", "portal", "event", "at", "precedence", "destination", "adapter",
                 "attempt", "reason", "correlation_id", "transport_message_id", "application_ref", "detail")
_TEXT_FIELDS = ("event_id", "message_id", "portal", "event", "destination", "adapter", "reason", "correlation_id",
                "transport_message_id", "application_ref")
_MAX_ID = 200  # as hub.status: ids are ids
_MAX_CURSOR = 400
_LIGHTS = frozenset({"open", "green", "yellow", "red", "unknown"})


def timeline_order(event: StatusEvent) -> tuple[float, int, str]:
    """Event time, then PRECEDENCE, then event id: a total order that ignores arrival order."""
    return event.at, PRECEDENCE.get(event.event, 0), event.event_id


def _storable(e: StatusEvent) -> StatusEvent:
    """Text both databases can hold (no NUL, valid UTF-8), else the event is refused for good
    (``InvalidStatusEvent``: the tracker dead-letters it instead of retrying it forever)."""
    texts = [getattr(e, name) or "" for name in _TEXT_FIELDS]
    try:
        joined = "".join(texts)
    except TypeError:
        joined = "\x00"
    if not storable_text(joined):
        name = next(n for n, t in zip(_TEXT_FIELDS, texts, strict=True)
                    if not isinstance(t, str) or not storable_text(t))
        raise InvalidStatusEvent(f"status event field '{name}' is not text the store can keep")
    if not isinstance(e.at, (int, float)) or not math.isfinite(e.at):
        raise InvalidStatusEvent("status event 'at' is not a time stamp")
    return e


def storable_text(value: str) -> bool:
    """Text both databases take as it is: no NUL (PostgreSQL refuses it), valid UTF-8."""
    if "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def event_row(e: StatusEvent) -> tuple[Any, ...]:
    e = _storable(e)
    try:
        detail = json.dumps(e.detail, sort_keys=True, separators=(",", ":"), default=str)
    except (ValueError, TypeError, RecursionError):  # circular, unsortable keys, too deep: never storable
        raise InvalidStatusEvent("status event 'detail' cannot be stored as JSON") from None
    return (e.event_id, e.message_id, e.portal, e.event, e.at, PRECEDENCE.get(e.event, 0), e.destination,
            e.adapter or None, e.attempt, e.reason or None, e.correlation_id or None,
            e.transport_message_id or None, e.application_ref or None, detail)


def event_from_row(row: Sequence[Any]) -> StatusEvent:
    (event_id, message_id, portal, event, at, _precedence, destination, adapter, attempt, reason,
     correlation_id, transport_message_id, application_ref, detail) = row
    return StatusEvent(message_id=message_id, event=event, portal=portal, destination=destination,
                       adapter=adapter, at=float(at), detail={} if detail == "{}" else json.loads(detail), correlation_id=correlation_id,
                       transport_message_id=transport_message_id, attempt=attempt, reason=reason,
                       application_ref=application_ref, event_id=event_id)


def owner_of(events: Iterable[StatusEvent]) -> tuple[str, str | None] | None:
    """(portal, application_ref) of an application from its events (those with its message id), or
    None when none of them is more than a reply: the application itself is not known yet."""
    base = sorted((e for e in events if e.event != REPLY_RECEIVED), key=timeline_order)
    if not base:
        return None
    portal = base[0].portal
    ref = next((e.application_ref for e in reversed(base) if e.portal == portal and e.application_ref), None)
    return portal, ref


def _latest(events: Sequence[StatusEvent], attr: str) -> Any:
    return next((getattr(e, attr) for e in reversed(events) if getattr(e, attr)), None)


def _reason(event: StatusEvent) -> str | None:
    if event.reason:
        return event.reason
    legacy = event.detail.get("reason")
    return legacy if isinstance(legacy, str) and legacy else None


def _report(event: StatusEvent) -> str:
    if event.event == TRANSPORT_REPORT_TIMEOUT:
        return "timeout"
    if "error" in event.detail:
        return "failed"
    light = event.detail.get("traffic_light")
    return light if isinstance(light, str) and light in _LIGHTS else "unknown"


def summarize(message_id: str, portal: str, timeline: Sequence[StatusEvent]) -> ApplicationSummary | None:
    """The summary of one application from its timeline (its portal's events, already in order)."""
    base = [e for e in timeline if e.event != REPLY_RECEIVED]
    if not base:
        return None
    state = next((e for e in reversed(timeline) if e.event in STATE_EVENTS), None)
    report = next((e for e in reversed(timeline) if e.event in (TRANSPORT_REPORT, TRANSPORT_REPORT_TIMEOUT)), None)
    failure = next((e for e in reversed(timeline) if e.event in (RETRY_SCHEDULED, DEAD_LETTERED)), None)
    return ApplicationSummary(
        message_id=message_id, portal=portal, destination=_latest(base, "destination") or "",
        state=state.event if state else None, state_at=state.at if state else None,
        first_at=timeline[0].at, last_at=timeline[-1].at, adapter=_latest(base, "adapter"),
        correlation_id=_latest(base, "correlation_id"), application_ref=_latest(base, "application_ref"),
        transport_message_id=_latest(base, "transport_message_id"),
        reason=_reason(failure) if failure else None,
        attempts=max((e.attempt for e in timeline if e.attempt is not None), default=0),
        transport_report=_report(report) if report else None,
        replies=sum(1 for e in timeline if e.event == REPLY_RECEIVED))


def timeline_entry(e: StatusEvent) -> TimelineEntry:
    return TimelineEntry(event_id=e.event_id, event=e.event, at=e.at, adapter=e.adapter, destination=e.destination,
                         attempt=e.attempt, reason=e.reason, transport_message_id=e.transport_message_id,
                         detail=e.detail)


# ------------------------------------------------------------------ page cursors


def encode_cursor(last_at: float, message_id: str) -> str:
    """An opaque page position: the (last_at, message_id) of the last item shown."""
    raw = json.dumps([last_at, message_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The position in a cursor from ``encode_cursor``; anything else is ``InvalidQuery``."""
    if not isinstance(cursor, str) or len(cursor) > _MAX_CURSOR:
        raise InvalidQuery("malformed page cursor: use the next_cursor of the previous page unchanged")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidQuery("malformed page cursor: use the next_cursor of the previous page unchanged") from None
    if (not isinstance(value, list) or len(value) != 2 or isinstance(value[0], bool)
            or not isinstance(value[0], (int, float)) or not math.isfinite(value[0])
            or not isinstance(value[1], str) or len(value[1]) > _MAX_ID or not storable_text(value[1])):
        raise InvalidQuery("malformed page cursor: use the next_cursor of the previous page unchanged")
    return float(value[0]), value[1]
