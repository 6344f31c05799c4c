"""Issue 13, minority partition: the portal publishes through node A while two workers consume
through nodes B and C, every client configured with all three nodes in ``broker.urls``, the
workers sharing one PostgreSQL ledger. The node holding the delivery queue's leader and one
worker's connection is cut off from its peers with iptables (a real partition: AMQP still reaches
it). Under ``pause_minority`` it pauses and closes its clients' connections; that worker must move
to a majority node and deliver from there while the node is still cut off. The portal keeps
publishing through the partition and is stopped (everything it published confirmed) before the
partition heals. Then: every published application delivered exactly once at the simulator, none
dead-lettered, none left in a queue, no hub process restarted."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest

from hub.topology import deliver_queue
from tests.cluster.harness import Cluster, poll
from tests.cluster.scenario import (
    PORTAL_CONNECTION,
    DeliveryClock,
    Portal,
    amqp_nodes,
    client_node,
    in_configured_order,
    move_worker,
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
from transport.xta.simulator import serve

pytestmark = pytest.mark.broker

# an upper bound: the portal is stopped once the worker has moved and delivered from its new node
COUNT = int(os.environ.get("HUB_CLUSTER_PARTITION_COUNT", "4000"))
ALPHA_READERS = ("azr:000100", "azr:000200")
WARMUP = 300  # delivered before the cut: both workers busy, the portal in its stride
AFTER_MOVE = 200  # delivered after the move before the portal stops: delivery goes on in the partition
DEADLINE = 120.0  # every wait on an event; the partition is noticed after ~NET_TICKTIME (10 s)


def _consumer_starts(worker: WorkerProcess) -> int:
    """How often the worker attached its consumer (logged each time, after the consume succeeded)."""
    return worker.log_path.read_text().count("consuming hub.deliver.alpha")


def _delivered(worker: WorkerProcess) -> float:
    return metric_value(worker.metrics(), "hub_messages_processed_total", adapter="alpha", outcome="delivered")


def test_minority_partition_moves_the_cut_off_worker_and_delivers_everything_once(
        cluster: Cluster, pki, tmp_path: Path, ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    in_configured_order(monkeypatch)  # the portal (this process) stays on the node it is pinned to
    vhost = f"minority-{secrets.token_hex(3)}"
    urls = cluster.add_vhost(vhost)
    simulator = serve(simulator_settings(pki))
    workers = [WorkerProcess(node_config(tmp_path / name, starting_at(urls, first), ledger_url, pki, simulator.url,
                                         delivery_limit=20), "alpha", tmp_path / name)
               for name, first in (("w1", 1), ("w2", 2))]
    envelopes = applications(COUNT, f"minority-{vhost}", readers=ALPHA_READERS)
    clock = DeliveryClock(simulator.store)
    portal: Portal | None = None
    started = time.monotonic()
    try:
        for w in workers:
            w.start()
        pids = [w.proc.pid for w in workers if w.proc is not None]
        first = client_node(cluster, vhost, pids[0])
        victim = cluster.leader(deliver_queue("alpha"), vhost)
        # the workers on two different nodes, one of them the leader's: the cut-off node takes a
        # worker and the queue's leader into the minority
        second = move_worker(cluster, vhost, workers[1],
                             lambda n: n is not first and (victim is first or n is victim))
        moving, staying = (workers[0], workers[1]) if first is victim else (workers[1], workers[0])
        assert moving.proc is not None
        (portal_node,) = [n for n in cluster.nodes if n not in (first, second)]
        portal_cfg = node_config(tmp_path / "portal", starting_at(urls, cluster.nodes.index(portal_node)), ledger_url,
                                 pki, simulator.url)
        portal = Portal(portal_cfg, envelopes, batch=20, gap=0.2)
        portal.start()
        assert client_node(cluster, vhost, os.getpid(), PORTAL_CONNECTION) is portal_node
        wait_count(clock, WARMUP, timeout=DEADLINE, portal=portal)
        majority = [n for n in cluster.nodes if n is not victim]
        published_at_cut = portal.published
        moving_pid = moving.proc.pid
        consuming = _consumer_starts(moving)
        moved: set[str] = set()

        def left_the_victim() -> bool:
            """Consuming again (a new consumer since the cut) with no broker connection on the victim
            (seen from the worker's own sockets: the management API may hang in the partition)."""
            moved.clear()
            moved.update(amqp_nodes(cluster, moving_pid))
            return _consumer_starts(moving) > consuming and bool(moved) and victim.node not in moved

        cut_at = time.monotonic()
        cluster.isolate(victim)
        moved_after = poll(left_the_victim, DEADLINE,
                           lambda: f"the worker on {victim.name} is still connected to {sorted(moved)}")
        # still cut off (nothing healed yet) and the majority runs without it: a move in the partition
        noticed = poll(lambda: cluster.running(via=majority[0]) == {n.node for n in majority}, DEADLINE,
                       lambda: "the majority never saw the cut-off node go")
        before = _delivered(moving)
        poll(lambda: _delivered(moving) > before, DEADLINE,
             lambda: f"the moved worker delivered nothing on {sorted(moved)}; log: {moving.log_path}")
        wait_count(clock, clock.count() + AFTER_MOVE, timeout=DEADLINE, portal=portal)
        poll(lambda: portal.published > published_at_cut or portal.error is not None, DEADLINE,
             lambda: "the portal published nothing during the partition")
        portal.stop()
        portal.join(DEADLINE)
        assert not portal.is_alive() and portal.error is None, f"the portal did not recover: {portal.error}"
        assert portal.published < COUNT, "the portal ran out of applications during the partition: raise COUNT"
        stopped_at = time.monotonic()
        pause = clock.pause_after(cut_at)
        first_delivery = "none" if pause is None else f"{pause:.2f}"
        stall = clock.longest_stall(cut_at, stopped_at)  # the portal kept the queue busy until here
        published_in_partition = portal.published - published_at_cut
        cluster.heal()
        rejoined = cluster.wait_running(cluster.nodes)
        # the broker's view agrees: the consuming connection is on a majority node
        landed = client_node(cluster, vhost, moving_pid, where=lambda n: n is not victim, timeout=DEADLINE)
        reconsumed = _consumer_starts(moving) - consuming
        sent = envelopes[:portal.published]
        acc = wait_accounted(simulator.store, load(portal_cfg).broker, sent, timeout=180)
        wait_queues_empty(cluster, vhost)
        for w in workers:
            assert w.alive() and w.starts == 1, "a worker died instead of failing over"
            w.wait_connected(timeout=90)
            assert metric_value(w.metrics(), "hub_consumer_connected") == 1
        assert "broker connection lost" in moving.log_path.read_text()
        staying_delivered = _delivered(staying)
        moving_delivered = _delivered(moving)
        elapsed = time.monotonic() - started
    finally:
        clock.stop()
        if portal is not None:
            portal.stop()
        for w in workers:
            w.kill()
        simulator.stop()
    print(f"\nminority partition: N={len(sent)} published ({published_in_partition} during the partition); cut off "
          f"{victim.name} (leader; workers on {first.name}, {second.name}, portal on {portal_node.name}); the worker "
          f"on it consumed again via {landed.name} {moved_after:.1f}s after the cut (consumer starts since the cut: "
          f"{reconsumed}) (the majority's management API confirmed "
          f"it gone {moved_after + noticed:.1f}s after the cut); first delivery {first_delivery}s after "
          f"the cut, longest gap between deliveries {stall:.2f}s; rejoined {rejoined:.1f}s after the heal; "
          f"delivered by the moved / the other worker {moving_delivered:.0f} / {staying_delivered:.0f}; "
          f"portal reconnects {portal.reconnects}; run {elapsed:.1f}s")
    lost, dup, both = acc.check(sent)
    assert (lost, dup, both) == ([], [], [])
    assert acc.dead == {}, f"unexpected dead letters: {acc.dead}"
    assert sum(acc.delivered.values()) == len(sent)
    wait_ledger_delivered(ledger_url, len(sent))  # the workers shared the PostgreSQL ledger
