"""The delivery ledger: the hub's own record that makes delivery idempotent.

For each application (key: the AMQP ``message_id`` = nachrichtenUUID) it keeps the XTA MessageID
once created and whether the endpoint accepted the message. A redelivery after a crash or broker
restart therefore re-sends under the *same* XTA MessageID (the server answers 9024 if it already
has it) or is skipped when the ledger already says ``delivered``: the receiver sees each
application once. The write of the transport id happens before ``sendMessage``; the write of
``delivered`` after it.

Back ends: SQLite (default; one host, WAL, several processes) and PostgreSQL (several hosts),
chosen by URL: ``sqlite:///path/ledger.db`` or ``postgresql://host/db``.

Durability: one flush to disk per application, not two. Only the allocation must survive a power
loss: lost, a redelivery would create a *second* MessageID for the same application and the
receiver would get it twice. So ``allocate`` commits durably (SQLite ``synchronous=FULL``: the WAL
is fsynced before the commit returns; PostgreSQL ``synchronous_commit=on``), while
``mark_delivered`` and ``forget`` commit without waiting for the disk (SQLite ``synchronous=NORMAL``
for that transaction, PostgreSQL ``synchronous_commit = off`` local to that transaction). What
each event costs:

* the hub process crashes (SIGKILL, OOM): nothing. A commit that returned is in the WAL / in the
  database server, whatever the sync level; the redelivery finds the allocation or the mark.
* the machine loses power or the OS crashes (SQLite), or the database server crashes
  (PostgreSQL): the ``delivered`` marks and ``forget``s of the last moments (SQLite: since the last
  durable commit or checkpoint; PostgreSQL: at most ~3 x ``wal_writer_delay``, 0.6 s by default)
  can roll back. An application whose mark is lost is still ``allocated`` under its recorded id:
  its redelivery re-sends under that id, the server answers 9024 "MessageID already used", which
  the pipeline counts as accepted (``accepted_on_resend``): one extra sendMessage, no duplicate
  at the receiver. A lost ``forget`` keeps a refused id, which a replay re-sends (as when the
  ledger is down during ``forget``). Allocations are never lost: both logs are sequential, so a
  durable commit also makes every earlier commit durable, and what survives is always a prefix.

Pending transport reports (hub/report_scheduler.py) live here too, in nullable ``report_*``
columns of the delivered row: ``report_due_at`` (when to poll next; NULL: nothing to poll),
``report_polls``, ``report_open_sent`` and the event's ids ``report_portal`` /
``report_correlation_id``. ``mark_delivered`` sets them in the statement that marks the row
delivered: no extra commit, no extra flush. A schedule lost to a power loss is lost only together
with its delivered mark (same statement), and then the redelivery re-sends, the server answers
9024, the row is marked delivered and scheduled again. Claims, reschedules and clears are not
flushed either: lost, a report is polled once more (an event may be published twice). Older
ledgers get the columns at open (``ALTER TABLE ... ADD COLUMN`` when missing; a second process
doing the same at the same moment is tolerated).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hub.errors import ConfigError, LedgerUnavailable

ALLOCATED = "allocated"
DELIVERED = "delivered"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hub_deliveries (
    message_id TEXT PRIMARY KEY,
    adapter TEXT NOT NULL,
    destination TEXT NOT NULL,
    transport_message_id TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
)"""

# the pending-report columns, added to ledgers created before them (see the module docstring)
_REPORT_COLUMNS = (("report_due_at", "DOUBLE PRECISION"), ("report_polls", "INTEGER"),
                   ("report_open_sent", "INTEGER"), ("report_portal", "TEXT"), ("report_correlation_id", "TEXT"))
# small: only rows with a pending report are in it, so a claim never scans the whole ledger
_REPORT_INDEX = ("CREATE INDEX IF NOT EXISTS hub_deliveries_report_due ON hub_deliveries (report_due_at) "
                 "WHERE report_due_at IS NOT NULL")
_REPORT_FIELDS = ("message_id, destination, transport_message_id, report_portal, report_correlation_id, "
                  "report_polls, report_open_sent")


@dataclass(frozen=True)
class ReportSchedule:
    """A transport report to follow once the application is marked delivered: the ids its events
    carry and the delay of the first poll."""

    portal: str
    correlation_id: str | None
    delay: float


@dataclass(frozen=True)
class PendingReport:
    """A claimed transport report: whose it is and how far polling got."""

    message_id: str
    destination: str
    transport_message_id: str
    portal: str
    correlation_id: str | None
    polls: int  # polls so far
    open_sent: bool  # the "open" event went out already


@dataclass(frozen=True)
class LedgerEntry:
    message_id: str
    adapter: str
    destination: str
    transport_message_id: str
    state: str

    @property
    def delivered(self) -> bool:
        return self.state == DELIVERED


class DeliveryLedger(Protocol):
    def lookup(self, message_id: str) -> LedgerEntry | None: ...
    def allocate(self, message_id: str, adapter: str, destination: str, transport_message_id: str) -> str: ...
    def mark_delivered(self, message_id: str, report: ReportSchedule | None = None) -> None: ...
    def forget(self, message_id: str) -> None: ...
    def close(self) -> None: ...


class _SqlLedger:
    """Shared SQL for both back ends. ``_run`` executes one statement in its own durable transaction
    (committed to disk when it returns; with ``fetch`` the first row it returned); ``_run_lazy`` one
    whose commit may still be in the OS or database server's buffers when it returns (see the module
    docstring for what that can cost); ``_read`` one query."""

    placeholder = "?"

    def _run(self, sql: str, params: tuple[Any, ...] = (), fetch: bool = False) -> Any:
        raise NotImplementedError

    def _read(self, sql: str, params: tuple[Any, ...]) -> Any:
        return self._run(sql, params, fetch=True)

    def _run_lazy(self, sql: str, params: tuple[Any, ...]) -> None:
        raise NotImplementedError

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self.placeholder)

    def lookup(self, message_id: str) -> LedgerEntry | None:
        row = self._read(self._sql(
            "SELECT message_id, adapter, destination, transport_message_id, state FROM hub_deliveries "
            "WHERE message_id = ?"), (message_id,))
        return LedgerEntry(*row) if row else None

    def allocate(self, message_id: str, adapter: str, destination: str, transport_message_id: str) -> str:
        """Record ``transport_message_id`` unless the message already has one; return the id that
        counts. Two processes racing on the same message both end up sending under one id (the
        server then answers 9024 to the second), never under two. An entry of another adapter
        (the authority moved) that was never delivered is replaced. One statement in the usual
        case: RETURNING names the id when ours was written; only a conflict costs a lookup."""
        now = time.time()
        row = self._run(self._sql(
            "INSERT INTO hub_deliveries (message_id, adapter, destination, transport_message_id, state, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (message_id) DO UPDATE SET adapter = excluded.adapter, "
            "transport_message_id = excluded.transport_message_id, updated_at = excluded.updated_at "
            "WHERE hub_deliveries.adapter <> excluded.adapter AND hub_deliveries.state = ? "
            "RETURNING transport_message_id"),
            (message_id, adapter, destination, transport_message_id, ALLOCATED, now, now, ALLOCATED), fetch=True)
        if row is not None:  # inserted, or replaced another adapter's undelivered entry: ours counts
            return str(row[0])
        entry = self.lookup(message_id)
        if entry is None:  # forgotten concurrently: ours is as good as any
            return transport_message_id
        return entry.transport_message_id

    def mark_delivered(self, message_id: str, report: ReportSchedule | None = None) -> None:
        """Not flushed to disk: a mark lost to a power loss costs a re-send answered 9024, not a
        duplicate (the allocation it follows was flushed). With ``report``, the same statement
        schedules its transport report (lost only together with the mark)."""
        now = time.time()
        if report is None:
            self._run_lazy(self._sql("UPDATE hub_deliveries SET state = ?, updated_at = ? WHERE message_id = ?"),
                           (DELIVERED, now, message_id))
            return
        self._run_lazy(self._sql(
            "UPDATE hub_deliveries SET state = ?, updated_at = ?, report_due_at = ?, report_polls = 0, "
            "report_open_sent = 0, report_portal = ?, report_correlation_id = ? WHERE message_id = ?"),
            (DELIVERED, now, now + report.delay, report.portal, report.correlation_id, message_id))

    # --- pending transport reports (hub/report_scheduler.py) ---------------------------------
    def claim_reports(self, adapter: str, *, lease: float, limit: int) -> list[PendingReport]:
        """Up to ``limit`` of ``adapter``'s due reports, each leased for ``lease`` seconds (its due
        time moved past the lease): a second scheduler on the same ledger does not claim them, and
        a crashed one's claims come due again when the lease runs out. The outer ``report_due_at
        <= ?`` is re-checked on the locked row (PostgreSQL), so two racing claims never share one."""
        now = time.time()
        rows = self._run_many(self._sql(
            "UPDATE hub_deliveries SET report_due_at = ? WHERE message_id IN (SELECT message_id FROM "
            "hub_deliveries WHERE report_due_at IS NOT NULL AND report_due_at <= ? AND adapter = ? "
            "ORDER BY report_due_at LIMIT ?) AND report_due_at <= ? AND adapter = ? "
            f"RETURNING {_REPORT_FIELDS}"), (now + lease, now, adapter, limit, now, adapter))
        return [PendingReport(row[0], row[1], row[2], row[3] or "", row[4], int(row[5] or 0), bool(row[6]))
                for row in rows]

    def reschedule_report(self, message_id: str, *, delay: float, polls: int, open_sent: bool) -> None:
        """Poll again in ``delay`` seconds (not flushed: lost, the report is polled once more)."""
        self._run_lazy(self._sql(
            "UPDATE hub_deliveries SET report_due_at = ?, report_polls = ?, report_open_sent = ? "
            "WHERE message_id = ?"), (time.time() + delay, polls, int(open_sent), message_id))

    def finish_report(self, message_id: str) -> None:
        """Nothing more to poll (not flushed: lost, the report is polled once more)."""
        self._run_lazy(self._sql("UPDATE hub_deliveries SET report_due_at = NULL WHERE message_id = ?"),
                       (message_id,))

    def schedule_report(self, adapter: str, pending: PendingReport, *, delay: float = 0.0) -> None:
        """Schedule a report taken over from elsewhere (a broker poll request of an older release),
        flushed: its source is dropped once this returns. A row that is missing is recreated as
        delivered."""
        now = time.time()
        self._run(self._sql(
            "INSERT INTO hub_deliveries (message_id, adapter, destination, transport_message_id, state, created_at, "
            "updated_at, report_due_at, report_polls, report_open_sent, report_portal, report_correlation_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO UPDATE SET "
            "report_due_at = excluded.report_due_at, report_polls = excluded.report_polls, "
            "report_open_sent = excluded.report_open_sent, report_portal = excluded.report_portal, "
            "report_correlation_id = excluded.report_correlation_id"),
            (pending.message_id, adapter, pending.destination, pending.transport_message_id, DELIVERED, now, now, now + delay,
             pending.polls, int(pending.open_sent), pending.portal, pending.correlation_id))

    def _run_many(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """One statement that writes (not flushed) and returns every row it returned."""
        raise NotImplementedError

    def forget(self, message_id: str) -> None:
        """Drop an allocation the endpoint refused for good, so a replay starts with a fresh id. Not
        flushed to disk: if lost, a replay re-sends under the refused id (safe, as when the ledger
        is down at this point)."""
        self._run_lazy(self._sql("DELETE FROM hub_deliveries WHERE message_id = ? AND state = ?"),
                       (message_id, ALLOCATED))


# SQLite's ``synchronous`` levels in WAL mode: FULL fsyncs the WAL at every commit; NORMAL leaves
# the commit in the OS's cache (safe against a process crash, not against a power loss) and syncs
# only at checkpoints.
NORMAL, FULL = 1, 2
_SYNC = {NORMAL: "PRAGMA synchronous=NORMAL", FULL: "PRAGMA synchronous=FULL"}


class SqliteLedger(_SqlLedger):
    """SQLite in WAL mode; one connection per process, serialised by a lock."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ConfigError(f"ledger: cannot open SQLite database {path}: {exc}") from None
        # Switching a new file to WAL and creating the schema take the write lock; SQLite answers
        # "database is locked" at once (no busy wait: it would deadlock) when another process starts
        # on the same new file at the same moment (two workers of one adapter). Retried, bounded.
        give_up = time.monotonic() + 30
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(_SYNC[FULL])
                self._synchronous = FULL
                self._db.execute(_SCHEMA)
                self._migrate()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > give_up:
                    raise ConfigError(f"ledger: cannot open SQLite database {path}: {exc}") from None
                time.sleep(0.05)
            except sqlite3.Error as exc:
                raise ConfigError(f"ledger: cannot open SQLite database {path}: {exc}") from None

    def _migrate(self) -> None:
        """Add the pending-report columns an older ledger lacks. Another process may add one between
        our look and our ALTER: its "duplicate column" is what we wanted."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(hub_deliveries)")}
        for name, kind in _REPORT_COLUMNS:
            if name not in have:
                try:
                    self._db.execute(f"ALTER TABLE hub_deliveries ADD COLUMN {name} {kind}")
                except sqlite3.OperationalError as exc:
                    if "duplicate column" not in str(exc):
                        raise
        self._db.execute(_REPORT_INDEX)

    def _execute(self, level: int | None, sql: str, params: tuple[Any, ...], fetch: bool) -> Any:
        """One autocommit statement with the connection's ``synchronous`` at ``level`` (None: any, a
        read commits nothing). Switched only when it differs: a per-connection setting that SQLite
        reads when the statement commits."""
        try:
            with self._lock:
                if level is not None and level != self._synchronous:
                    self._db.execute(_SYNC[level])
                    self._synchronous = level
                cursor = self._db.execute(sql, params)
                if not fetch:
                    return None
                # to the end: an autocommit INSERT ... RETURNING commits when its statement completes
                rows = cursor.fetchall()
                return rows[0] if rows else None
        except sqlite3.Error as exc:
            raise LedgerUnavailable(f"ledger write/read failed: {exc}") from None

    def _run(self, sql: str, params: tuple[Any, ...] = (), fetch: bool = False) -> Any:
        return self._execute(FULL, sql, params, fetch)

    def _read(self, sql: str, params: tuple[Any, ...]) -> Any:
        return self._execute(None, sql, params, True)

    def _run_lazy(self, sql: str, params: tuple[Any, ...]) -> None:
        self._execute(NORMAL, sql, params, False)

    def _run_many(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        try:
            with self._lock:
                if self._synchronous != NORMAL:
                    self._db.execute(_SYNC[NORMAL])
                    self._synchronous = NORMAL
                return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise LedgerUnavailable(f"ledger write/read failed: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresLedger(_SqlLedger):
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        import psycopg

        self._psycopg = psycopg
        self._url = url
        self._lock = threading.Lock()
        try:
            self._db = self._connect()
            self._db.execute(_SCHEMA)
            self._migrate()
        except psycopg.Error as exc:
            raise ConfigError(f"ledger: cannot open PostgreSQL database: {exc}") from None

    def _connect(self) -> Any:
        """Bounded waits: a hung database must fail a delivery (transient), not block every thread."""
        return self._psycopg.connect(self._url, autocommit=True, connect_timeout=10,
                                     options="-c statement_timeout=5000", keepalives=1, keepalives_idle=30,
                                     keepalives_interval=10, keepalives_count=3)

    def _migrate(self) -> None:
        """Add the pending-report columns an older ledger lacks; only then an ALTER (it locks the
        table). ``IF NOT EXISTS`` is checked under that lock, so two processes starting at once
        add each column once; the index likewise (a racing twin's duplicate is ignored)."""
        have = {row[0] for row in self._db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'hub_deliveries' "
            "AND table_schema = current_schema()").fetchall()}
        for name, kind in _REPORT_COLUMNS:
            if name not in have:
                self._db.execute(f"ALTER TABLE hub_deliveries ADD COLUMN IF NOT EXISTS {name} {kind}")
        try:
            self._db.execute(_REPORT_INDEX)
        except (self._psycopg.errors.UniqueViolation, self._psycopg.errors.DuplicateTable):
            pass  # created by a process starting at the same moment

    def _run_many(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        with self._lock:
            try:
                if self._db.closed:
                    self._db = self._connect()
                return list(self._db.execute(
                    f"WITH claimed AS ({sql}) SELECT *, set_config('synchronous_commit', 'off', true) "
                    "FROM claimed", params).fetchall())
            except self._psycopg.Error as exc:
                raise LedgerUnavailable(f"ledger write/read failed: {exc}") from None

    def _run(self, sql: str, params: tuple[Any, ...] = (), fetch: bool = False) -> Any:
        with self._lock:
            try:
                if self._db.closed:
                    self._db = self._connect()
                cursor = self._db.execute(sql, params)
                return cursor.fetchone() if fetch else None
            except self._psycopg.Error as exc:
                raise LedgerUnavailable(f"ledger write/read failed: {exc}") from None

    def _run_lazy(self, sql: str, params: tuple[Any, ...]) -> None:
        """``sql`` (one INSERT/UPDATE/DELETE) in a statement whose commit does not wait for the WAL
        flush: ``set_config(..., true)`` is ``SET LOCAL`` for the statement's own implicit transaction,
        still in force when it commits; a data-modifying WITH always runs. One round trip, where
        BEGIN / SET LOCAL / statement / COMMIT would take four (measured: twice the client CPU)."""
        self._run(f"WITH lazy AS ({sql}) SELECT set_config('synchronous_commit', 'off', true)", params)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_ledger(url: str, base: Path | None = None) -> DeliveryLedger:
    """Open the ledger named by ``url`` (``sqlite:///path`` relative to ``base`` if not absolute)."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_absolute() and base is not None:
            path = base / path
        return SqliteLedger(path)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresLedger(url)
    raise ConfigError(f"ledger.url: unsupported scheme in '{url.split('://')[0]}://' (use sqlite:/// or postgresql://)")
