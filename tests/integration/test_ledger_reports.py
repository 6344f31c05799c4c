"""Pending transport reports in the ledger on PostgreSQL: the migration of an older ledger (two
processes at once) and leased claims from two connections (SQLite: tests/unit/test_report_scheduler.py)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

from hub.errors import ConfigError
from hub.ledger import ReportSchedule, open_ledger
from tests.integration.test_ledger import PG_URL

_OLD_SCHEMA = ("CREATE TABLE hub_deliveries (message_id TEXT PRIMARY KEY, adapter TEXT NOT NULL, destination TEXT "
               "NOT NULL, transport_message_id TEXT NOT NULL, state TEXT NOT NULL, created_at DOUBLE PRECISION "
               "NOT NULL, updated_at DOUBLE PRECISION NOT NULL)")


@pytest.fixture()
def old_database() -> Iterator[str]:
    """A database of its own holding a ledger from before the report columns."""
    import psycopg

    name = f"hub_ledger_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_URL, autocommit=True)
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_URL}: {exc}")
    admin.execute(f"CREATE DATABASE {name}")
    url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(_OLD_SCHEMA)
        db.execute("INSERT INTO hub_deliveries VALUES ('m-old', 'alpha', 'd', 't', 'delivered', 0, 0)")
    try:
        yield url
    finally:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


def test_old_postgres_ledger_is_migrated_by_processes_starting_at_once(old_database: str) -> None:
    opened, errors = [], []

    def open_one() -> None:
        try:
            opened.append(open_ledger(old_database))
        except (ConfigError, Exception) as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == [] and len(opened) == 4
        first, second = opened[0], opened[1]
        assert first.lookup("m-old").delivered
        mids = []
        for i in range(5):
            mid = f"m-{i}"
            first.allocate(mid, "alpha", "azr:000100", f"urn:xta:{i}")
            first.mark_delivered(mid, ReportSchedule("portal-a", None, 0.0))
            mids.append(mid)
        claimed = first.claim_reports("alpha", lease=60, limit=3)  # type: ignore[attr-defined]
        assert len(claimed) == 3 and claimed[0].portal == "portal-a" and claimed[0].polls == 0
        rest = second.claim_reports("alpha", lease=60, limit=10)  # type: ignore[attr-defined]
        assert sorted(r.message_id for r in claimed + rest) == mids  # each claimed once
        assert second.claim_reports("alpha", lease=60, limit=10) == []  # type: ignore[attr-defined]
        assert first.claim_reports("beta", lease=60, limit=10) == []  # type: ignore[attr-defined]
        first.reschedule_report("m-0", delay=0.0, polls=1, open_sent=True)  # type: ignore[attr-defined]
        [again] = second.claim_reports("alpha", lease=60, limit=10)  # type: ignore[attr-defined]
        assert (again.message_id, again.polls, again.open_sent) == ("m-0", 1, True)
        first.finish_report("m-0")  # type: ignore[attr-defined]
    finally:
        for led in opened:
            led.close()
