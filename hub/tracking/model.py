"""What the tracking store answers: an application's summary, its timeline, pages of summaries.

Everything here is ids, times, states and reasons: the store never holds payload content. A
``Scope`` says whose applications a query may see (a portal's own, or all for an operator); a
query outside its scope finds nothing, exactly as if the application did not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from hub.status import StatusEvent

# The states an application can be in (``ApplicationSummary.state``): the name of the latest
# state-bearing event (hub.status.STATE_EVENTS), ordered by event time, then PRECEDENCE.
STATES = ("accepted", "delivering", "retry_scheduled", "dead_lettered", "delivered", "replayed")


@dataclass(frozen=True)
class Scope:
    """Whose applications a caller may see: ``portal`` (its ``app_id``), or every portal (None)."""

    portal: str | None

    @classmethod
    def operator(cls) -> Scope:
        return cls(None)

    def allows(self, portal: str) -> bool:
        return self.portal is None or self.portal == portal


@dataclass(frozen=True)
class TimelineEntry:
    event_id: str
    event: str
    at: float
    adapter: str | None = None
    destination: str | None = None
    attempt: int | None = None
    reason: str | None = None
    transport_message_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ApplicationSummary:
    """The current picture of one application (one row; kept up to date on ingest)."""

    message_id: str
    portal: str
    destination: str
    state: str | None  # None: only non-state events seen so far (e.g. a report before its delivery)
    state_at: float | None
    first_at: float
    last_at: float
    adapter: str | None = None
    correlation_id: str | None = None
    application_ref: str | None = None
    transport_message_id: str | None = None
    reason: str | None = None  # of the latest retry_scheduled / dead_lettered
    attempts: int = 0  # highest attempt seen
    transport_report: str | None = None  # latest traffic light: green, yellow, red, open, timeout, failed
    replies: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Trace:
    summary: ApplicationSummary
    timeline: tuple[TimelineEntry, ...]  # by event time, then PRECEDENCE, then event_id

    def as_dict(self) -> dict[str, Any]:
        return {"application": self.summary.as_dict(), "timeline": [e.as_dict() for e in self.timeline]}


@dataclass(frozen=True)
class Page:
    items: tuple[ApplicationSummary, ...]
    next_cursor: str | None  # opaque; None = last page

    def as_dict(self) -> dict[str, Any]:
        return {"items": [i.as_dict() for i in self.items], "next_cursor": self.next_cursor}


@dataclass(frozen=True)
class ApplicationFilter:
    destination: str | None = None
    state: str | None = None
    since: float | None = None  # last event at or after (epoch seconds)
    until: float | None = None  # last event before
    portal: str | None = None  # narrows further within the scope (an operator's filter)


class TrackingStore(Protocol):
    """The tracking store (SQLite or PostgreSQL behind one code path). Thread-safe."""

    def ingest(self, events: Sequence[StatusEvent]) -> int:
        """Store events in one transaction; returns how many were new (a known ``event_id`` is
        skipped, so redelivered events change nothing). Updates the summaries they touch."""

    def trace(self, ident: str, scope: Scope) -> list[Trace]:
        """Applications whose message id, correlation id or transport message id is ``ident``
        (several may share a correlation id), within ``scope``; [] when none is visible."""

    def applications(self, scope: Scope, flt: ApplicationFilter = ApplicationFilter(), *, limit: int = 50,
                     cursor: str | None = None) -> Page:
        """Summaries, newest last event first, keyset-paginated by ``cursor``."""

    def counts(self, scope: Scope, flt: ApplicationFilter = ApplicationFilter()) -> dict[str, int]:
        """Applications per state (every state in ``STATES``, zeros included)."""

    def dead_letter_reasons(self, scope: Scope, flt: ApplicationFilter = ApplicationFilter()) -> dict[str, int]:
        """Applications currently dead-lettered, per reason."""

    def purge(self, older_than: float) -> int:
        """Delete applications (and their events) whose last event is older than ``older_than``
        seconds; returns how many applications were removed."""

    def close(self) -> None: ...
