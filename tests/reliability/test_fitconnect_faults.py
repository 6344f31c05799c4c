"""FIT-Connect under faults, on the real broker with real `hub worker` processes and the real
simulator over loopback: a worker SIGKILLed mid-run submits every application exactly once (a
resumed attempt re-uses its recorded submission and asks the case's event log before submitting);
a 429 storm and a 30 s outage of the delivery service end with everything delivered once, nothing
dead-lettered, and the breaker opened and closed again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from hub.config import BrokerConfig
from hub.envelope import Envelope
from tests.reliability.fitconnect_support import (
    ADAPTER,
    DESTINATIONS,
    CrashAt,
    CrashingSimulator,
    account,
    content_mismatches,
    delivered,
    incomplete,
    wait_accounted,
    wait_idle,
    wait_until,
    write_fitconnect_config,
)
from tests.reliability.support import (
    Accounting,
    WorkerProcess,
    applications,
    load,
    metric_value,
    publish,
)
from transport.fitconnect.simulator import (
    DestinationSpec,
    FitConnectSimulatorSettings,
    RunningFitConnectSimulator,
    serve,
)

pytestmark = pytest.mark.broker

READERS = tuple(DESTINATIONS)


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One throwaway PKI for the module (RSA 4096 keys take seconds each)."""
    return tmp_path_factory.mktemp("fit-connect-sim")


def _settings(state_dir: Path) -> FitConnectSimulatorSettings:
    """A delivery service with both destinations that accepts each submission right after submit."""
    return FitConnectSimulatorSettings(
        state_dir=state_dir, destinations=tuple(DestinationSpec(id=d) for d in DESTINATIONS.values()),
        auto_accept=True)


@pytest.fixture()
def simulator(state_dir: Path) -> Iterator[RunningFitConnectSimulator]:
    with serve(_settings(state_dir)) as running:
        yield running


@pytest.fixture()
def crashing(state_dir: Path) -> Iterator[tuple[RunningFitConnectSimulator, CrashingSimulator]]:
    settings = _settings(state_dir)
    app = CrashingSimulator(settings)
    with serve(settings, app=app) as running:
        yield running, app


def _assert_exact(acc: Accounting, envelopes: list[Envelope], sim: RunningFitConnectSimulator) -> None:
    lost, dup, both = acc.check(envelopes)
    assert lost == [], f"{len(lost)} applications lost"
    assert dup == [], f"{len(dup)} applications submitted more than once"
    assert both == [], f"{len(both)} applications both submitted and dead-lettered"
    assert acc.dead == {}, f"unexpected dead letters: {acc.dead}"
    assert sum(acc.delivered.values()) == len(envelopes)
    assert content_mismatches(sim, envelopes) == [], "content changed on the way"


def _progress(sim: RunningFitConnectSimulator, broker: BrokerConfig) -> str:
    acc = account(sim, broker)
    return f"{sum(acc.delivered.values())} submitted, {len(acc.dead)} dead-lettered: {sorted(set(acc.dead.values()))}"


def _submitted_at_least(sim: RunningFitConnectSimulator, count: int) -> bool:
    return len(delivered(sim)) >= count


def _breaker(worker: WorkerProcess, state: str) -> float:
    return metric_value(worker.metrics(), "hub_circuit_breaker_transitions_total", state=state)


def test_sigkill_of_a_fitconnect_worker_submits_each_application_once(
        broker_url: str, crashing: tuple[RunningFitConnectSimulator, CrashingSimulator], tmp_path: Path) -> None:
    simulator, crash = crashing
    config_path = write_fitconnect_config(tmp_path, broker_url, simulator)
    config = load(config_path)
    worker = WorkerProcess(config_path, ADAPTER, tmp_path).start()
    crash.worker = worker
    envelopes = applications(300, "fit-sigkill", readers=READERS)
    publish(config, envelopes)
    at_kill: list[int] = []
    try:
        # killed once ~1/3 in, as the service has taken a submit (submitted, not yet confirmed to the
        # worker), and once ~2/3 in, as it has created a submission (not yet recorded in the ledger)
        kills: tuple[tuple[CrashAt, int], ...] = (("submit", 100), ("create", 200))
        for at, after in kills:
            crash.arm(at, after)
            wait_until(crash.fired.is_set, 180, f"SIGKILL at {at} after {after} submissions",
                       partial(_progress, simulator, config.broker))
            at_kill.append(len(delivered(simulator)))
            worker.start(wait_ready=False)
        wait_accounted(simulator, config.broker, envelopes, timeout=180)
        worker.wait_ready()
        wait_idle(worker)
        acc = account(simulator, config.broker)
    finally:
        worker.kill()
    orphans = incomplete(simulator)
    resumed = worker.log_path.read_text().count("(accepted on re-send)")
    print(f"\nFIT-Connect SIGKILL run: killed at {at_kill} submitted, {worker.starts} worker starts, "
          f"{sum(acc.delivered.values())} submitted, {len(acc.dead)} dead-lettered, {resumed} confirmed by "
          f"the event log on re-send, {len(orphans)} incomplete (created, never submitted)")
    assert all(n < len(envelopes) for n in at_kill), "a kill came after the run was over: it proves nothing"
    _assert_exact(acc, envelopes, simulator)
    assert resumed >= 1, "the submit killed mid-answer was not confirmed from the event log"
    assert len(orphans) >= 1, "the create killed mid-answer left no incomplete submission: was it hit?"
    assert simulator.violations == []


def test_429_storm_and_30s_outage_deliver_everything_once_breaker_opens_and_closes(
        broker_url: str, simulator: RunningFitConnectSimulator, tmp_path: Path) -> None:
    # the ladder (38 s in all) outlasts the 30 s outage; the breaker keeps the rest in the queue
    config_path = write_fitconnect_config(tmp_path, broker_url, simulator, adapter={
        "retry_delays": [1, 2, 5, 10, 20], "delivery_limit": 10,
        "breaker": {"consecutive_failures": 5, "cool_down": 2}})
    config = load(config_path)
    worker = WorkerProcess(config_path, ADAPTER, tmp_path).start()
    envelopes = applications(60, "fit-storm", readers=READERS)
    faults = simulator.faults
    try:
        # 429 storm: every call is rate-limited (Retry-After 1) until the breaker has opened
        faults.update({"rate_429": 1.0, "retry_after": 1})
        publish(config, envelopes[:30])
        state = partial(_progress, simulator, config.broker)
        wait_until(lambda: _breaker(worker, "open") >= 1, 60, "breaker open in the 429 storm", state)
        time.sleep(3)  # the storm goes on over a half-open probe or two
        faults.update({"rate_429": 0.0})
        wait_until(lambda: _breaker(worker, "closed") >= 1 and len(delivered(simulator)) >= 5, 90,
                   "breaker closed after the storm", state)
        opened_before_outage = _breaker(worker, "open")
        # 30 s outage: 10 s of 503 (Retry-After 1), then 20 s of dropped connections; the other
        # 30 applications are published while the service is down
        faults.set_outage(0, 10, "503")
        publish(config, envelopes[30:])
        time.sleep(8)
        faults.set_outage(0, 20, "drop")  # before the 503 window ends: no gap
        wait_until(lambda: _breaker(worker, "open") > opened_before_outage, 60, "breaker open in the outage", state)
        wait_accounted(simulator, config.broker, envelopes, timeout=180)
        wait_idle(worker)
        acc = account(simulator, config.broker)
        wait_until(lambda: metric_value(worker.metrics(), "hub_circuit_breaker_state") == 0, 60, "breaker closed")
        metrics = worker.metrics()
    finally:
        worker.kill()
    print(f"\nFIT-Connect storm/outage run: breaker opened {metric_value(metrics, 'hub_circuit_breaker_transitions_total', state='open'):.0f}x, "
          f"closed {metric_value(metrics, 'hub_circuit_breaker_transitions_total', state='closed'):.0f}x, "
          f"{metric_value(metrics, 'hub_messages_processed_total', outcome='retry_scheduled'):.0f} retries scheduled, "
          f"{len(incomplete(simulator))} incomplete submissions")
    _assert_exact(acc, envelopes, simulator)
    assert metric_value(metrics, "hub_circuit_breaker_transitions_total", state="open") >= 2
    assert metric_value(metrics, "hub_circuit_breaker_transitions_total", state="closed") >= 2
    assert metric_value(metrics, "hub_circuit_breaker_state") == 0
    assert metric_value(metrics, "hub_messages_processed_total", outcome="retry_scheduled") >= 1
    assert worker.starts == 1, "the worker rode the faults out without a restart"
