"""A far side that answers nonsense (pitfall 11), then recovers: every application is delivered
exactly once, none is dead-lettered, and the circuit breaker opened and closed again.

The simulator's garbage window runs on a stepped clock: it ends when the test steps the clock, once
the worker has shown what it does with the nonsense (breaker open, a failed probe, and for the
long run at least 30 s of it), so a busy machine cannot make the window pass unseen."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.clock import SteppedClock
from tests.reliability.support import (
    WorkerProcess,
    applications,
    load,
    metric_value,
    publish,
    simulator_settings,
    wait_accounted,
    write_config,
)
from transport.xta.simulator import ChaosConfig, Outage, serve

pytestmark = pytest.mark.broker

WINDOW = 3600.0  # simulator seconds: the window ends only when the test steps the clock

# (kind, wall-clock seconds of nonsense at least): the case for 30 s, the others shorter
CASES = [("empty-body", 30.0), ("html", 0.0), ("soap11", 0.0), ("truncated-mtom", 0.0)]


def _wait_metrics(worker: WorkerProcess, check, timeout: float, what: str) -> str:
    deadline = time.monotonic() + timeout
    while True:
        metrics = worker.metrics()
        if check(metrics):
            return metrics
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout}s; log: {worker.log_path}")
        time.sleep(0.5)


@pytest.mark.parametrize("kind, seconds", CASES, ids=[c[0] for c in CASES])
def test_garbage_window_then_recovery_delivers_all_exactly_once(broker_url, pki, tmp_path: Path, kind: str,
                                                               seconds: float) -> None:
    clock = SteppedClock()
    running = serve(simulator_settings(pki, clock=clock))
    config_path = write_config(tmp_path, broker_url, pki, running.url,
                               adapter={"retry_delays": [1, 2, 4, 8, 16, 32, 64]})
    config = load(config_path)
    envelopes = applications(60, f"garbage-{kind}", readers=("azr:000100", "azr:000200"))
    worker = WorkerProcess(config_path, "alpha", tmp_path).start()
    try:
        running.simulator.configure_chaos(ChaosConfig(outages=(Outage(0, WINDOW, kind),)))
        window_opened = time.monotonic()
        publish(config, envelopes)
        # the nonsense is counted: the breaker opens, and a probe after the cool-down fails again
        metrics = _wait_metrics(worker, lambda m: metric_value(
            m, "hub_circuit_breaker_transitions_total", state="open") >= 2, 120, "breaker open, probe failed")
        assert metric_value(metrics, "hub_delivery_failures_total", reason="endpoint_protocol") >= 5
        assert metric_value(metrics, "hub_messages_processed_total", outcome="retry_scheduled") >= 1
        assert metric_value(metrics, "hub_messages_processed_total", outcome="delivered") == 0
        assert metric_value(metrics, "hub_messages_dead_lettered_total") == 0
        time.sleep(max(0.0, seconds - (time.monotonic() - window_opened)))
        metrics = worker.metrics()
        assert metric_value(metrics, "hub_messages_processed_total", outcome="delivered") == 0
        assert metric_value(metrics, "hub_messages_dead_lettered_total") == 0
        clock.advance(WINDOW)  # the far side recovers
        garbage_seconds = time.monotonic() - window_opened
        acc = wait_accounted(running.store, config.broker, envelopes, timeout=240)
        metrics = _wait_metrics(worker, lambda m: metric_value(m, "hub_circuit_breaker_state") == 0, 60,
                                "closed breaker")
    finally:
        worker.kill()
        running.stop()
    lost, duplicated, both = acc.check(envelopes)
    assert (lost, duplicated, both) == ([], [], [])
    assert acc.dead == {}, f"dead letters: {acc.dead}"
    assert sum(acc.delivered.values()) == len(envelopes)
    assert metric_value(metrics, "hub_circuit_breaker_transitions_total", state="closed") >= 1
    assert metric_value(metrics, "hub_messages_dead_lettered_total") == 0
    print(f"\n{kind}: {garbage_seconds:.0f}s of nonsense, "
          f"{metric_value(metrics, 'hub_delivery_failures_total', reason='endpoint_protocol'):.0f} endpoint_protocol "
          f"failures, {metric_value(metrics, 'hub_circuit_breaker_transitions_total', state='open'):.0f} breaker "
          f"openings, {sum(acc.delivered.values())} delivered once, 0 dead letters")
