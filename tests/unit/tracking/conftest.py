"""Fixtures of the tracking-store tests: every test runs on SQLite (a fresh file) and on the real
local PostgreSQL (a fresh database per test, dropped afterwards). PostgreSQL missing is a FAILURE,
never a skip: the PostgreSQL half of the store would otherwise go untested without anyone noticing."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from hub.tracking.model import TrackingStore
from hub.tracking.store import open_store

PG_URL = os.environ.get("TRACKING_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[psycopg.Connection]:
    try:
        conn = psycopg.connect(PG_URL, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL is not reachable at {urlsplit(PG_URL).hostname}:{urlsplit(PG_URL).port} "
                    f"({exc}); start it or set TRACKING_TEST_PG_URL")
    yield conn
    conn.close()


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@pytest.fixture
def pg_url(pg_admin: psycopg.Connection) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards, connections and all)."""
    name = f"hub_tracking_{uuid.uuid4().hex[:12]}"
    pg_admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(PG_URL, name)
    finally:
        pg_admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store (no schema yet)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tracking.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def open_(store_url: str) -> Iterator[Callable[[], TrackingStore]]:
    """Opens stores on ``store_url`` (several may be open at once); all are closed afterwards."""
    opened: list[TrackingStore] = []

    def make() -> TrackingStore:
        store = open_store(store_url)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(open_: Callable[[], TrackingStore]) -> TrackingStore:
    return open_()
