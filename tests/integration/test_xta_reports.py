"""Transport reports after real deliveries: a worker delivers through RabbitMQ, then the adapter
polls getTransportReport until the report leaves 0 (open): green for one reader, red for another."""

from __future__ import annotations

from functools import partial

import pytest

from hub.status import DELIVERED
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


def test_transport_report_polling_to_green_and_to_red(broker_url, pki) -> None:
    clock = SteppedClock()  # reports stay open until the test steps the simulator's clock
    config_sim = sim_config(pki, report_delay=30, report_status={"azr:000300": 3, "azr:000200": 2}, clock=clock)
    with serve(config_sim) as sim:
        config = make_config(broker_url, pki, sim.url)
        green, yellow, red = (application("azr:000100", 8001), application("azr:000200", 8002),
                              application("azr:000300", 8003))
        status = StatusCollector(broker_url)
        try:
            with running_worker(config, "alpha") as alpha, running_worker(config, "beta") as beta:
                publish(config, [green, yellow, red])
                ids = {}
                for e in (green, yellow, red):
                    event = wait_for(partial(status.of, e.message_id, DELIVERED), 30, what="delivery")[0]
                    ids[e.destination] = event.detail["xta_message_id"]
                adapter_of = {"azr:000100": alpha.pipeline.adapter, "azr:000200": alpha.pipeline.adapter,
                              "azr:000300": beta.pipeline.adapter}
                first = adapter_of["azr:000100"].transport_report(ids["azr:000100"])
                assert (first.status, first.status_name, first.final) == (0, "open", False)
                clock.advance(30)
                reports = {dest: adapter_of[dest].wait_for_report(xta_id, timeout=20, interval=0.25)
                           for dest, xta_id in ids.items()}
        finally:
            status.close()
    assert {d: r.status_name for d, r in reports.items()} == {
        "azr:000100": "green", "azr:000200": "yellow", "azr:000300": "red"}
    assert reports["azr:000100"].errors == () and [i.code for i in reports["azr:000100"].infos] == [
        "ACCEPTED", "DELIVERED"]
    assert [w.code for w in reports["azr:000200"].warnings] == ["WARNING"]
    red_report = reports["azr:000300"]
    assert red_report.status == 3 and red_report.errors[0].code == "9032" and red_report.errors[0].reason
    detail = red_report.detail()
    assert detail["xta_message_id"] == ids["azr:000300"] and detail["errors"][0]["code"] == "9032"
    assert "data" not in str(detail)  # codes and reasons only, never payload
