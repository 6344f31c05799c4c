"""Versioned schema of the tracking store, applied when a store is opened.

``MIGRATIONS`` is an ordered list of (version, statements). Each migration runs once, in its own
transaction together with the row in ``tracking_schema_version`` that records it, so a crash
half-way leaves the previous version intact. Concurrent starts (two tracker processes, a tracker and
``hub trace``) are safe: the transaction takes the writers' lock first (SQLite ``BEGIN IMMEDIATE``,
PostgreSQL advisory lock) and re-reads the version under it. A store written by a newer hub
(version above ``LATEST``) is refused instead of being misread.

Never edit a released migration: append a new one. ``{id}`` in a statement is an id column's type
(PostgreSQL compares ids byte-wise, as SQLite and Python do, whatever the database's locale).
"""

from __future__ import annotations

import time

from hub.errors import ConfigError
from hub.tracking.sql import Database, Tx

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, (
        # Every status event once (event_id), as received; ``detail`` is JSON text.
        """CREATE TABLE tracking_events (
            event_id {id} PRIMARY KEY,
            message_id {id} NOT NULL,
            portal {id} NOT NULL,
            event TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            precedence INTEGER NOT NULL,
            destination TEXT NOT NULL,
            adapter TEXT,
            attempt INTEGER,
            reason TEXT,
            correlation_id {id},
            transport_message_id {id},
            application_ref {id},
            detail TEXT NOT NULL
        )""",
        # an application's timeline
        "CREATE INDEX tracking_events_message ON tracking_events (message_id, at, precedence, event_id)",
        # trace by transport message id (an application's XTA ids, a reply's XTA id)
        "CREATE INDEX tracking_events_transport ON tracking_events (transport_message_id)",
        # replies that name no message id, linked to their application by (portal, application_ref)
        "CREATE INDEX tracking_events_reply_ref ON tracking_events (application_ref, portal) WHERE message_id = ''",
        # retention: events older than the cutoff whose application is gone or never came
        "CREATE INDEX tracking_events_at ON tracking_events (at, event_id)",
        # One row per application: its current summary, recomputed from its events on ingest.
        """CREATE TABLE tracking_applications (
            message_id {id} PRIMARY KEY,
            portal {id} NOT NULL,
            destination TEXT NOT NULL,
            state TEXT,
            state_at DOUBLE PRECISION,
            first_at DOUBLE PRECISION NOT NULL,
            last_at DOUBLE PRECISION NOT NULL,
            adapter TEXT,
            correlation_id {id},
            application_ref {id},
            transport_message_id {id},
            reason TEXT,
            attempts INTEGER NOT NULL,
            transport_report TEXT,
            replies INTEGER NOT NULL
        )""",
        # keyset pages, newest first: all, and narrowed by portal / destination / state
        "CREATE INDEX tracking_apps_last ON tracking_applications (last_at, message_id)",
        "CREATE INDEX tracking_apps_portal ON tracking_applications (portal, last_at, message_id)",
        "CREATE INDEX tracking_apps_destination ON tracking_applications (destination, last_at, message_id)",
        "CREATE INDEX tracking_apps_state ON tracking_applications (state, last_at, message_id)",
        # trace by correlation id; a reply's application by (portal, application_ref)
        "CREATE INDEX tracking_apps_correlation ON tracking_applications (correlation_id, portal)",
        "CREATE INDEX tracking_apps_ref ON tracking_applications (application_ref, portal)",
    )),
)
LATEST = MIGRATIONS[-1][0]

_ID_TYPE = {"sqlite": "TEXT", "postgresql": 'TEXT COLLATE "C"'}
_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS tracking_schema_version (
    version INTEGER PRIMARY KEY,
    applied_at DOUBLE PRECISION NOT NULL
)"""


def migrate(db: Database) -> int:
    """Bring the schema to ``LATEST``, one migration per transaction; returns the version."""
    versions = [v for v, _ in MIGRATIONS]
    if versions != list(range(1, len(versions) + 1)):
        raise ConfigError("tracking store: migrations must be numbered 1, 2, 3, ... without gaps")
    while True:
        version = db.run(_step, write=True)
        if version is not None:
            return version


def _step(tx: Tx) -> int | None:
    """Apply the next migration; the version once there is nothing left to apply."""
    tx.execute(_VERSION_TABLE)
    current = int(tx.query("SELECT MAX(version) FROM tracking_schema_version")[0][0] or 0)
    if current > LATEST:
        raise ConfigError(
            f"tracking store: its schema is version {current}, this hub knows up to {LATEST}: "
            "a newer hub wrote it; upgrade this hub (never downgrade a store)")
    if current == LATEST:
        return current
    version, statements = MIGRATIONS[current]
    for statement in statements:
        tx.execute(statement.replace("{id}", _ID_TYPE[tx.dialect]))
    tx.execute("INSERT INTO tracking_schema_version (version, applied_at) VALUES (?, ?)", (version, time.time()))
    return None
