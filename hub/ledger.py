"""The delivery ledger: the hub's own record that makes delivery idempotent.

For each application (key: the AMQP ``message_id`` = nachrichtenUUID) it keeps the XTA MessageID
once created and whether the endpoint accepted the message. A redelivery after a crash or broker
restart therefore re-sends under the *same* XTA MessageID (the server answers 9024 if it already
has it) or is skipped when the ledger already says ``delivered``: the receiver sees each
application once. The write of the transport id happens before ``sendMessage``; the write of
``delivered`` after it.

Back ends: SQLite (default; one host, WAL, several processes) and PostgreSQL (several hosts),
chosen by URL: ``sqlite:///path/ledger.db`` or ``postgresql://host/db``.
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
    def mark_delivered(self, message_id: str) -> None: ...
    def forget(self, message_id: str) -> None: ...
    def close(self) -> None: ...


class _SqlLedger:
    """Shared SQL for both back ends; ``_run`` executes one statement in its own transaction."""

    placeholder = "?"

    def _run(self, sql: str, params: tuple[Any, ...] = (), fetch: bool = False) -> Any:
        raise NotImplementedError

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self.placeholder)

    def lookup(self, message_id: str) -> LedgerEntry | None:
        row = self._run(self._sql(
            "SELECT message_id, adapter, destination, transport_message_id, state FROM hub_deliveries "
            "WHERE message_id = ?"), (message_id,), fetch=True)
        return LedgerEntry(*row) if row else None

    def allocate(self, message_id: str, adapter: str, destination: str, transport_message_id: str) -> str:
        """Record ``transport_message_id`` unless the message already has one; return the id that
        counts. Two processes racing on the same message both end up sending under one id (the
        server then answers 9024 to the second), never under two. An entry of another adapter
        (the authority moved) that was never delivered is replaced."""
        now = time.time()
        self._run(self._sql(
            "INSERT INTO hub_deliveries (message_id, adapter, destination, transport_message_id, state, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (message_id) DO UPDATE SET adapter = excluded.adapter, "
            "transport_message_id = excluded.transport_message_id, updated_at = excluded.updated_at "
            "WHERE hub_deliveries.adapter <> excluded.adapter AND hub_deliveries.state = ?"),
            (message_id, adapter, destination, transport_message_id, ALLOCATED, now, now, ALLOCATED))
        entry = self.lookup(message_id)
        if entry is None:  # forgotten concurrently: ours is as good as any
            return transport_message_id
        return entry.transport_message_id

    def mark_delivered(self, message_id: str) -> None:
        self._run(self._sql("UPDATE hub_deliveries SET state = ?, updated_at = ? WHERE message_id = ?"),
                  (DELIVERED, time.time(), message_id))


    def forget(self, message_id: str) -> None:
        """Drop an allocation the endpoint refused for good, so a replay starts with a fresh id."""
        self._run(self._sql("DELETE FROM hub_deliveries WHERE message_id = ? AND state = ?"),
                  (message_id, ALLOCATED))


class SqliteLedger(_SqlLedger):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise ConfigError(f"ledger: cannot open SQLite database {path}: {exc}") from None

    def _run(self, sql: str, params: tuple[Any, ...] = (), fetch: bool = False) -> Any:
        try:
            with self._lock:
                cursor = self._db.execute(sql, params)
                return cursor.fetchone() if fetch else None
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
        except psycopg.Error as exc:
            raise ConfigError(f"ledger: cannot open PostgreSQL database: {exc}") from None

    def _connect(self) -> Any:
        """Bounded waits: a hung database must fail a delivery (transient), not block every thread."""
        return self._psycopg.connect(self._url, autocommit=True, connect_timeout=10,
                                     options="-c statement_timeout=5000", keepalives=1, keepalives_idle=30,
                                     keepalives_interval=10, keepalives_count=3)

    def _run(self, sql: str, params: tuple[Any, ...] = (), fetch: bool = False) -> Any:
        with self._lock:
            try:
                if self._db.closed:
                    self._db = self._connect()
                cursor = self._db.execute(sql, params)
                return cursor.fetchone() if fetch else None
            except self._psycopg.Error as exc:
                raise LedgerUnavailable(f"ledger write/read failed: {exc}") from None

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
