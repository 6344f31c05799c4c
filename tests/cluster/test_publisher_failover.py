"""Issue 13, publisher failover: the portal publishes over ``broker.urls`` starting at node A, and
A is SIGKILLed while the portal still waits for confirms. Its ResilientPublisher moves on to the
next node and publishes every unconfirmed message again; a message whose confirm died with A may
reach the queue twice, and the worker's ledger still delivers each application exactly once."""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path

import pytest

from tests.cluster.harness import Cluster, poll
from tests.cluster.scenario import (
    DeliveryClock,
    Portal,
    client_node,
    in_configured_order,
    node_config,
    starting_at,
    wait_ledger_delivered,
    wait_queues_empty,
)
from tests.reliability.support import (
    WorkerProcess,
    applications,
    load,
    simulator_settings,
    wait_accounted,
)
from transport.xta.simulator import serve

pytestmark = pytest.mark.broker

COUNT = int(os.environ.get("HUB_CLUSTER_PUBLISH_COUNT", "600"))
ALPHA_READERS = ("azr:000100", "azr:000200")


def test_publisher_node_killed_with_confirms_outstanding_loses_nothing(
        cluster: Cluster, pki, tmp_path: Path, ledger_url: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    in_configured_order(monkeypatch)
    caplog.set_level(logging.WARNING, logger="hub.publisher")
    vhost = f"pubfail-{secrets.token_hex(3)}"
    urls = cluster.add_vhost(vhost)
    simulator = serve(simulator_settings(pki))
    worker = WorkerProcess(node_config(tmp_path / "w", urls, ledger_url, pki, simulator.url, delivery_limit=20),
                           "alpha", tmp_path / "w")
    envelopes = applications(COUNT, f"pubfail-{vhost}", readers=ALPHA_READERS)
    clock = DeliveryClock(simulator.store)
    portal: Portal | None = None
    try:
        worker.start()
        assert worker.proc is not None
        consumer = client_node(cluster, vhost, worker.proc.pid)  # also the topology's home: keep it alive
        victim = next(n for n in cluster.nodes if n is not consumer)
        portal_cfg = node_config(tmp_path / "portal", starting_at(urls, cluster.nodes.index(victim)), ledger_url, pki,
                                 simulator.url)
        portal = Portal(portal_cfg, envelopes, batch=50, gap=0.25)
        portal.start()
        poll(lambda: portal.first_address is not None or portal.error is not None, 60,
             lambda: "the portal published nothing")
        assert portal.first_address == f"127.0.0.1:{victim.port}", (portal.first_address, victim.port)
        poll(lambda: portal.published >= COUNT // 3 or portal.error is not None, 120,
             lambda: f"the portal published only {portal.published}")
        assert portal.sending.wait(30), "the portal stopped publishing"  # kill with confirms outstanding
        killed_at = time.monotonic()
        published_at_kill = portal.published
        cluster.kill(victim)
        portal.join(240)
        assert not portal.is_alive() and portal.error is None, f"the portal did not recover: {portal.error}"
        recovered = time.monotonic() - killed_at
        acc = wait_accounted(simulator.store, load(portal_cfg).broker, envelopes, timeout=240)
        pause = clock.pause_after(killed_at)
        stall = clock.longest_stall(killed_at, time.monotonic())
        wait_queues_empty(cluster, vhost)
        assert worker.alive() and worker.starts == 1
    finally:
        clock.stop()
        if portal is not None:
            portal.stop()
        worker.kill()
        simulator.stop()
    republished = [r.getMessage() for r in caplog.records if "publishing them again" in r.getMessage()]
    print(f"\npublisher failover: N={COUNT}, killed the portal's node {victim.name} after {published_at_kill} "
          f"confirmed; portal done {recovered:.1f}s later, reconnects {portal.reconnects}, re-publish rounds "
          f"{republished}; first delivery {pause}s after the kill, longest stall {stall:.2f}s")
    lost, dup, both = acc.check(envelopes)
    assert (lost, dup, both) == ([], [], [])
    assert acc.dead == {}
    assert sum(acc.delivered.values()) == COUNT
    assert portal.reconnects >= 1, "the portal never left the killed node"
    assert republished, "no unconfirmed message was published again"
    wait_ledger_delivered(ledger_url, COUNT)  # the worker wrote to the PostgreSQL ledger
