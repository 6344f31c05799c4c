"""The tracker's /healthz follows its consumer loop; hub_tracker_applications{state} is read from
the store at scrape time and never fails /metrics; build info names the tracker."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import tomli_w
from werkzeug.test import Client

from hub.config import HubConfig, load_config
from hub.errors import TrackingStoreUnavailable
from hub.status import ACCEPTED, DEAD_LETTERED, DELIVERED, StatusEvent
from hub.tracking.auth import hash_token
from hub.tracking.service import ApplicationStates, TrackerService


@pytest.fixture
def config(tmp_path: Path) -> HubConfig:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'[[tokens]]\nname = "a"\nportal = "portal-a"\nsha256 = "{hash_token("tok-a")}"\n')
    path = tmp_path / "hub.toml"
    path.write_text(tomli_w.dumps({
        "broker": {"url": "amqp://guest:guest@127.0.0.1:1/%2F"},  # nothing listens: never reached here
        "tracker": {"store": f"sqlite:///{tmp_path / 'tracking.db'}", "port": 0, "tokens_file": str(tokens)}}))
    return load_config(path)


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
    collector = ApplicationStates(Down(), clock=lambda: now[0])  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="hub.tracker"):
        for step in range(4):  # 0, 20, 40, 60 s
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
