"""The delivery ledger on both back ends: SQLite (default) and the real local PostgreSQL."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from hub.errors import ConfigError
from hub.ledger import ALLOCATED, DELIVERED, open_ledger

PG_URL = os.environ.get("HUB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path: Path):
    if request.param == "sqlite":
        led = open_ledger("sqlite:///ledger.db", base=tmp_path)
    else:
        try:
            led = open_ledger(PG_URL)
        except ConfigError as exc:
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL}: {exc}")
    yield led
    led.close()


def test_allocate_then_deliver(ledger) -> None:
    mid = str(uuid.uuid4())
    assert ledger.lookup(mid) is None
    assert ledger.allocate(mid, "advis", "azr:000100", "urn:xta:1") == "urn:xta:1"
    entry = ledger.lookup(mid)
    assert (entry.transport_message_id, entry.state, entry.delivered) == ("urn:xta:1", ALLOCATED, False)
    # a second process racing on the same message gets the first id back, not its own
    assert ledger.allocate(mid, "advis", "azr:000100", "urn:xta:other") == "urn:xta:1"
    # the authority moved to another adapter before delivery: that adapter's id replaces it
    assert ledger.allocate(mid, "auso", "azr:000100", "urn:xta:2") == "urn:xta:2"
    ledger.mark_delivered(mid)
    entry = ledger.lookup(mid)
    assert entry.state == DELIVERED and entry.delivered
    # once delivered, nothing replaces the record
    assert ledger.allocate(mid, "advis", "azr:000100", "urn:xta:3") == "urn:xta:2"
    assert ledger.lookup(mid).delivered


def _run_in_threads(work: Callable[[int], object], count: int) -> list[object]:
    """Run ``work(0..count-1)`` on ``count`` threads; every thread must finish, none may raise (an
    exception in a thread is otherwise only a warning, and a dead racer would go unnoticed)."""
    results: dict[int, object] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        try:
            value = work(n)
        except BaseException as exc:  # noqa: BLE001 - reported below, with the thread's number
            with lock:
                errors.append(exc)
            return
        with lock:
            results[n] = value

    threads = [threading.Thread(target=run, args=(n,), name=f"ledger-racer-{n}") for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not [t.name for t in threads if t.is_alive()], "threads still running after 120 s"
    assert not errors, errors
    assert sorted(results) == list(range(count))
    return [results[n] for n in range(count)]


def test_racing_allocations_agree_on_one_id(ledger) -> None:
    mid = str(uuid.uuid4())
    barrier = threading.Barrier(4)

    def race(n: int) -> str:
        barrier.wait(60)
        return ledger.allocate(mid, "advis", "azr:000100", f"urn:xta:{n}")

    results = _run_in_threads(race, 4)
    assert len(set(results)) == 1 and results[0] == ledger.lookup(mid).transport_message_id


def test_forget_drops_only_undelivered_allocations(ledger) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    ledger.allocate(a, "x", "azr:1", "t-a")
    ledger.allocate(b, "x", "azr:1", "t-b")
    ledger.mark_delivered(b)
    ledger.forget(a)
    ledger.forget(b)
    assert ledger.lookup(a) is None
    assert ledger.lookup(b).delivered


def test_concurrent_writers(ledger) -> None:
    ids = [str(uuid.uuid4()) for _ in range(200)]

    def work(n: int) -> None:
        for mid in ids[n::4]:
            ledger.allocate(mid, "a", "azr:1", f"t-{mid}")
            ledger.mark_delivered(mid)

    _run_in_threads(work, 4)
    assert all(ledger.lookup(mid).delivered for mid in ids)


def test_survives_reopen(tmp_path: Path) -> None:
    led = open_ledger("sqlite:///l.db", base=tmp_path)
    led.allocate("m", "a", "azr:1", "t")
    led.close()
    again = open_ledger(f"sqlite:///{tmp_path / 'l.db'}")
    assert again.lookup("m").transport_message_id == "t"
    again.close()


def test_bad_url() -> None:
    with pytest.raises(ConfigError, match="unsupported scheme"):
        open_ledger("redis://localhost")
