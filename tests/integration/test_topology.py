"""Topology on the real broker: idempotent apply, removal of stale bindings, unroutable parking."""

from __future__ import annotations

import pika
import pytest

from hub.config import BrokerConfig
from hub.envelope import new_envelope
from hub.errors import UnknownDestination
from hub.publisher import ConfirmingPublisher, publish_envelope
from hub.topology import (
    INBOUND,
    STATUS_EXCHANGE,
    TRACKER_QUEUE,
    UNROUTABLE,
    Binding,
    apply_configured,
    deliver_queue,
)
from tests.integration.helpers import drain, make_config

pytestmark = pytest.mark.broker


def _apply(config):
    conn = pika.BlockingConnection(pika.URLParameters(config.broker.url))
    ch = conn.channel()
    ch.confirm_delivery()
    report = apply_configured(ch, config)
    conn.close()
    return report


def _queue_depth(url: str, queue: str) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    n = conn.channel().queue_declare(queue, passive=True).method.message_count
    conn.close()
    return n


def test_apply_is_idempotent_and_removes_stale_bindings(broker_url, pki):
    config = make_config(broker_url, pki, "http://127.0.0.1:9/xta")
    first = _apply(config)
    # 3 authorities x 2 inbound exchanges, and the tracker's feed from hub.status
    assert len(first.added) == 7
    assert Binding(STATUS_EXCHANGE, "#", TRACKER_QUEUE) in first.added and TRACKER_QUEUE in first.queues
    assert not first.removed
    assert deliver_queue("alpha") in first.queues and "hub.dead" in first.queues

    second = _apply(config)
    assert second.added == [] and second.removed == []

    # azr:000200 leaves the directory: its two bindings go, the others stay
    smaller = make_config(broker_url, pki, "http://127.0.0.1:9/xta",
                          authorities={"azr:000100": "alpha", "azr:000300": "beta"})
    third = _apply(smaller)
    assert sorted((b.exchange, b.routing_key) for b in third.removed) == [
        ("hub.inbound", "azr:000200"), ("hub.inbound.checked", "azr:000200")]
    assert third.added == []
    assert _apply(smaller).removed == []

    # the removed destination is now really unroutable: the checked exchange reports it ...
    with ConfirmingPublisher(BrokerConfig(url=broker_url), "test") as publisher:
        envelope = new_envelope(destination="azr:000200", message_type="OZG.Antrag.130101",
                                message=b"<x/>", portal="test")
        with pytest.raises(UnknownDestination, match="azr:000200"):
            publish_envelope(publisher, envelope).result(timeout=10)
        # ... and the open exchange parks it in hub.unroutable instead of dropping it
        publisher.publish_and_wait(INBOUND, envelope.destination, envelope.body(), envelope.properties(),
                                   mandatory=True)
    parked = drain(broker_url, UNROUTABLE, 1)
    assert len(parked) == 1 and parked[0][0].message_id == envelope.message_id
    # and the still-configured ones route to their adapter queue
    assert _queue_depth(broker_url, deliver_queue("alpha")) == 0


def test_unknown_destination_reported_to_publisher(broker_url, pki):
    config = make_config(broker_url, pki, "http://127.0.0.1:9/xta")
    _apply(config)
    with ConfirmingPublisher(config.broker, "test") as publisher:
        known = new_envelope(destination="azr:000100", message_type="OZG.Antrag.130101", message=b"<x/>", portal="p")
        unknown = new_envelope(destination="azr:999999", message_type="OZG.Antrag.130101", message=b"<x/>", portal="p")
        f_known = publish_envelope(publisher, known)
        f_unknown = publish_envelope(publisher, unknown)
        f_known.result(timeout=10)
        with pytest.raises(UnknownDestination, match="azr:999999"):
            f_unknown.result(timeout=10)
    assert _queue_depth(broker_url, deliver_queue("alpha")) == 1
    assert _queue_depth(broker_url, UNROUTABLE) == 0


def test_the_record_moves_from_the_classic_queue_of_an_earlier_release(fresh_broker_url, pki):
    """An earlier release remembered its bindings in the classic queue hub.topology.state: the
    first apply reads them from there (so a binding it made is still removed when it goes), keeps
    them in the quorum record and deletes the classic queue."""
    import json

    from hub.topology import LEGACY_STATE_QUEUE, STATE_QUEUE

    config = make_config(fresh_broker_url, pki, "http://127.0.0.1:9/xta")
    old = Binding(INBOUND, "azr:000900", deliver_queue("alpha"))  # an authority no longer configured
    conn = pika.BlockingConnection(pika.URLParameters(fresh_broker_url))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare(INBOUND, "topic", durable=True, arguments={"alternate-exchange": UNROUTABLE})
    ch.queue_declare(deliver_queue("alpha"), durable=True, arguments={"x-queue-type": "quorum"})
    ch.queue_bind(old.queue, old.exchange, routing_key=old.routing_key)
    ch.queue_declare(LEGACY_STATE_QUEUE, durable=True, arguments={"x-max-length": 1})
    ch.basic_publish("", LEGACY_STATE_QUEUE, json.dumps({"bindings": [old.__dict__]}).encode(),
                     pika.BasicProperties(delivery_mode=2))
    conn.close()

    first = _apply(config)
    assert first.removed == [old]
    conn = pika.BlockingConnection(pika.URLParameters(fresh_broker_url))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="NOT_FOUND"):
        conn.channel().queue_declare(LEGACY_STATE_QUEUE, passive=True)
    ch = conn.channel()
    record = ch.queue_declare(STATE_QUEUE, passive=True)
    assert record.method.message_count == 1
    conn.close()
    second = _apply(config)
    assert second.added == [] and second.removed == []
    assert _queue_depth(fresh_broker_url, STATE_QUEUE) == 1


def test_an_unchanged_classic_record_is_kept_in_the_quorum_record(fresh_broker_url, pki):
    """The usual upgrade: the classic record holds exactly the configured bindings. It must not be
    deleted without writing them to the quorum record (the next apply would forget them)."""
    import json

    from hub.topology import LEGACY_STATE_QUEUE, STATE_QUEUE, plan_topology

    config = make_config(fresh_broker_url, pki, "http://127.0.0.1:9/xta")
    bindings = sorted(plan_topology(config).bindings)
    conn = pika.BlockingConnection(pika.URLParameters(fresh_broker_url))
    ch = conn.channel()
    ch.queue_declare(LEGACY_STATE_QUEUE, durable=True, arguments={"x-max-length": 1})
    ch.basic_publish("", LEGACY_STATE_QUEUE, json.dumps({"bindings": [b.__dict__ for b in bindings]}).encode(),
                     pika.BasicProperties(delivery_mode=2))
    conn.close()
    first = _apply(config)
    assert first.added == [] and first.removed == []
    assert _queue_depth(fresh_broker_url, STATE_QUEUE) == 1
    second = _apply(config)
    assert second.added == [] and second.removed == []
