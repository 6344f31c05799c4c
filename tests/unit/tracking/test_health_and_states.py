"""The tracker's /healthz follows its consumer loop; hub_tracker_applications{state} is counted in
the store off the scrape's path (at most once a minute), so a slow store never holds /metrics, and
never fails it; build info names the tracker."""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.test import Client

from hub.config import HubConfig, load_config
from hub.errors import TrackingStoreUnavailable
from hub.status import ACCEPTED, DEAD_LETTERED, DELIVERED, StatusEvent
from hub.tracking.migrations import migrate
from hub.tracking.model import ApplicationFilter, Scope
from hub.tracking.service import ApplicationStates, TrackerService
from hub.tracking.sql import open_database
from hub.tracking.store import NO_FILTER, SqlTrackingStore
from tests.integration.helpers import wait_for
from tests.unit.tracking.test_service import _config_file


@pytest.fixture
def config(tmp_path: Path) -> HubConfig:
    return load_config(_config_file(tmp_path))


def _events() -> list[StatusEvent]:
    t0 = time.time() - 60
    return [StatusEvent("m1", ACCEPTED, "portal-a", "azr:000100", "alpha", at=t0, attempt=1),
            StatusEvent("m1", DELIVERED, "portal-a", "azr:000100", "alpha", at=t0 + 1, attempt=1),
            StatusEvent("m2", DELIVERED, "portal-b", "azr:000100", "alpha", at=t0 + 2, attempt=1),
            StatusEvent("m3", DEAD_LETTERED, "portal-a", "azr:000100", "alpha", at=t0 + 3, attempt=1,
                        reason="xta_9012")]


def test_applications_per_state_and_build_info_on_metrics(config: HubConfig) -> None:
    service = TrackerService(config, http_port=0)
    try:
        service.store.ingest(_events())
        client = Client(service._server.app)
        registry = service.registry
        # counted on a thread of its own; the first scrape waits up to 1 s for it (more on a busy CI)
        wait_for(lambda: registry.get_sample_value("hub_tracker_applications", {"state": DELIVERED}) is not None,
                 30, what="the first counts")
        assert registry.get_sample_value("hub_tracker_applications", {"state": DELIVERED}) == 2
        assert registry.get_sample_value("hub_tracker_applications", {"state": DEAD_LETTERED}) == 1
        assert registry.get_sample_value("hub_build_info", {"process": "tracker", "version": _version(),
                                                            "python": _python()}) == 1
        text = client.get("/metrics").get_data(as_text=True)
        assert 'hub_tracker_applications{state="delivered"} 2.0' in text
    finally:
        service.close(timeout=5)


def _version() -> str:
    from hub import __version__

    return __version__


def _python() -> str:
    import platform

    return platform.python_version()


def test_a_store_that_cannot_answer_gives_no_sample_and_is_logged_at_most_once_a_minute(
        caplog: pytest.LogCaptureFixture) -> None:
    class Down:
        def counts(self, *_args: object) -> dict[str, int]:
            raise TrackingStoreUnavailable("tracking store read/write failed: host db-7")

    now = [0.0]
    collector = ApplicationStates(Down(), every=10, wait=30, clock=lambda: now[0])  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="hub.tracker"):
        for step in range(4):  # 0, 20, 40, 60 s: a refresh (and a failure) each time
            now[0] = step * 20.0
            assert list(collector.collect()) == []
    lines = [r for r in caplog.records if "hub_tracker_applications" in r.getMessage()]
    assert len(lines) == 2  # at 0 s and at 60 s
    assert "db-7" not in lines[0].getMessage()


def test_healthz_follows_the_consumer_loop(config: HubConfig) -> None:
    service = TrackerService(config, http_port=0)
    try:
        client = Client(service._server.app)
        answer = client.get("/healthz")
        assert answer.status_code == 200 and answer.get_data(as_text=True) == "ok\n"
        now = [time.monotonic() + 120]  # the loop has not ticked for two minutes
        service.consumer.heartbeat._clock = lambda: now[0]
        answer = client.get("/healthz")
        assert answer.status_code == 503
        assert answer.get_data(as_text=True).startswith("tracker consume loop stalled for ")
    finally:
        service.close(timeout=5)


class SlowCounts(SqlTrackingStore):
    """A real SQLite store whose counts query hangs (up to 30 s) until ``release`` is set: a slow
    or hung database, as the scrape would meet it."""

    def __init__(self, url: str) -> None:
        db = open_database(url)
        migrate(db)
        super().__init__(db)
        self.release = threading.Event()
        self.calls = 0

    def counts(self, scope: Scope, flt: ApplicationFilter = NO_FILTER) -> dict[str, int]:
        self.calls += 1
        self.release.wait(30)
        return super().counts(scope, flt)


@pytest.fixture
def slow_store(config: HubConfig) -> Iterator[SlowCounts]:
    store = SlowCounts(config.tracker.store)
    yield store
    store.release.set()
    store.close()


def _scrape(url: str) -> tuple[float, str]:
    started = time.monotonic()
    with urllib.request.urlopen(f"{url}/metrics", timeout=60) as answer:
        text = answer.read().decode()
    return time.monotonic() - started, text


def test_a_hung_counts_query_never_holds_the_scrape(config: HubConfig, slow_store: SlowCounts) -> None:
    service = TrackerService(config, http_port=0, store=slow_store).start()  # its consumer finds no broker: fine
    try:
        slow_store.ingest(_events())
        for _ in range(3):  # the first starts the count and waits 1 s for it; the others do not ask again
            took, text = _scrape(service.url)
            assert took < 10, f"/metrics took {took:.1f} s while the store hung"  # the count hangs 30 s
            assert "hub_tracker_applications{" not in text  # nothing counted yet: no sample, not 0
            assert "hub_tracker_lag_seconds" in text
        assert slow_store.calls == 1
        slow_store.release.set()
        wait_for(lambda: 'hub_tracker_applications{state="delivered"} 2.0' in _scrape(service.url)[1], 30,
                 what="the counts once the store answered")
        assert slow_store.calls == 1  # answered from the cache, not a second query
    finally:
        service.close(timeout=5)


def test_no_counts_query_and_no_sample_while_the_consumer_reports_a_store_problem(
        config: HubConfig, slow_store: SlowCounts) -> None:
    slow_store.release.set()
    service = TrackerService(config, http_port=0, store=slow_store)
    try:
        slow_store.ingest(_events())
        service.consumer._store_problem = "tracking store read/write failed"  # as after a failed write
        assert service.registry.get_sample_value("hub_tracker_applications", {"state": DELIVERED}) is None
        assert slow_store.calls == 0
        service.consumer._store_problem = None  # a write succeeded again
        wait_for(lambda: service.registry.get_sample_value("hub_tracker_applications", {"state": DELIVERED}) == 2,
                 30, what="the counts after the store recovered")
    finally:
        service.close(timeout=5)


def test_counts_are_refreshed_once_a_minute_and_dropped_when_too_old() -> None:
    class Store:
        def __init__(self) -> None:
            self.calls = 0
            self.hang = threading.Event()
            self.release = threading.Event()

        def counts(self, *_args: object) -> dict[str, int]:
            self.calls += 1
            if self.hang.is_set():
                self.release.wait(30)
            return {DELIVERED: self.calls}

    store = Store()
    now = [0.0]
    states = ApplicationStates(store, wait=30, clock=lambda: now[0])  # type: ignore[arg-type]
    try:
        assert states.current() == {DELIVERED: 1}
        now[0] = 59.0
        assert states.current() == {DELIVERED: 1} and store.calls == 1  # not due yet
        now[0] = 60.0
        assert states.current() == {DELIVERED: 2}  # due: counted again
        store.hang.set()
        now[0] = 120.0
        states._wait = 0.1
        assert states.current() == {DELIVERED: 2}  # the refresh hangs: the last counts, 60 s old, are served
        now[0] = 241.0
        assert states.current() is None  # more than three minutes old: no sample rather than stale counts
        assert store.calls == 3  # no second query while one hangs
    finally:
        store.release.set()
