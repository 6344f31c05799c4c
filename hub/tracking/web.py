"""What the tracking API and page share: reading query parameters and the public view of a record.

Both answer with ids, states, times and reasons only. ``public_entry`` keeps the timeline details
that are such (a fixed list of keys with short scalar values); anything else an event's ``detail``
may carry (e.g. the free-text records of a transport report) never leaves the tracker.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from werkzeug.datastructures import MultiDict

from hub.errors import InvalidQuery
from hub.tracking.model import (
    STATES,
    ApplicationFilter,
    ApplicationSummary,
    Page,
    Scope,
    TimelineEntry,
    Trace,
    TrackingStore,
)

MAX_LIMIT = 500  # largest page the API and page hand out, whatever ``limit`` asks for
MAX_TEXT = 200  # ids are ids: a longer parameter is not one
MAX_CURSOR = 1000
LIST_PARAMETERS = frozenset({"destination", "state", "since", "until", "portal", "limit", "cursor"})
# detail keys that are ids, states, counts or reason slugs (hub/status.py and the return channel)
PUBLIC_DETAIL = frozenset({
    "xta_message_id", "duplicate", "accepted_on_resend", "reason", "error", "attempts", "traffic_light",
    "polls", "previous_reason", "status", "status_name", "report_time", "reply_id", "message_type",
    "reply_uuid"})
_REPORT_RECORDS = ("errors", "warnings")  # transport-report records: only their codes are shown
_EPOCH = re.compile(r"^\d{1,12}(\.\d{1,9})?$")


@dataclass(frozen=True)
class ListQuery:
    flt: ApplicationFilter
    limit: int
    cursor: str | None


def parse_time(name: str, value: str) -> float:
    """Epoch seconds from ISO 8601 (``2026-11-01T10:00:00Z``; without an offset: UTC) or epoch seconds."""
    text = value.strip()
    if _EPOCH.match(text):
        return float(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidQuery(f"'{name}' is neither ISO 8601 (2026-11-01T10:00:00Z) nor epoch seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    stamp = moment.timestamp()
    if not math.isfinite(stamp) or stamp < 0:
        raise InvalidQuery(f"'{name}' is before 1970")
    return stamp


def _text(args: Mapping[str, str], name: str) -> str | None:
    value = args.get(name)
    if value is None or value == "":
        return None
    if len(value) > MAX_TEXT or any(ord(c) < 32 for c in value):
        raise InvalidQuery(f"'{name}' is not an id (at most {MAX_TEXT} printable characters)")
    return value


def single_args(args: MultiDict[str, str]) -> dict[str, str]:
    """Query parameters as a plain mapping; a parameter given twice is ambiguous and refused."""
    single: dict[str, str] = {}
    for name, values in args.lists():
        if len(values) > 1:
            raise InvalidQuery(f"parameter '{name[:40]}' is given more than once")
        single[name] = values[0]
    return single


def parse_list_query(args: Mapping[str, str], allowed: frozenset[str], *, page_size: int) -> ListQuery:
    """The filter, page size and cursor of a list request; unknown parameters are refused (a typo
    such as ``sate=`` would otherwise silently list everything)."""
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise InvalidQuery(f"unknown parameter '{unknown[0][:40]}' (allowed: {', '.join(sorted(allowed))})")
    state = _text(args, "state") if "state" in allowed else None
    if state is not None and state not in STATES:
        raise InvalidQuery(f"'state' must be one of {', '.join(STATES)}")
    since = parse_time("since", args["since"]) if args.get("since") else None
    until = parse_time("until", args["until"]) if args.get("until") else None
    limit = page_size
    if args.get("limit"):
        raw = args["limit"]
        if not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
            raise InvalidQuery(f"'limit' must be a whole number from 1 (at most {MAX_LIMIT} are returned)")
        limit = int(raw)
    cursor = args.get("cursor") or None
    if cursor is not None and (len(cursor) > MAX_CURSOR or not cursor.isprintable()):
        raise InvalidQuery("'cursor' is not a cursor of this API")
    flt = ApplicationFilter(destination=_text(args, "destination"), state=state, since=since, until=until,
                            portal=_text(args, "portal"))
    return ListQuery(flt, min(limit, MAX_LIMIT), cursor)


def parse_ident(value: str | None) -> str:
    """An application id (message id, correlation id or transport message id) from a request."""
    text = (value or "").strip()
    if not text:
        raise InvalidQuery("'id' is missing: a message id, correlation id or transport message id")
    if len(text) > MAX_TEXT or not text.isprintable():
        raise InvalidQuery(f"'id' is not an id (at most {MAX_TEXT} printable characters)")
    return text


def outside_scope(scope: Scope, flt: ApplicationFilter) -> bool:
    """True when a portal token asks for another portal: the answer is empty, whatever exists."""
    return scope.portal is not None and flt.portal is not None and flt.portal != scope.portal


def scoped_page(store: TrackingStore, scope: Scope, flt: ApplicationFilter, limit: int,
                cursor: str | None) -> Page:
    """A page of summaries within ``scope``; another portal's filter gives an empty page. Every
    item is checked against the scope once more: a store bug must not become a leak."""
    if outside_scope(scope, flt):
        return Page((), None)
    page = store.applications(scope, flt, limit=limit, cursor=cursor)  # InvalidQuery: a bad cursor
    return Page(tuple(s for s in page.items if scope.allows(s.portal)), page.next_cursor)


def scoped_counts(store: TrackingStore, scope: Scope, flt: ApplicationFilter) -> dict[str, int]:
    """Applications per state within ``scope`` (zeros for another portal's filter)."""
    if outside_scope(scope, flt):
        return dict.fromkeys(STATES, 0)
    return store.counts(scope, flt)


def scoped_reasons(store: TrackingStore, scope: Scope, flt: ApplicationFilter) -> dict[str, int]:
    """Dead-lettered applications per reason within ``scope``."""
    if outside_scope(scope, flt):
        return {}
    return store.dead_letter_reasons(scope, flt)


def scoped_traces(store: TrackingStore, scope: Scope, ident: str) -> list[Trace]:
    """The applications ``ident`` names within ``scope`` ([] for unknown and foreign alike)."""
    return [t for t in store.trace(ident, scope) if scope.allows(t.summary.portal)]


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= MAX_TEXT)


def public_detail(detail: Mapping[str, Any]) -> dict[str, Any]:
    """The shareable part of an event's ``detail``: listed keys with scalar values; report
    records reduced to their codes."""
    shown = {k: v for k, v in detail.items() if k in PUBLIC_DETAIL and _scalar(v)}
    for key in _REPORT_RECORDS:
        records = detail.get(key)
        if isinstance(records, list):
            shown[f"{key[:-1]}_codes"] = [str(r["code"])[:64] for r in records
                                          if isinstance(r, dict) and isinstance(r.get("code"), str)]
    return shown


def public_entry(entry: TimelineEntry) -> dict[str, Any]:
    data = entry.as_dict()
    data["detail"] = public_detail(entry.detail)
    return data


def public_summary(summary: ApplicationSummary) -> dict[str, Any]:
    return summary.as_dict()


def iso(stamp: float | None) -> str:
    """An epoch time as ISO 8601 UTC with milliseconds (what the page shows); '' for None; the raw
    number when it is no time a calendar can show (a stored millisecond stamp must not fail a page)."""
    if stamp is None:
        return ""
    try:
        return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError, TypeError):
        return str(stamp)
