"""The cluster harness itself: three running nodes, a quorum queue replicated on all of them, a
message published through one node consumed through another."""

from __future__ import annotations

import secrets
import time

import pika
import pytest

from tests.cluster.harness import Cluster, poll

pytestmark = pytest.mark.broker


def test_three_nodes_replicate_a_quorum_queue_and_route_across_nodes(cluster: Cluster) -> None:
    a = cluster.nodes[0]
    assert cluster.running() == {n.node for n in cluster.nodes}
    vhost = f"basics-{secrets.token_hex(3)}"
    urls = cluster.add_vhost(vhost)
    queue = "hubtest.replicated"
    body = secrets.token_bytes(32)
    with pika.BlockingConnection(pika.URLParameters(urls[0])) as via_a:
        channel = via_a.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
    info = cluster.queue(queue, vhost=vhost)
    assert set(info["members"]) == {n.node for n in cluster.nodes}
    assert cluster.leader(queue, vhost=vhost) is a  # declared via A: led by A
    with pika.BlockingConnection(pika.URLParameters(urls[2])) as via_c:
        method, _props, received = via_c.channel().basic_get(queue, auto_ack=True)
    assert method is not None and received == body


def _amqp_open(url: str) -> bool:
    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
        return True
    except pika.exceptions.AMQPError:
        return False


def test_isolated_node_pauses_as_minority_and_rejoins_when_healed(cluster: Cluster) -> None:
    a, b, c = cluster.nodes
    vhost = f"partition-{secrets.token_hex(3)}"
    urls = cluster.add_vhost(vhost)
    started = time.monotonic()
    cluster.isolate(c)
    # the majority sees C gone; C (pause_minority) stops its broker application: clients are refused
    detected = poll(lambda: cluster.running(via=a) == {a.node, b.node}, 60, lambda: "majority never lost C")
    paused = poll(lambda: not _amqp_open(urls[2]), 60, lambda: "C kept accepting clients in the minority")
    assert _amqp_open(urls[0]) and _amqp_open(urls[1])
    cluster.heal()
    rejoined = cluster.wait_running(cluster.nodes)
    poll(lambda: _amqp_open(urls[2]), 60, lambda: "C never accepted clients again")
    print(f"\npartition: majority noticed after {detected:.1f}s, C refused clients after {paused:.1f}s more, "
          f"rejoined {rejoined:.1f}s after heal; total {time.monotonic() - started:.1f}s")
