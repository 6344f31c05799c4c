"""Liveness (/healthz) follows the main loop's heartbeat; the stage observer never fails a delivery."""

from __future__ import annotations

import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from hub.health import Heartbeat, all_alive
from hub.http import OpsServer
from hub.metrics import WorkerMetrics, register_build_info
from hub.stages import timed
from hub.worker import AdapterWorker


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_heartbeat_is_alive_while_it_ticks_and_says_how_long_it_stalled() -> None:
    now = [100.0]
    beat = Heartbeat("consume loop", stall_after=60, clock=lambda: now[0])
    assert beat() == (True, "ok")
    now[0] += 60
    assert beat()[0] is True  # at the limit: still alive
    now[0] += 15
    assert beat() == (False, "consume loop stalled for 75 s")
    beat.tick()
    assert beat() == (True, "ok")


def test_all_alive_names_every_stalled_loop() -> None:
    now = [0.0]
    a = Heartbeat("mailbox poller a", stall_after=10, clock=lambda: now[0])
    b = Heartbeat("mailbox poller b", stall_after=100, clock=lambda: now[0])
    check = all_alive(a, b)
    assert check() == (True, "ok")
    now[0] = 50
    assert check() == (False, "mailbox poller a stalled for 50 s")


def test_ops_server_healthz_answers_503_with_the_reason_when_the_loop_stalls() -> None:
    now = [0.0]
    beat = Heartbeat("consume loop", stall_after=60, clock=lambda: now[0])
    ops = OpsServer(CollectorRegistry(), lambda: (True, "ready"), live=beat).start()
    try:
        assert _get(f"{ops.url}/healthz") == (200, "ok\n")
        now[0] = 90
        assert _get(f"{ops.url}/healthz") == (503, "consume loop stalled for 90 s\n")
        assert _get(f"{ops.url}/readyz") == (200, "ready\n")  # readiness is a separate question
        beat.tick()
        assert _get(f"{ops.url}/healthz") == (200, "ok\n")
    finally:
        ops.stop()


def test_ops_server_without_a_liveness_check_is_alive() -> None:
    ops = OpsServer(CollectorRegistry(), lambda: (False, "not ready")).start()
    try:
        assert _get(f"{ops.url}/healthz") == (200, "ok\n")
    finally:
        ops.stop()


def test_the_stage_observer_never_raises_into_the_delivery() -> None:
    class Broken:
        def labels(self, *_args: str) -> None:
            raise RuntimeError("registry trouble")

    worker = SimpleNamespace(adapter="alpha", metrics=SimpleNamespace(stage_duration=Broken()))
    AdapterWorker._observe_stage(worker, "sign", 0.002)  # type: ignore[arg-type]  # no exception
    registry = CollectorRegistry()
    worker.metrics = WorkerMetrics(registry)
    AdapterWorker._observe_stage(worker, "sign", 0.002)  # type: ignore[arg-type]
    assert registry.get_sample_value("hub_stage_duration_seconds_count", {"adapter": "alpha", "stage": "sign"}) == 1


def test_build_info_names_version_python_and_process() -> None:
    from hub import __version__

    registry = CollectorRegistry()
    register_build_info(registry, "worker")
    [sample] = [s for f in registry.collect() if f.name == "hub_build_info" for s in f.samples]
    assert sample.value == 1
    assert sample.labels["version"] == __version__ and sample.labels["process"] == "worker"


def test_an_unknown_stage_fails_also_without_an_observer() -> None:
    """A misspelt stage must fail every test that runs through it, not only observed deliveries."""
    with pytest.raises(ValueError, match="unknown stage 'sgin'"), timed("sgin"):
        pass
    with timed("sign"):  # a known one costs nothing without an observer
        pass
