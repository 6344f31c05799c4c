"""Transport reports polled from the ledger by a real worker against the XTA simulator: the events
(open, then the final light) reach hub.status and no poll goes through the broker's report queues;
a poll request of the previous release still waiting in ``hub.report.<adapter>`` is taken over."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
import urllib.request
from functools import partial
from typing import Any

import pika
import pytest

from hub.reports import PollRequest
from tests.clock import SteppedClock
from tests.conftest import AMQP_BASE, MANAGEMENT_PORT
from tests.integration.helpers import StatusCollector, make_config, running_worker, wait_for
from tests.integration.test_xta_support import application, publish, sim_config
from transport.xta.simulator import serve

pytestmark = pytest.mark.broker


def _queue_stats(broker_url: str) -> dict[str, dict[str, Any]]:
    """The vhost's queues as the management API sees them (message_stats lag by its stats interval)."""
    vhost = urllib.parse.quote(broker_url.rsplit("/", 1)[1], safe="")
    parts = urllib.parse.urlsplit(AMQP_BASE)
    auth = base64.b64encode(f"{urllib.parse.unquote(parts.username or 'guest')}:"
                            f"{urllib.parse.unquote(parts.password or 'guest')}".encode()).decode()
    request = urllib.request.Request(f"http://{parts.hostname or '127.0.0.1'}:{MANAGEMENT_PORT}/api/queues/{vhost}",
                                     headers={"Authorization": f"Basic {auth}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return {q["name"]: q for q in json.load(answer)}


def _published(stats: dict[str, dict[str, Any]], queue: str) -> int:
    return int(stats.get(queue, {}).get("message_stats", {}).get("publish", 0))


def _lights(status: StatusCollector, message_id: str) -> list[str]:
    return [e.detail["traffic_light"] for e in status.of(message_id, "transport_report")]


def _lights_are(status: StatusCollector, message_id: str, count: int) -> bool:
    return len(_lights(status, message_id)) == count


def test_reports_open_then_green_without_broker_report_traffic(fresh_broker_url, pki) -> None:
    clock = SteppedClock()  # reports stay open until the test steps the simulator's clock
    with serve(sim_config(pki, report_delay=30, report_status={"azr:000200": 2}, clock=clock)) as sim:
        config = make_config(fresh_broker_url, pki, sim.url,
                             adapter_overrides={"report_poll_interval": 1.0, "report_first_poll_delay": 0.2})
        apps = [application("azr:000100", 9301 + i) for i in range(3)] + [application("azr:000200", 9311)]
        status = StatusCollector(fresh_broker_url)
        try:
            with running_worker(config, "alpha") as alpha:
                publish(config, apps)
                for app in apps:
                    wait_for(partial(_lights_are, status, app.message_id, 1), 60,
                             what=f"the open report of {app.message_id}")
                clock.advance(30)
                for app in apps:
                    wait_for(partial(_lights_are, status, app.message_id, 2), 30,
                             what=f"the final report of {app.message_id}")
                # a poll request of the previous release, waiting in the broker at the upgrade
                old = PollRequest(apps[0].message_id, status.of(apps[0].message_id, "delivered")[0]
                                  .detail["xta_message_id"], "test-portal", "azr:000100", attempt=7,
                                  open_sent=True)
                with pika.BlockingConnection(pika.URLParameters(fresh_broker_url)) as connection:
                    channel = connection.channel()
                    channel.confirm_delivery()
                    channel.basic_publish("", "hub.report.alpha", old.body(),
                                          pika.BasicProperties(message_id=old.message_id, delivery_mode=2))
                    wait_for(lambda: channel.queue_declare("hub.report.alpha", passive=True).method.message_count
                             == 0, 30, what="the poll request to be taken over and acked")
                    # the channel stays open until the management stats count its publish (a channel's
                    # stats are sampled every few seconds: a short-lived one can be missed)
                    deadline = time.monotonic() + 90
                    while _published(_queue_stats(fresh_broker_url), "hub.report.alpha") < 1:
                        assert time.monotonic() < deadline, "the stats never counted the test's publish"
                        connection.sleep(1.0)
                wait_for(lambda: [e for e in status.of(apps[0].message_id, "transport_report") if e.attempt == 7],
                         30, what="the report of the taken-over poll request")
                polled_green = alpha.metrics.transport_reports.labels("alpha", "green")._value.get()
        finally:
            status.close()
        # the management stats catch up with the deliveries (the barrier), then: which queues got messages
        stats = wait_for(lambda: (s := _queue_stats(fresh_broker_url)) and _published(s, "hub.deliver.alpha") >= 4
                         and _published(s, "hub.report.alpha") >= 1 and s, 120, interval=1.0,
                         what="the broker's queue statistics")
    assert {app.message_id: _lights(status, app.message_id)[:2] for app in apps} == {
        app.message_id: ["open", "yellow" if app.destination == "azr:000200" else "green"] for app in apps}
    assert polled_green == 4  # three first reports + the taken-over request
    assert _published(stats, "hub.report.alpha.wait") == 0
    assert _published(stats, "hub.report.alpha") == 1  # the test's own request only


def test_report_polls_are_counted_and_time_out(fresh_broker_url, pki) -> None:
    with serve(sim_config(pki, report_delay=600)) as sim:
        config = make_config(fresh_broker_url, pki, sim.url, adapter_overrides={
            "report_poll_interval": 0.4, "report_first_poll_delay": 0.1, "report_poll_max": 4})
        app = application("azr:000100", 9321)
        status = StatusCollector(fresh_broker_url)
        try:
            with running_worker(config, "alpha") as alpha:
                publish(config, [app])
                [event] = wait_for(partial(status.of, app.message_id, "transport_report_timeout"), 30,
                                   what="report timeout")
                metrics = alpha.metrics
        finally:
            status.close()
    assert event.detail["polls"] == 4 and event.attempt == 4
    assert _lights(status, app.message_id) == ["open"]
    assert metrics.transport_reports.labels("alpha", "open")._value.get() == 3
    assert metrics.transport_reports.labels("alpha", "timeout")._value.get() == 1
