"""Content the database refuses for good is a permanent error (``TrackingStoreRejected``), not an
outage: the tracker dead-letters that one event instead of retrying its batch forever. Real
SQLite and the real local PostgreSQL (a refusing trigger or constraint stands in for whatever
value a database may refuse); a PostgreSQL database that is not UTF8 is refused at open."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from hub.errors import ConfigError
from hub.status import StatusEvent
from hub.tracking.model import Scope, TrackingStore
from hub.tracking.sql import TrackingStoreRejected, open_database
from hub.tracking.store import open_store
from tests.unit.tracking.conftest import PG_URL, _with_database

T0 = 1_790_000_000.0


def _event(mid: str) -> StatusEvent:
    return StatusEvent(mid, "accepted", "portal-a", "azr:000100", "alpha", at=T0, attempt=1)


def refuse_poison(store_url: str, how: str) -> None:
    """Make the database refuse events whose message_id is 'poison' (as a database refuses a value)."""
    if store_url.startswith("sqlite"):  # one kind of refusal there (a constraint error), whatever ``how``
        db = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        db.execute("CREATE TRIGGER poison BEFORE INSERT ON tracking_events WHEN NEW.message_id = 'poison' "
                   "BEGIN SELECT RAISE(ABORT, 'Zyxwv-refusal-text'); END")
        db.commit()
        db.close()
        return
    with psycopg.connect(store_url, autocommit=True) as conn:
        if how == "constraint":  # SQLSTATE class 23
            conn.execute("ALTER TABLE tracking_events ADD CONSTRAINT no_poison CHECK (message_id <> 'poison')")
        else:  # SQLSTATE class 22
            conn.execute("CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                         "IF NEW.message_id = 'poison' THEN RAISE EXCEPTION 'Zyxwv-refusal-text' USING ERRCODE = '22023'; "
                         "END IF; RETURN NEW; END $$")
            conn.execute("CREATE TRIGGER poison BEFORE INSERT ON tracking_events FOR EACH ROW "
                         "EXECUTE FUNCTION refuse_poison()")


@pytest.mark.parametrize("how", ["data_exception", "constraint"])
def test_a_refused_value_is_a_permanent_error_and_the_store_goes_on(store_url: str, store: TrackingStore,
                                                                    how: str) -> None:
    refuse_poison(store_url, how)
    with pytest.raises(TrackingStoreRejected) as caught:
        store.ingest([_event("good-1"), _event("poison")])
    assert not caught.value.transient
    assert "poison" not in str(caught.value) and "Zyxwv" not in str(caught.value)  # class and SQLSTATE only
    assert store.trace("good-1", Scope.operator()) == []  # one transaction: nothing of the batch
    assert store.ingest([_event("good-1"), _event("good-2")]) == 2
    assert len(store.trace("good-2", Scope.operator())) == 1


def test_text_the_driver_cannot_encode_is_a_permanent_error(store_url: str,
                                                           open_: Callable[[], TrackingStore]) -> None:
    open_()  # the schema
    db = open_database(store_url)
    try:
        with pytest.raises(TrackingStoreRejected):
            db.run(lambda tx: tx.execute("INSERT INTO tracking_events (event_id, message_id, portal, event, at, "
                                         "precedence, destination, detail) VALUES (?, ?, 'p', 'accepted', 1, 10, "
                                         "'d', '{}')", ("e-1", "lone \udc80 surrogate")), write=True)
        assert db.run(lambda tx: tx.query("SELECT COUNT(*) FROM tracking_events"), write=False)[0][0] == 0
    finally:
        db.close()


@pytest.fixture
def latin1_url(pg_admin: psycopg.Connection) -> Iterator[str]:
    name = f"hub_tracking_latin1_{uuid.uuid4().hex[:8]}"
    pg_admin.execute(f"CREATE DATABASE \"{name}\" ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
    try:
        yield _with_database(PG_URL, name)
    finally:
        pg_admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_postgresql_database_that_is_not_utf8_is_refused(latin1_url: str) -> None:
    with pytest.raises(ConfigError, match="server_encoding is LATIN1, not UTF8"):
        open_store(latin1_url)
