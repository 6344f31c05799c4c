"""The tracker process around its consumer, without a broker: a crashed consumer makes `hub tracker`
exit non-zero (never 0 with nothing consuming); /readyz reasons are generic (no hosts, users or
driver messages without a token); an unusable tokens file makes the tracker not ready."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
import tomli_w
from click.testing import CliRunner
from prometheus_client import CollectorRegistry
from werkzeug.test import Client

from hub.cli import main
from hub.config import HubConfig, load_config
from hub.errors import TrackingStoreUnavailable
from hub.tracking.auth import hash_token
from hub.tracking.consumer import StatusConsumer, TrackerConsumerFailed, TrackerMetrics
from hub.tracking.service import TrackerService, run_tracker
from hub.tracking.store import open_store

SECRET = 'connection to server at "db-7.internal" (10.9.8.7), port 5432 failed: user "hub_secret_user"'


def _config_file(tmp_path: Path) -> Path:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'[[tokens]]\nname = "a"\nportal = "portal-a"\nsha256 = "{hash_token("tok-a")}"\n')
    path = tmp_path / "hub.toml"
    path.write_text(tomli_w.dumps({
        "broker": {"url": "amqp://guest:guest@127.0.0.1:1/%2F"},  # nothing listens: never reached here
        "tracker": {"store": f"sqlite:///{tmp_path / 'tracking.db'}", "port": 0, "tokens_file": str(tokens)}}))
    return path


@pytest.fixture
def config(tmp_path: Path) -> HubConfig:
    return load_config(_config_file(tmp_path))


def _crash(self: StatusConsumer) -> None:
    raise RuntimeError("a bug in the consumer")


def test_an_unexpected_error_ends_the_consumer_with_an_error_and_a_traceback(
        config: HubConfig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(StatusConsumer, "_run_connected", _crash)
    store = open_store(config.tracker.store)
    try:
        consumer = StatusConsumer(config, store, TrackerMetrics(CollectorRegistry()))
        with caplog.at_level(logging.ERROR, logger="hub.tracker"):
            consumer.run()  # returns: the error is kept, not raised into a thread nobody joins
    finally:
        store.close()
    assert isinstance(consumer.error, TrackerConsumerFailed)
    assert consumer.readiness() == (False, "tracker consumer stopped (see the log)")
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is not None and "failed unexpectedly" in record.getMessage()


def test_run_tracker_raises_when_its_consumer_ends_by_itself(config: HubConfig,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(StatusConsumer, "run", lambda self: None)  # a thread that just ends, saying nothing
    with pytest.raises(TrackerConsumerFailed):
        run_tracker(config, http_port=0, stop=threading.Event())


def test_hub_tracker_exits_non_zero_when_its_consumer_crashes(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(StatusConsumer, "_run_connected", _crash)
    result = CliRunner().invoke(main, ["--config", str(_config_file(tmp_path)), "tracker", "--http-port", "0"])
    assert result.exit_code == 1, result.output
    assert "tracker consumer failed unexpectedly" in result.stderr and "Traceback" not in result.stderr


def test_readyz_reasons_are_generic_and_the_details_go_to_the_log(
        config: HubConfig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    service = TrackerService(config, http_port=0)
    try:
        client = Client(service._server.app)
        # the store: its last write failed
        service.consumer.connected.set()
        service.consumer._store_problem = f"tracking store read/write failed: {SECRET}"
        answer = client.get("/readyz")
        assert answer.status_code == 503 and answer.get_data(as_text=True) == "tracking store unreachable\n"
        # the store: the probe query fails
        service.consumer._store_problem = None

        def down(*_args: object) -> None:
            raise TrackingStoreUnavailable(f"tracking store read/write failed: {SECRET}")

        monkeypatch.setattr(service.store, "trace", down)
        with caplog.at_level(logging.WARNING, logger="hub.tracker"):
            answer = client.get("/readyz")
        assert answer.status_code == 503 and answer.get_data(as_text=True) == "tracking store unreachable\n"
        assert any(SECRET in r.getMessage() for r in caplog.records)  # the operator still learns why
        # the broker
        service.consumer.connected.clear()
        service.consumer.outage.down("broker connection lost")
        text = client.get("/readyz").get_data(as_text=True)
        assert text.startswith("broker connection lost, reconnecting since ")
        assert "db-7" not in text and "hub_secret_user" not in text
    finally:
        service.close(timeout=5)


def test_an_unusable_tokens_file_makes_the_tracker_not_ready(config: HubConfig) -> None:
    service = TrackerService(config, http_port=0)
    try:
        service.consumer.connected.set()
        assert service.ready() == (True, "consuming hub.tracker; store ok")
        assert config.tracker.tokens_file is not None
        config.tracker.tokens_file.write_text('[[tokens]]\nname = "half')
        service.tokens._checked_at -= 10  # look at the file now
        assert service.ready() == (False, "tokens file unusable")
        answer = Client(service._server.app).get("/api/v1/counts", headers={"Authorization": "Bearer tok-a"})
        assert answer.status_code == 401
    finally:
        service.close(timeout=5)


def test_secure_cookies_from_the_config_reach_the_page(tmp_path: Path) -> None:
    config = load_config(_config_file(tmp_path))
    proxied = config.model_copy(update={"tracker": config.tracker.model_copy(update={"secure_cookies": True})})
    for cfg, secure in ((config, False), (proxied, True)):
        service = TrackerService(cfg, http_port=0)
        try:
            answer = Client(service._server.app).post("/ui/login", data={"token": "tok-a"})  # plain http
            assert answer.status_code == 303
            assert ("Secure" in answer.headers["Set-Cookie"]) is secure
        finally:
            service.close(timeout=5)
