"""Plain-text views of the tracking store for the command line (`hub trace`, `hub status`).

Times are ISO 8601 UTC with milliseconds (events of one application often share a second). Only
ids, states, reasons and counts are shown: the store holds nothing else.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from hub.status import (
    DEAD_LETTERED,
    REPLAYED,
    REPLY_RECEIVED,
    RETRY_SCHEDULED,
    TRANSPORT_REPORT,
    TRANSPORT_REPORT_TIMEOUT,
)
from hub.tracking.model import STATES, ApplicationSummary, TimelineEntry, Trace


def iso(at: float | None) -> str:
    """``2026-12-01T09:30:00.123Z`` (UTC), or ``-``; the raw number when it is no time a calendar
    can show (a stored millisecond stamp must not crash `hub trace`)."""
    if at is None:
        return "-"
    try:
        return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    except (OverflowError, OSError, ValueError, TypeError):
        return str(at)


def duration(seconds: float) -> str:
    """``850ms``, ``12.3s``, ``4m 05s``, ``3h 02m``, ``2d 04h``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def entry_note(entry: TimelineEntry) -> str:
    """The one thing worth knowing about an event: its reason, traffic light or reply type."""
    d = entry.detail
    if entry.event == TRANSPORT_REPORT:
        light = str(d.get("traffic_light") or "unknown")
        return f"{light} (poll failed)" if d.get("error") else light
    if entry.event == TRANSPORT_REPORT_TIMEOUT:
        return f"no final report after {d.get('polls', '?')} polls"
    if entry.event == REPLY_RECEIVED:
        return str(d.get("message_type") or "reply")
    if entry.event == REPLAYED:
        return f"after {entry.reason or d.get('previous_reason') or '?'}"
    if entry.event in (RETRY_SCHEDULED, DEAD_LETTERED):
        return entry.reason or str(d.get("reason") or "-")
    if d.get("duplicate"):
        return "already delivered (duplicate)"
    if d.get("accepted_on_resend"):
        return "accepted on re-send"
    return entry.reason or "-"


def _transport_id(entry: TimelineEntry) -> str:
    if entry.event == REPLY_RECEIVED:
        return str(entry.detail.get("reply_id") or entry.transport_message_id or "-")
    return entry.transport_message_id or str(entry.detail.get("xta_message_id") or "-")


def _table(header: tuple[str, ...], rows: Iterable[tuple[str, ...]], right: frozenset[int] = frozenset()) -> list[str]:
    rows = list(rows)
    widths = [max([len(header[i]), *(len(r[i]) for r in rows)]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return [line(header), *(line(r) for r in rows)]


def render_trace(trace: Trace) -> list[str]:
    s = trace.summary
    head = (f"application {s.message_id or '(reply without application id)'}  portal {s.portal}  "
            f"destination {s.destination}  adapter {s.adapter or '-'}")
    out = [head]
    ids = [f"correlation {s.correlation_id}" if s.correlation_id else "",
           f"transport id {s.transport_message_id}" if s.transport_message_id else "",
           f"application ref {s.application_ref}" if s.application_ref else ""]
    if any(ids):
        out.append("  ".join(i for i in ids if i))
    out.append("")
    out += _table(("TIME (UTC)", "EVENT", "ATTEMPT", "ADAPTER", "REASON / LIGHT", "TRANSPORT ID"),
                  ((iso(e.at), e.event, str(e.attempt) if e.attempt is not None else "-", e.adapter or "-",
                    entry_note(e), _transport_id(e)) for e in trace.timeline), right=frozenset({2}))
    out.append("")
    out.append(summary_line(s, len(trace.timeline)))
    return out


def summary_line(s: ApplicationSummary, events: int) -> str:
    state = s.state or "no state yet"
    since = f" since {iso(s.state_at)}" if s.state_at is not None else ""
    parts = [f"{state}{since}", f"{s.attempts} attempt(s)"]
    if s.state == DEAD_LETTERED and s.reason:
        parts.append(f"reason {s.reason}")
    parts.append(f"transport report {s.transport_report or '-'}")
    parts.append(f"{s.replies} repl{'y' if s.replies == 1 else 'ies'}")
    parts.append(f"{events} event(s) over {duration(max(0.0, s.last_at - s.first_at))}")
    return "; ".join(parts)


def render_applications(items: Iterable[ApplicationSummary]) -> list[str]:
    return _table(("MESSAGE ID", "PORTAL", "DESTINATION", "STATE", "SINCE (UTC)", "ATTEMPTS", "REPORT", "REPLIES"),
                  ((a.message_id or "-", a.portal, a.destination, a.state or "-", iso(a.state_at), str(a.attempts),
                    a.transport_report or "-", str(a.replies)) for a in items), right=frozenset({5, 7}))


def render_counts(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    return f"{total} application(s): " + ", ".join(f"{state} {counts.get(state, 0)}" for state in STATES)
