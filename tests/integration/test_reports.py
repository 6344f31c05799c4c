"""The worker follows each delivery's XTA transport report and publishes the traffic light."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from tests.clock import SteppedClock
from tests.integration.helpers import (
    StatusCollector,
    make_config,
    running_worker,
    wait_for,
)
from tests.integration.test_xta_support import application, publish, sim_config
from transport.xta.simulator import serve

pytestmark = pytest.mark.broker


def _open_report_polled(worker: Any) -> bool:
    """The worker polled at least one transport report that is still open."""
    return bool(worker.metrics.transport_reports.labels(worker.adapter, "open")._value.get() >= 1)


def _final_report(status: StatusCollector, message_id: str) -> list[Any]:
    return [e for e in status.of(message_id, "transport_report") if e.detail["traffic_light"] != "open"]


def test_worker_emits_transport_report_events_with_traffic_light(fresh_broker_url, pki) -> None:
    clock = SteppedClock()  # reports stay open until both workers have polled them open once
    settings = sim_config(pki, report_delay=30, report_status={"azr:000200": 2, "azr:000300": 3}, clock=clock)
    with serve(settings) as sim:
        config = make_config(fresh_broker_url, pki, sim.url, adapter_overrides={"report_poll_interval": 0.5})
        apps = [application("azr:000100", 9101), application("azr:000200", 9102), application("azr:000300", 9103)]
        status = StatusCollector(fresh_broker_url)
        try:
            with running_worker(config, "alpha") as alpha, running_worker(config, "beta") as beta:
                publish(config, apps)
                for worker in (alpha, beta):
                    wait_for(partial(_open_report_polled, worker), 60, what=f"an open report polled by {worker.adapter}")
                clock.advance(30)
                events = {e.destination: wait_for(partial(_final_report, status, e.message_id), 30,
                                                  what=f"report of {e.destination}")[0] for e in apps}
                metrics = alpha.metrics
        finally:
            status.close()
    assert {d: e.detail["traffic_light"] for d, e in events.items()} == {
        "azr:000100": "green", "azr:000200": "yellow", "azr:000300": "red"}
    assert events["azr:000300"].detail["errors"][0]["code"] == "9032"
    assert all(e.adapter in ("alpha", "beta") and e.detail["xta_message_id"] for e in events.values())
    # the open state was really polled at least once before the report was final
    assert metrics.transport_reports.labels("alpha", "open")._value.get() >= 1
    assert metrics.transport_reports.labels("alpha", "green")._value.get() == 1


def test_report_that_stays_open_times_out(fresh_broker_url, pki) -> None:
    with serve(sim_config(pki, report_delay=600)) as sim:
        config = make_config(fresh_broker_url, pki, sim.url,
                             adapter_overrides={"report_poll_interval": 0.3, "report_poll_max": 3})
        app = application("azr:000100", 9201)
        status = StatusCollector(fresh_broker_url)
        try:
            with running_worker(config, "alpha"):
                publish(config, [app])
                [event] = wait_for(lambda: status.of(app.message_id, "transport_report_timeout"), 30,
                                   what="report timeout")
        finally:
            status.close()
    assert event.detail["polls"] == 3
    # the open state was reported once (on the first poll), no final light
    assert [e.detail["traffic_light"] for e in status.of(app.message_id, "transport_report")] == ["open"]
