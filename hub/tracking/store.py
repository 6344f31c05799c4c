"""The tracking store: status events in, timelines and summaries out (SQLite or PostgreSQL).

Every status event is stored once (its ``event_id`` is the primary key: a redelivered event changes
nothing). After each batch the summary of every application it touched is recomputed from that
application's stored events, so the summary never depends on the order in which events arrived:
the timeline is ordered by (event time, ``PRECEDENCE``, event id) and the state is the latest
state-bearing event in that order.

An application belongs to the portal of its first event; events of another portal that carry the
same message id (a portal reusing someone else's id) stay out of its timeline and summary. A
``reply_received`` event that names no message id is linked by (portal, ``application_ref``): it
shows in the timeline of every application of that portal with that antragsidentifikation (a
corrected re-send keeps it), whenever that application's events arrive. A reply whose application
is unknown is kept, unseen, until it arrives or retention removes it: it creates no application.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import fields
from functools import partial
from pathlib import Path
from typing import Any

from hub.errors import InvalidQuery
from hub.status import DEAD_LETTERED, StatusEvent
from hub.tracking.migrations import migrate
from hub.tracking.model import (
    STATES,
    ApplicationFilter,
    ApplicationSummary,
    Page,
    Scope,
    Trace,
    TrackingStore,
)
from hub.tracking.sql import Database, Tx, open_database
from hub.tracking.summary import (
    EVENT_COLUMNS,
    decode_cursor,
    encode_cursor,
    event_from_row,
    event_row,
    owner_of,
    storable_text,
    summarize,
    timeline_entry,
    timeline_order,
)

NO_FILTER = ApplicationFilter()
MAX_ID = 200  # as hub.status: a longer "id" is not one
MAX_PAGE = 1000
MAX_TRACES = 50  # applications one trace answers at most (a correlation id shared by very many)
PURGE_BATCH = 500
_IN_CHUNK = 500  # ids per IN (...) list

_EVENT_SELECT = f"SELECT {', '.join(EVENT_COLUMNS)} FROM tracking_events"
_INSERT_EVENT = (f"INSERT INTO tracking_events ({', '.join(EVENT_COLUMNS)}) "
                 f"VALUES ({', '.join('?' * len(EVENT_COLUMNS))}) ON CONFLICT (event_id) DO NOTHING")
_APP_COLUMNS = tuple(f.name for f in fields(ApplicationSummary))
_APP_SELECT = f"SELECT {', '.join(_APP_COLUMNS)} FROM tracking_applications"
_UPSERT_APP = (f"INSERT INTO tracking_applications ({', '.join(_APP_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(_APP_COLUMNS))}) ON CONFLICT (message_id) DO UPDATE SET "
               + ", ".join(f"{c} = excluded.{c}" for c in _APP_COLUMNS if c != "message_id"))


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _purge_orphans(cutoff: float, position: tuple[float, str], tx: Tx) -> tuple[float, str] | None:
    """One batch of old events (from ``position`` on, in (at, event_id) order) that belong to no
    application; returns the position to go on from, None at the end."""
    rows = [event_from_row(r) for r in tx.query(
        f"{_EVENT_SELECT} WHERE at < ? AND (at, event_id) > (?, ?) ORDER BY at, event_id LIMIT ?",
        (cutoff, *position, PURGE_BATCH))]
    if not rows:
        return None
    mids = sorted({e.message_id for e in rows if e.message_id})
    known = {r[0] for r in tx.query(
        f"SELECT message_id FROM tracking_applications WHERE message_id IN ({_marks(len(mids))})", mids)} if mids else set()
    refs = {(e.portal, e.application_ref) for e in rows if not e.message_id and e.application_ref}
    linked = {pair for pair in refs if tx.query(
        "SELECT 1 FROM tracking_applications WHERE application_ref = ? AND portal = ?", (pair[1], pair[0]))}
    orphans = [e.event_id for e in rows
               if (e.message_id not in known if e.message_id else (e.portal, e.application_ref) not in linked)]
    if orphans:
        tx.execute(f"DELETE FROM tracking_events WHERE event_id IN ({_marks(len(orphans))})", orphans)
    return rows[-1].at, rows[-1].event_id


# ------------------------------------------------------------------ the store


class SqlTrackingStore:
    """``TrackingStore`` on a ``Database`` (hub/tracking/sql.py): the same SQL for both back ends."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- writing

    def ingest(self, events: Sequence[StatusEvent]) -> int:
        """Store ``events`` in one transaction and recompute the summaries they touch. Any batch
        size works (the tracker uses [tracker] batch_size; a bulk load may pass thousands)."""
        if not events:
            return 0
        rows = [event_row(e) for e in events]
        replies = {(e.portal, e.application_ref) for e in events if not e.message_id and e.application_ref}

        def work(tx: Tx) -> int:
            new = sum(tx.executemany(_INSERT_EVENT, chunk) for chunk in _chunks(rows))
            if new == 0:
                return 0
            touched = {e.message_id for e in events if e.message_id}
            for portal, ref in replies:
                touched.update(r[0] for r in tx.query(
                    "SELECT message_id FROM tracking_applications WHERE application_ref = ? AND portal = ?",
                    (ref, portal)))
            summaries = [s for s, _ in self._assemble(tx, sorted(touched)).values() if s is not None]
            tx.executemany(_UPSERT_APP, [tuple(getattr(s, c) for c in _APP_COLUMNS) for s in summaries])
            return new

        return self._db.run(work, write=True)

    def purge(self, older_than: float) -> int:
        """Remove applications whose last event is older than ``older_than`` seconds, with their
        events, then old events that belong to no application (replies whose application never
        came). Batches of ``PURGE_BATCH``, one transaction each: the tracker keeps ingesting."""
        if isinstance(older_than, bool) or not isinstance(older_than, (int, float)) or not (
                math.isfinite(older_than) and older_than >= 0):
            raise InvalidQuery("purge: older_than must be a number of seconds >= 0")
        cutoff = time.time() - older_than

        def applications(tx: Tx) -> int:
            rows = tx.query("SELECT message_id, portal, application_ref FROM tracking_applications "
                            "WHERE last_at < ? ORDER BY last_at LIMIT ?", (cutoff, PURGE_BATCH))
            mids = [r[0] for r in rows]
            if mids:
                tx.execute(f"DELETE FROM tracking_events WHERE message_id IN ({_marks(len(mids))})", mids)
                tx.execute(f"DELETE FROM tracking_applications WHERE message_id IN ({_marks(len(mids))})", mids)
            for portal, ref in {(r[1], r[2]) for r in rows if r[2]}:
                tx.execute("DELETE FROM tracking_events WHERE message_id = '' AND application_ref = ? "
                           "AND portal = ? AND NOT EXISTS (SELECT 1 FROM tracking_applications a "
                           "WHERE a.application_ref = ? AND a.portal = ?)", (ref, portal, ref, portal))
            return len(rows)

        removed = 0
        while batch := self._db.run(applications, write=True):
            removed += batch
        position: tuple[float, str] | None = (-math.inf, "")
        while position is not None:
            position = self._db.run(partial(_purge_orphans, cutoff, position), write=True)
        return removed

    # -- reading

    def _assemble(self, tx: Tx, mids: Sequence[str]
                  ) -> dict[str, tuple[ApplicationSummary | None, list[StatusEvent]]]:
        """Summary and ordered timeline of each application in ``mids``, from its stored events."""
        by_mid: dict[str, list[StatusEvent]] = defaultdict(list)
        for chunk in _chunks(mids):
            for row in tx.query(f"{_EVENT_SELECT} WHERE message_id IN ({_marks(len(chunk))})", chunk):
                by_mid[row[1]].append(event_from_row(row))
        owners = {mid: owner_of(events) for mid, events in by_mid.items()}
        wanted = {owner for owner in owners.values() if owner is not None and owner[1]}
        replies: dict[tuple[str, str | None], list[StatusEvent]] = defaultdict(list)
        refs = sorted({ref for _, ref in wanted if ref})
        for chunk in _chunks(refs):
            for row in tx.query(f"{_EVENT_SELECT} WHERE message_id = '' AND application_ref IN "
                                f"({_marks(len(chunk))})", chunk):
                reply = event_from_row(row)
                if (reply.portal, reply.application_ref) in wanted:
                    replies[(reply.portal, reply.application_ref)].append(reply)
        result: dict[str, tuple[ApplicationSummary | None, list[StatusEvent]]] = {}
        for mid, owner in owners.items():
            if owner is None:
                result[mid] = (None, [])
                continue
            portal, ref = owner
            timeline = sorted([e for e in by_mid[mid] if e.portal == portal] + replies.get((portal, ref), []),
                              key=timeline_order)
            result[mid] = (summarize(mid, portal, timeline), timeline)
        return result

    def trace(self, ident: str, scope: Scope) -> list[Trace]:
        if not ident or len(ident) > MAX_ID or not storable_text(ident):
            return []  # cannot be the id of anything stored
        mine, mine_params = ("AND portal = ?", (scope.portal,)) if scope.portal is not None else ("", ())

        def find(tx: Tx) -> dict[str, tuple[ApplicationSummary | None, list[StatusEvent]]]:
            mids = {r[0] for r in tx.query(
                f"SELECT message_id FROM tracking_applications WHERE message_id = ? {mine}", (ident, *mine_params))}
            mids.update(r[0] for r in tx.query(
                f"SELECT message_id FROM tracking_applications WHERE correlation_id = ? {mine} LIMIT {MAX_TRACES}",
                (ident, *mine_params)))
            refs: set[tuple[str, str]] = set()
            for mid, portal, ref in tx.query("SELECT DISTINCT message_id, portal, application_ref FROM tracking_events "
                                             f"WHERE transport_message_id = ? {mine} LIMIT {MAX_TRACES}",
                                             (ident, *mine_params)):
                if mid:
                    mids.add(mid)
                elif ref:
                    refs.add((portal, ref))
            for portal, ref in refs:
                mids.update(r[0] for r in tx.query(
                    f"SELECT message_id FROM tracking_applications WHERE application_ref = ? AND portal = ? "
                    f"LIMIT {MAX_TRACES}", (ref, portal)))
            return self._assemble(tx, sorted(mids))

        assembled = self._db.run(find, write=False)
        traces = [Trace(summary, tuple(timeline_entry(e) for e in timeline))
                  for summary, timeline in assembled.values()
                  if summary is not None and scope.allows(summary.portal)]
        traces.sort(key=lambda t: (-t.summary.last_at, t.summary.message_id))
        return traces[:MAX_TRACES]

    @staticmethod
    def _where(scope: Scope, flt: ApplicationFilter) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("portal", scope.portal), ("portal", flt.portal), ("destination", flt.destination),
                              ("state", flt.state)):
            if value is not None and (not isinstance(value, str) or len(value) > MAX_ID or not storable_text(value)):
                raise InvalidQuery(f"filter '{column}' is not an id")
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        for name, bound in (("since", flt.since), ("until", flt.until)):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float))
                                      or not math.isfinite(bound)):
                raise InvalidQuery(f"filter '{name}' is not a time stamp")
        if flt.since is not None:
            clauses.append("last_at >= ?")
            params.append(flt.since)
        if flt.until is not None:
            clauses.append("last_at < ?")
            params.append(flt.until)
        return clauses, params

    def applications(self, scope: Scope, flt: ApplicationFilter = NO_FILTER, *, limit: int = 50,
                     cursor: str | None = None) -> Page:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidQuery(f"page size must be between 1 and {MAX_PAGE}")
        clauses, params = self._where(scope, flt)
        if cursor is not None:
            clauses.append("(last_at, message_id) < (?, ?)")
            params.extend(decode_cursor(cursor))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._query(f"{_APP_SELECT} {where} ORDER BY last_at DESC, message_id DESC LIMIT ?",
                           (*params, limit + 1))
        items = tuple(ApplicationSummary(*row) for row in rows[:limit])
        more = len(rows) > limit
        return Page(items, encode_cursor(items[-1].last_at, items[-1].message_id) if more else None)

    def counts(self, scope: Scope, flt: ApplicationFilter = NO_FILTER) -> dict[str, int]:
        clauses, params = self._where(scope, flt)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._query(f"SELECT state, COUNT(*) FROM tracking_applications {where} GROUP BY state", params)
        found = {state: int(count) for state, count in rows if state is not None}
        return {state: found.get(state, 0) for state in STATES}

    def dead_letter_reasons(self, scope: Scope, flt: ApplicationFilter = NO_FILTER) -> dict[str, int]:
        clauses, params = self._where(scope, flt)
        clauses.append("state = ?")
        params.append(DEAD_LETTERED)
        rows = self._query(f"SELECT COALESCE(reason, 'unknown'), COUNT(*) FROM tracking_applications "
                           f"WHERE {' AND '.join(clauses)} GROUP BY COALESCE(reason, 'unknown')", params)
        return {reason: int(count) for reason, count in sorted(rows, key=lambda r: (-r[1], r[0]))}

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._db.run(lambda tx: tx.query(sql, params), write=False)

    def close(self) -> None:
        self._db.close()


def open_store(url: str, base: Path | None = None) -> TrackingStore:
    """Open the store named by ``url`` (``sqlite:///path``, relative to ``base`` unless absolute, or
    ``postgresql://...``) and bring its schema up to date (hub/tracking/migrations.py)."""
    db = open_database(url, base)
    try:
        migrate(db)
    except BaseException:
        db.close()
        raise
    return SqlTrackingStore(db)
