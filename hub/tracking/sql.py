"""The tracking store's two databases behind one small interface: SQLite (default) and PostgreSQL.

The store writes its SQL once, with ``?`` placeholders; a ``Database`` runs it in a transaction
(``Database.run``) and translates driver errors: content the database refuses for good (SQLSTATE
classes 22 "data exception" and 23 "integrity constraint violation", their SQLite counterparts,
text the driver cannot encode) into ``TrackingStoreRejected`` (permanent: the tracker dead-letters
that one event), everything else into ``TrackingStoreUnavailable`` (transient: the tracker leaves
the status event on its queue and stores it later). A PostgreSQL database must be UTF8. Writers are
serialised: SQLite by ``BEGIN IMMEDIATE``, PostgreSQL by a transaction-scoped advisory lock, so two
tracker processes that ingest events of the same application never overwrite each other's summary.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from hub.errors import ConfigError, HubError, TrackingStoreUnavailable

# The advisory lock of the tracking store's writers (PostgreSQL; any constant bigint that no other
# part of the hub uses). Advisory locks are per database, so stores in other databases do not meet.
WRITE_LOCK = 0x7472_6163_6B00_0001
STATEMENT_TIMEOUT_MS = 15_000
CONNECT_TIMEOUT_S = 10
BUSY_TIMEOUT_S = 30.0  # SQLite: how long a writer waits for another's lock
T = TypeVar("T")
_ENCODING_ERRORS = (UnicodeError, OverflowError)  # a value the driver cannot send, whatever the database


class TrackingStoreRejected(HubError):
    """The database refused the content of a write for good (a value it cannot hold, a constraint):
    the same write can never succeed, so it is not retried; the tracker dead-letters the event. The
    text names the error class and SQLSTATE only, never a value."""

    reason = "tracking_store_rejected"


class Tx(Protocol):
    """One open transaction: statements with ``?`` placeholders."""

    dialect: str  # "sqlite" or "postgresql": the few DDL words that differ (migrations)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the rows it changed."""

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run one statement per row; returns the rows changed in all."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


class Database(Protocol):
    def run(self, work: Callable[[Tx], T], *, write: bool) -> T:
        """``work(tx)`` in one transaction: committed when it returns, rolled back when it raises.
        ``work`` may run twice (after a lost connection), so it must only touch the database."""

    def close(self) -> None: ...


class _SqliteTx:
    dialect = "sqlite"

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._db.execute(sql, tuple(params)).rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        return self._db.executemany(sql, rows).rowcount if rows else 0

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, tuple(params)).fetchall()


class SqliteDatabase:
    """One connection, shared by the threads of one process under a lock (WAL, synchronous=FULL:
    a committed status event survives a power cut); other processes wait up to 30 s for a lock."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                       check_same_thread=False)
            _wal(self._db)
            self._db.execute("PRAGMA synchronous=FULL")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"tracker.store: cannot open SQLite database {path}: {exc}") from None

    def run(self, work: Callable[[Tx], T], *, write: bool) -> T:
        with self._transaction(write) as tx:
            return work(tx)

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[Tx]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as exc:
                raise TrackingStoreUnavailable(f"tracking store: cannot begin a transaction: {exc}") from None
            try:
                yield _SqliteTx(self._db)
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    try:
                        self._db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the original error says more
                if isinstance(exc, (sqlite3.IntegrityError, sqlite3.DataError, *_ENCODING_ERRORS)):
                    raise TrackingStoreRejected(f"tracking store refused the data ({type(exc).__name__})") from None
                if isinstance(exc, sqlite3.Error):
                    raise TrackingStoreUnavailable(f"tracking store read/write failed: {exc}") from None
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _wal(db: sqlite3.Connection) -> None:
    """Switch a new file to WAL. Two processes creating the same file race for that switch, and the
    loser's ``database is locked`` comes at once (the busy timeout does not cover a change of
    journal mode), so wait for the winner as the busy timeout would."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            mode = str(db.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
            continue
        if mode != "wal":
            raise sqlite3.OperationalError(f"journal mode WAL refused (the file system keeps '{mode}')")
        return


def pg_sql(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled first)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _PgTx:
    dialect = "postgresql"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._conn.cursor() as cur:
            cur.execute(pg_sql(sql), tuple(params))
            return int(cur.rowcount)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        with self._conn.cursor() as cur:
            cur.executemany(pg_sql(sql), rows)  # pipelined: one round trip, not one per row
            return int(cur.rowcount)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._conn.cursor() as cur:
            cur.execute(pg_sql(sql), tuple(params))
            return list(cur.fetchall())


class PostgresDatabase:
    """One connection under a lock, reconnected on the next call after it was lost; bounded connect
    and statement timeouts, so a hung database fails a call (transient) instead of blocking."""

    def __init__(self, url: str) -> None:
        import psycopg

        self._psycopg = psycopg
        self._url = url
        self._lock = threading.Lock()
        try:
            self._conn = self._connect()
            encoding = str(self._conn.execute("SHOW server_encoding").fetchone()[0])
        except psycopg.Error as exc:
            raise ConfigError(f"tracker.store: cannot open PostgreSQL database: {_first_line(exc)}") from None
        if encoding.upper().replace("-", "") != "UTF8":
            self._conn.close()
            raise ConfigError(f"tracker.store: the PostgreSQL database's server_encoding is {encoding[:20]}, not "
                              "UTF8: it cannot hold every id; create the database with ENCODING 'UTF8'")

    def _connect(self) -> Any:
        return self._psycopg.connect(
            self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}", keepalives=1, keepalives_idle=30,
            keepalives_interval=10, keepalives_count=3)

    def run(self, work: Callable[[Tx], T], *, write: bool) -> T:
        """Runs ``work`` again, once, on a new connection when the old one turns out to be lost
        (a database restart, a fail-over, an idle connection cut by a firewall)."""
        psycopg = self._psycopg
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn.closed or self._conn.broken:
                        self._conn.close()
                        self._conn = self._connect()
                    with self._conn.transaction():
                        tx = _PgTx(self._conn)
                        if write:
                            tx.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
                        return work(tx)
                except psycopg.Error as exc:
                    if attempt == 1 and self._conn.broken:
                        continue
                    if isinstance(exc, (psycopg.DataError, psycopg.IntegrityError)):  # SQLSTATE 22, 23
                        raise TrackingStoreRejected(f"tracking store refused the data ({type(exc).__name__}, "
                                                    f"SQLSTATE {exc.sqlstate})") from None
                    raise TrackingStoreUnavailable(
                        f"tracking store read/write failed: {_first_line(exc)}") from None
                except _ENCODING_ERRORS as exc:
                    raise TrackingStoreRejected(f"tracking store refused the data ({type(exc).__name__})") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _first_line(exc: BaseException) -> str:
    """A driver message without the echoed statement lines (ids only ever, but keep it short)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def open_database(url: str, base: Path | None = None) -> Database:
    """``sqlite:///path`` (relative to ``base`` unless absolute) or ``postgresql://...``."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not str(path) or str(path) == ".":
            raise ConfigError("tracker.store: sqlite:/// needs a file path, e.g. sqlite:///var/hub-tracking.db")
        if not path.is_absolute() and base is not None:
            path = base / path
        return SqliteDatabase(path)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url)
    # never echo the URL: it may hold a password
    what = f"scheme '{url.split('://', 1)[0][:20]}://'" if "://" in url else "value (not a URL)"
    raise ConfigError(f"tracker.store: unsupported {what}: use sqlite:///path or postgresql://...")
