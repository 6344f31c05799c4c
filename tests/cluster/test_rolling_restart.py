"""Issue 13, rolling restart: every node is stopped gracefully and started again, one after the
other, while the portal keeps publishing and two workers (``broker.urls`` = all three nodes)
consume. Each node must be running with its quorum member of the delivery queue online again
before the next one goes. Every application published is delivered exactly once, none is
dead-lettered or left in a queue, and no hub process is restarted."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest

from hub.topology import deliver_queue
from tests.cluster.harness import Cluster, poll
from tests.cluster.scenario import (
    DeliveryClock,
    Portal,
    node_config,
    starting_at,
    wait_count,
    wait_ledger_delivered,
    wait_queues_empty,
)
from tests.reliability.support import (
    WorkerProcess,
    applications,
    load,
    metric_value,
    simulator_settings,
    wait_accounted,
)
from tests.support.rabbitmq_node import RabbitNode
from transport.xta.simulator import serve

pytestmark = pytest.mark.broker

COUNT = int(os.environ.get("HUB_CLUSTER_ROLLING_COUNT", "2400"))  # an upper bound: the portal stops after the roll
ALPHA_READERS = ("azr:000100", "azr:000200")


def _graceful_restart(cluster: Cluster, node: RabbitNode, vhost: str) -> float:
    """``rabbitmqctl stop`` (leaders hand over, clients get a connection.close), start again, and
    wait until the cluster runs all nodes and every delivery-queue member is online; seconds."""
    started = time.monotonic()
    assert node.proc is not None
    node.ctl("stop", timeout=60)
    node.proc.wait(60)
    node.start()
    cluster.wait_running(cluster.nodes)
    want = {n.node for n in cluster.nodes}
    poll(lambda: set(cluster.queue(deliver_queue("alpha"), vhost).get("online", [])) == want, 120,
         lambda: f"the delivery queue's members did not all come back online after {node.name}")
    return time.monotonic() - started


def test_rolling_restart_of_every_node_under_load_delivers_everything_exactly_once(
        cluster: Cluster, pki, tmp_path: Path, ledger_url: str) -> None:
    vhost = f"rolling-{secrets.token_hex(3)}"
    urls = cluster.add_vhost(vhost)
    simulator = serve(simulator_settings(pki))
    workers = [WorkerProcess(node_config(tmp_path / name, starting_at(urls, first), ledger_url, pki, simulator.url,
                                         delivery_limit=20), "alpha", tmp_path / name)
               for name, first in (("w1", 1), ("w2", 2))]
    envelopes = applications(COUNT, f"rolling-{vhost}", readers=ALPHA_READERS)
    clock = DeliveryClock(simulator.store)
    portal_cfg = node_config(tmp_path / "portal", urls, ledger_url, pki, simulator.url)
    portal = Portal(portal_cfg, envelopes, batch=10, gap=0.5)
    restarts: list[tuple[str, float, int]] = []
    started = time.monotonic()
    try:
        for w in workers:
            w.start()
        portal.start()
        wait_count(clock, 40, timeout=60, portal=portal)
        for node in cluster.nodes:
            before = portal.published
            seconds = _graceful_restart(cluster, node, vhost)
            wait_count(clock, clock.count() + 1, timeout=60, portal=portal)  # still delivering
            restarts.append((node.name, seconds, portal.published - before))
        portal.stop()
        portal.join(120)
        assert not portal.is_alive() and portal.error is None, f"the portal did not recover: {portal.error}"
        assert portal.published < COUNT, "the portal ran out of applications before the roll ended: raise COUNT"
        sent = envelopes[:portal.published]
        acc = wait_accounted(simulator.store, load(portal_cfg).broker, sent, timeout=180)
        wait_queues_empty(cluster, vhost)
        for w in workers:
            assert w.alive() and w.starts == 1, "a worker died instead of failing over"
            w.wait_connected(timeout=90)
            assert metric_value(w.metrics(), "hub_consumer_connected") == 1
        elapsed = time.monotonic() - started
    finally:
        clock.stop()
        portal.stop()
        for w in workers:
            w.kill()
        simulator.stop()
    print(f"\nrolling restart: N={len(sent)} published; restarts (node, seconds, published meanwhile) {restarts}; "
          f"portal reconnects {portal.reconnects}; run {elapsed:.1f}s")
    lost, dup, both = acc.check(sent)
    assert (lost, dup, both) == ([], [], [])
    assert acc.dead == {}, f"unexpected dead letters: {acc.dead}"
    assert sum(acc.delivered.values()) == len(sent)
    assert all(meanwhile > 0 for _name, _s, meanwhile in restarts), f"the portal stalled during a restart: {restarts}"
    wait_ledger_delivered(ledger_url, len(sent))  # the workers shared the PostgreSQL ledger
