"""The real main loops keep /healthz alive (issue 10): the unit tests drive ``Heartbeat`` with a fake
clock, these run the loops themselves against the real broker and the XTA simulator, with a stall
limit of a few seconds swapped in before ``run()``, and read /healthz over HTTP the whole time.

Each test ends by stopping its loop and watching /healthz turn 503: the same check, on the same
heartbeat, does fail once the loop no longer ticks, so the 200s before it are not vacuous.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from hub.cli_replies import build_pollers, declare_topology
from hub.health import Heartbeat, all_alive
from hub.http import OpsServer
from hub.metrics import WorkerMetrics
from hub.publisher import ConfirmingPublisher, ResilientPublisher, publish_envelope
from hub.replies import ReplyMetrics
from hub.runtime import build_pipeline
from hub.worker import AdapterWorker
from tests.integration.helpers import make_config, wait_for
from tests.integration.return_channel_support import PORTAL_ID
from tests.integration.return_channel_support import make_config as replies_config
from tests.integration.test_delivery import _application, _sim_config
from tests.reliability.support import http_get
from transport.xta.simulator import InjectedFault, RunningSimulator, serve

pytestmark = pytest.mark.broker

STALL = 3.0  # seconds: the stall limit swapped in (production: 60 s and more)


@pytest.fixture()
def simulator(pki: Any) -> Iterator[RunningSimulator]:
    running = serve(_sim_config(pki))
    try:
        yield running
    finally:
        running.stop()




def watch(url: str, until: Callable[[], bool]) -> list[tuple[int, str]]:
    """Poll /healthz (every 0.2 s) until ``until()``; every answer that was not 200."""
    bad = []
    while not until():
        answer = http_get(f"{url}/healthz", timeout=5)
        if answer[0] != 200:
            bad.append(answer)
        time.sleep(0.2)
    return bad


def after(seconds: float) -> Callable[[], bool]:
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() >= deadline


def assert_goes_stale(url: str, what: str) -> None:
    """Once the loop is stopped nothing ticks: /healthz must say so (the check can fail)."""
    _status, body = wait_for(lambda: (answer := http_get(f"{url}/healthz", timeout=5))[0] == 503 and answer, 30,
                            what=f"/healthz to report the stopped {what}")
    assert f"{what} stalled for" in body, body


def _count(worker: AdapterWorker, name: str, **labels: str) -> float:
    return worker.metrics.registry.get_sample_value(name, {"adapter": "alpha", **labels}) or 0.0


def test_the_consume_loop_keeps_healthz_alive_idle_and_during_a_slow_delivery(
        broker_url: str, pki: Any, simulator: RunningSimulator) -> None:
    config = make_config(broker_url, pki, simulator.url)
    worker = AdapterWorker(config, "alpha", build_pipeline(config, "alpha"), WorkerMetrics(CollectorRegistry()))
    worker.heartbeat = Heartbeat("consume loop", stall_after=STALL)
    ops = OpsServer(worker.metrics.registry, worker.readiness, live=worker.heartbeat).start()
    thread = threading.Thread(target=worker.run, name="test-liveness-worker", daemon=True)
    thread.start()
    try:
        assert worker.connected.wait(20), "worker did not connect"
        assert watch(ops.url, after(2 * STALL)) == [], "idle: the consume loop must keep ticking"
        # the endpoint answers the send 2 x STALL late: the delivery runs on a pool thread, the
        # I/O loop (acks, heartbeats, /healthz) carries on
        simulator.inject(InjectedFault(operation="sendMessage", latency=2 * STALL))
        with ConfirmingPublisher(config.broker, "test-portal") as publisher:
            publish_envelope(publisher, _application("azr:000100", 91)).result(timeout=30)
        wait_for(lambda: _count(worker, "hub_messages_received_total") == 1, 30, what="the worker to take it")
        started = time.monotonic()
        deadline = started + 60
        bad = watch(ops.url, lambda: _count(worker, "hub_messages_processed_total", outcome="delivered") == 1
                    or time.monotonic() > deadline)
        took = time.monotonic() - started
        assert _count(worker, "hub_messages_processed_total", outcome="delivered") == 1, "not delivered in 60 s"
        assert took > STALL, f"the delivery took {took:.1f} s: not longer than the stall limit, proves nothing"
        assert bad == [], f"during a {took:.1f} s delivery: {bad}"
    finally:
        worker.stop()
        thread.join(60)
        worker.pipeline.close()
    assert not thread.is_alive(), "worker did not stop"
    try:
        assert_goes_stale(ops.url, "consume loop")
    finally:
        ops.stop()


def test_the_reply_poller_keeps_healthz_alive_while_it_waits_longer_than_the_stall_limit(
        fresh_broker_url: str, pki: Any, simulator: RunningSimulator) -> None:
    config = replies_config(fresh_broker_url, pki, simulator.url, poll_interval=10)
    declare_topology(config)
    publisher = ResilientPublisher(config.broker, "test-liveness-replies")
    metrics = ReplyMetrics(CollectorRegistry())
    [poller] = build_pollers(config, [PORTAL_ID], publisher, metrics)
    poller.heartbeat = Heartbeat(f"mailbox poller {PORTAL_ID}", stall_after=STALL)
    ops = OpsServer(metrics.registry, lambda: (True, "ready"), live=all_alive(poller.heartbeat)).start()
    thread = threading.Thread(target=poller.run, name="test-liveness-poller", daemon=True)
    thread.start()
    try:
        wait_for(lambda: poller.last_poll_ok is True, 30, what="the first (empty) poll")
        # now in its 10 s wait between polls: well past the 3 s stall limit
        assert watch(ops.url, after(8)) == [], "waiting between polls: the poller must keep ticking"
        assert thread.is_alive() and poller.mailbox is not None
    finally:
        poller.stop()
        thread.join(30)
        poller.mailbox.close()
        publisher.close()
    assert not thread.is_alive(), "poller did not stop"
    try:
        assert_goes_stale(ops.url, f"mailbox poller {PORTAL_ID}")
    finally:
        ops.stop()
