"""Pending transport reports survive SIGKILL (issue 11): they live in the ledger, not in the worker.

A real `hub worker` process delivers applications whose reports stay open (the simulator's clock
stands still); it is killed while polling them, restarted, the reports turn final, and it is killed
again while it polls the final ones. Every application still gets its final ``transport_report``
event: the restarted worker resumes the pending polls (a killed worker's leases run out).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.clock import SteppedClock
from tests.integration.helpers import StatusCollector, wait_for
from tests.reliability.support import (
    WorkerProcess,
    applications,
    load,
    publish,
    simulator_settings,
    write_config,
)
from transport.xta.simulator import serve

pytestmark = pytest.mark.broker

ALPHA_READERS = ("azr:000100", "azr:000200")


def _wait(predicate, timeout: float, what: str) -> None:
    wait_for(predicate, timeout, interval=0.2, what=what)


def test_sigkill_with_pending_report_polls_loses_no_report(broker_url, pki, tmp_path: Path) -> None:
    clock = SteppedClock()
    simulator = serve(simulator_settings(pki, report_delay=30, clock=clock))
    # timeout 3 s: a killed worker's leases (2 x timeout + 5 s) run out within the test's patience
    config_path = write_config(tmp_path, broker_url, pki, simulator.url, adapter={
        "timeout": 3, "report_first_poll_delay": 0.2, "report_poll_interval": 0.5, "report_poll_max": 10_000})
    config = load(config_path)
    envelopes = applications(200, "report-crash", readers=ALPHA_READERS)
    ids = [e.message_id for e in envelopes]
    status = StatusCollector(broker_url)
    worker = WorkerProcess(config_path, "alpha", tmp_path)

    def with_light(light: str | None) -> set[str]:
        return {e.message_id for e in status.events if e.event == "transport_report"
                and (light is None or e.detail["traffic_light"] == light)}

    try:
        worker.start()
        publish(config, envelopes)
        _wait(lambda: with_light("open") >= set(ids), 90, "every report polled open once")
        worker.kill()  # pending polls: every report is still open
        worker.start()
        clock.advance(30)  # the reports turn green
        _wait(lambda: len(with_light("green")) >= 5, 60, "the restarted worker's first green reports")
        worker.kill()  # mid-way through the final polls
        greens_before = len(with_light("green"))
        worker.start()
        _wait(lambda: with_light("green") >= set(ids), 90, "every final report after the second restart")
    finally:
        worker.kill()
        status.close()
        simulator.stop()
    assert greens_before < len(ids), "the second kill came too late to interrupt the final polls"
    assert simulator.store.stats()["total"] == len(ids)
    print(f"\nreport crash run: {worker.starts} worker starts, {greens_before} green before the second kill")
