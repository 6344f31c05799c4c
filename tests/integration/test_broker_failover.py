"""Several broker nodes on real brokers: ``connect`` falls over from a dead address, a worker whose
first address is dead consumes via the second, and a publisher whose node is SIGKILLed with
confirms outstanding publishes them again on the next node: nothing is lost (at-least-once).

The "cluster" here is a private node (tests/support/rabbitmq_node.py, which may be killed) and a
fresh vhost on the shared broker, with the same queue on both; tests/cluster/ runs a real one."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pika
import pika.exceptions
import pytest

import hub.broker
from hub.broker import connect, connected_node
from hub.config import BrokerConfig, HubConfig
from hub.envelope import new_envelope
from hub.publisher import ConfirmingPublisher, ResilientPublisher, publish_envelope
from hub.samples import make_ozg_application
from tests.integration.helpers import AUTHOR, make_config, running_worker, wait_for
from tests.support.net import free_port
from tests.support.rabbitmq_node import RabbitNode, rabbit_node
from transport.xta.metadata import Party
from transport.xta.simulator import SimulatorConfig, serve

pytestmark = pytest.mark.broker
QUEUE = "failover.test"


class _InOrder:
    """Stands in for hub.broker's shuffler: the configured order, so a test knows which node is first."""

    def shuffle(self, _items: list[Any]) -> None:
        return None


@pytest.fixture()
def in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub.broker, "_ORDER", _InOrder())


def _dead_url(like: str) -> str:
    """``like`` (same user and vhost: one cluster's nodes share them) on a closed loopback port:
    refused at once."""
    return re.sub(r"@[^/]+/", f"@127.0.0.1:{free_port()}/", like, count=1)


def _on_node(node: RabbitNode, like: str) -> str:
    """The private node's URL for ``like``'s vhost, created there with guest's permissions (the
    config takes a list of nodes only with the same user, password and vhost)."""
    vhost = urllib.parse.unquote(pika.URLParameters(like).virtual_host)
    node.ctl("add_vhost", vhost)
    node.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    return node.url.rsplit("/", 1)[0] + "/" + urllib.parse.quote(vhost, safe="")


def _with_urls(config: HubConfig, *urls: str) -> HubConfig:
    broker = config.broker.model_copy(update={"single_url": None, "urls": tuple(urls)})
    return config.model_copy(update={"broker": broker})


def _declare(url: str, kind: str = "quorum") -> None:
    """The test queue; on the private node a classic one (durable, its persistent messages are read
    back from disk at once after a restart: a lone quorum member may take long to elect itself)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().queue_declare(QUEUE, durable=True, arguments={"x-queue-type": kind})
    finally:
        connection.close()


def _ids_and_bodies(url: str) -> list[tuple[str, bytes]]:
    """Every message in the test queue (taken off it): (message_id, body)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        got: list[tuple[str, bytes]] = []
        while True:  # acked at the end only: a read cut short leaves the queue as it was
            method, properties, body = channel.basic_get(QUEUE)
            if method is None:
                channel.basic_ack(0, multiple=True)
                return got
            got.append((properties.message_id, body))
    finally:
        if connection.is_open:
            connection.close()


def _readable(url: str) -> tuple[list[tuple[str, bytes]]] | None:
    """The queue's messages once its (quorum) leader answers again after a restart, else None."""
    try:
        return (_ids_and_bodies(url),)
    except pika.exceptions.AMQPError:
        return None


def _delivered(sim_url: str) -> int:
    with urllib.request.urlopen(f"{sim_url.rsplit('/', 1)[0]}/_sim/messages", timeout=10) as answer:
        return len(json.loads(answer.read()))


def _props(message_id: str) -> pika.BasicProperties:
    return pika.BasicProperties(message_id=message_id, delivery_mode=2)


@pytest.fixture()
def node() -> Iterator[RabbitNode]:
    with rabbit_node() as rabbit:
        yield rabbit


def test_connect_falls_over_from_a_dead_address(fresh_broker_url: str, in_order: None) -> None:
    shared = pika.URLParameters(fresh_broker_url)
    config = BrokerConfig(urls=(_dead_url(fresh_broker_url), fresh_broker_url), connection_attempts=1)
    connection = connect(config, "test-failover")
    try:
        assert connection.is_open and connected_node(connection) == f"{shared.host}:{shared.port}"
    finally:
        connection.close()


def test_a_worker_whose_first_address_is_dead_consumes_via_the_second(fresh_broker_url: str, pki: Any,
                                                                     in_order: None) -> None:
    from transport.security.keys import load_certificate, load_private_key

    simulator = serve(SimulatorConfig(
        reader_keys={"azr:000100": load_private_key(pki["azr-000100"][0])},
        trusted_signers=(load_certificate(pki["ca"][1]),)))
    try:
        config = _with_urls(make_config(fresh_broker_url, pki, simulator.url, authorities={"azr:000100": "alpha"}),
                            _dead_url(fresh_broker_url), fresh_broker_url)
        xml, message_id = make_ozg_application(reader=Party("azr:000100", "ABH"), author=Party(**AUTHOR), seed=3)
        envelope = new_envelope(destination="azr:000100", message_type="OZG.Antrag.130101", message=xml,
                                portal="test-portal", message_id=message_id, filename="antrag.xml")
        with running_worker(config, "alpha"):
            with ConfirmingPublisher(config.broker, "test-portal") as publisher:
                publish_envelope(publisher, envelope).result(timeout=30)
            wait_for(lambda: _delivered(simulator.url), timeout=60, what="the delivery at the simulator")
    finally:
        simulator.stop()


def test_a_publisher_whose_node_is_killed_with_confirms_outstanding_loses_nothing(
        node: RabbitNode, fresh_broker_url: str, in_order: None) -> None:
    """The private node blocks publishing (memory alarm), so the publisher's window is full of
    unconfirmed messages when its Erlang VM is SIGKILLed; publish_all then publishes them again on
    the shared broker. Every message is afterwards in one queue or the other (or both)."""
    private = _on_node(node, fresh_broker_url)
    _declare(private, "classic")
    _declare(fresh_broker_url)
    config = BrokerConfig(urls=(private, fresh_broker_url), confirm_window=200)
    publisher = ResilientPublisher(config, "test-failover")
    ids = [f"m-{n:04d}" for n in range(600)]
    done = threading.Event()
    failure: list[BaseException] = []

    def publish() -> None:
        try:
            publisher.publish_all([("", QUEUE, f"body {i}".encode(), _props(i), False) for i in ids], deadline=120)
        except BaseException as exc:  # noqa: BLE001 - the test thread reports it
            failure.append(exc)
        finally:
            done.set()

    try:
        publisher.ensure_connected()
        first = publisher._current
        assert first is not None and first.address == f"127.0.0.1:{node.port}"
        node.memory_alarm(True)
        worker = threading.Thread(target=publish, daemon=True)
        worker.start()
        wait_for(lambda: publisher.blocked and len(first._pending) >= 150, timeout=60,
                 what="the blocked publisher's window to fill with unconfirmed messages")
        node.kill()
        assert done.wait(150), "publish_all did not finish"
        assert not failure, failure
        assert publisher.reconnects >= 1 and publisher._current is not None
        assert publisher._current.address != first.address
        on_shared = [i for i, _ in _ids_and_bodies(fresh_broker_url)]
        node.start()  # the killed node comes back with its data: what it confirmed is still there
        on_private = [i for i, _ in wait_for(lambda: _readable(private), timeout=90,
                                             what="the restarted node's queue to answer")[0]]
        assert set(on_shared) | set(on_private) == set(ids), "a message was lost"
        assert len(on_shared) >= 150  # the outstanding ones went to the other node
    finally:
        publisher.close()


def test_a_large_message_cut_by_a_node_loss_is_published_whole_on_the_next_node(
        node: RabbitNode, fresh_broker_url: str, in_order: None) -> None:
    private = _on_node(node, fresh_broker_url)
    _declare(private, "classic")
    _declare(fresh_broker_url)
    size = 15 * 1024 * 1024  # streamed (> 1 MiB), below RabbitMQ 4's default max_message_size
    block = hashlib.sha256(b"failover").digest() * (size // 32 + 1)
    parts: list[bytes | memoryview] = [block[:size // 2], memoryview(block)[size // 2:size]]
    publisher = ResilientPublisher(BrokerConfig(urls=(private, fresh_broker_url)), "test-failover-stream")
    done = threading.Event()
    failure: list[BaseException] = []

    def publish() -> None:
        try:
            publisher.publish_and_wait("", QUEUE, parts, _props("large"), timeout=60, deadline=120)
        except BaseException as exc:  # noqa: BLE001 - the test thread reports it
            failure.append(exc)
        finally:
            done.set()

    try:
        publisher.ensure_connected()
        first = publisher._current
        assert first is not None and first.address == f"127.0.0.1:{node.port}"
        node.memory_alarm(True)
        threading.Thread(target=publish, daemon=True).start()
        wait_for(lambda: first._stream is not None and first._stream.frames_written > 0, timeout=60,
                 what="the stream to start")
        threading.Event().wait(1.0)  # the broker reads nothing: the stream stays at the high-water mark
        stream = first._stream
        assert stream is not None and stream.frames_written * 131072 < size, "the stream was not cut"
        node.kill()
        assert done.wait(150), "publish_and_wait did not finish"
        assert not failure, failure
        got = _ids_and_bodies(fresh_broker_url)
        assert [i for i, _ in got] == ["large"] and got[0][1] == block[:size]
    finally:
        publisher.close()
