"""The delivery path on real components: RabbitMQ, worker threads, SOAP over loopback, real crypto."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
from functools import partial
from typing import Any

import pika
import pytest

from hub.envelope import CONTENT_TYPE, new_envelope
from hub.publisher import ConfirmingPublisher, publish_envelope
from hub.samples import make_attachment, make_ozg_application
from hub.status import DEAD_LETTERED, DELIVERED
from hub.topology import DEAD_QUEUE, INBOUND_CHECKED
from tests.integration.helpers import (
    AUTHOR,
    StatusCollector,
    drain,
    make_config,
    running_worker,
    wait_for,
)
from transport.content import ContentPart
from transport.xta.metadata import Party
from transport.xta.simulator import SimulatorConfig, serve

pytestmark = pytest.mark.broker


def _sim_config(pki, latency: float = 0.0) -> SimulatorConfig:
    from transport.security.keys import load_certificate, load_private_key

    return SimulatorConfig(
        reader_keys={aid: load_private_key(pki[aid.replace(":", "-")][0])
                     for aid in ("azr:000100", "azr:000200", "azr:000300")},
        trusted_signers=(load_certificate(pki["ca"][1]),),
        latency=latency,
    )


def _sim_messages(sim_url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{sim_url}/_sim/messages", timeout=10) as resp:
        return json.loads(resp.read())


def _sim_part(sim_url: str, xta_id: str, n: int) -> bytes:
    with urllib.request.urlopen(f"{sim_url}/_sim/messages/{xta_id}/parts/{n}", timeout=10) as resp:
        return resp.read()


def _application(destination: str, seed: int):
    attachment, filename, ctype = make_attachment(seed)
    xml, message_id = make_ozg_application(reader=Party(destination, "ABH"), author=Party(**AUTHOR), seed=seed,
                                           attachment=attachment)
    return new_envelope(destination=destination, message_type="OZG.Antrag.130101", message=xml, portal="test-portal",
                        message_id=message_id, filename="antrag.xml",
                        attachments=(ContentPart(attachment, ctype, filename),))


@pytest.fixture()
def simulator(pki):
    running = serve(_sim_config(pki))
    yield running
    running.stop()


def test_publish_deliver_byte_identical_signed_and_encrypted(broker_url, pki, simulator):
    config = make_config(broker_url, pki, simulator.url)
    status = StatusCollector(broker_url)
    try:
        with running_worker(config, "alpha"), running_worker(config, "beta"):
            envelopes = [_application(dest, seed) for seed, dest in
                         enumerate(["azr:000100", "azr:000200", "azr:000300", "azr:000100"], start=1)]
            with ConfirmingPublisher(config.broker, "test-portal") as publisher:
                for f in [publish_envelope(publisher, e) for e in envelopes]:
                    f.result(timeout=10)
            for e in envelopes:
                wait_for(partial(status.of, e.message_id, DELIVERED), 30, what=f"delivery of {e.message_id}")
    finally:
        status.close()

    base = simulator.url.rsplit("/", 1)[0]
    received = _sim_messages(base)
    assert len(received) == len(envelopes)
    for e in envelopes:
        [m] = [m for m in received if m["parts"][0]["sha256"] == e.content.message.sha256]
        assert m["reader"] == e.destination
        assert m["verified"] is True  # decrypted with the reader key, signature checked against the CA
        assert [p["sha256"] for p in m["parts"]] == [p.sha256 for p in e.content.parts]
        assert m["parts"][1]["filename"] == e.content.attachments[0].filename
        # byte-identical, fetched back over HTTP
        assert _sim_part(base, m["message_id"], 0) == e.content.message.data
        assert _sim_part(base, m["message_id"], 1) == e.content.attachments[0].data
        [event] = status.of(e.message_id, DELIVERED)
        assert event.detail["xta_message_id"] == m["message_id"]


def _raw_publish(url: str, routing_key: str, body: bytes, props: pika.BasicProperties) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish(INBOUND_CHECKED, routing_key, body, props, mandatory=True)
    conn.close()


def test_invalid_input_is_dead_lettered_with_reason_and_worker_keeps_running(broker_url, pki, simulator):
    config = make_config(broker_url, pki, simulator.url)
    marker = "MARKER-Geheimname-4711"
    good = _application("azr:000100", 10)
    schema_bad = new_envelope(destination="azr:000100", message_type="OZG.Antrag.130101", portal="test-portal",
                              message=f'<?xml version="1.0"?><xau:ozg.antrag.130101 xmlns:xau="http://www.osci.de/xauslaender2611">'
                                      f'<unbekannt>{marker}</unbekannt></xau:ozg.antrag.130101>'.encode())
    not_xml = new_envelope(destination="azr:000100", message_type="OZG.Antrag.130101", portal="test-portal",
                           message=b"<antrag><unclosed></antrag>")
    xxe = new_envelope(destination="azr:000100", message_type="OZG.Antrag.130101", portal="test-portal",
                       message=b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>')
    unknown_type = new_envelope(destination="azr:000100", message_type="OZG.Unbekannt.999", portal="test-portal",
                                message=good.content.message.data)
    status = StatusCollector(broker_url)
    try:
        with running_worker(config, "alpha") as worker:
            with ConfirmingPublisher(config.broker, "test-portal") as publisher:
                for e in (schema_bad, not_xml, xxe, unknown_type):  # the worker's own checks are under test
                    publish_envelope(publisher, e, check=False).result(timeout=10)
            # a message that breaks the contract itself (no envelope at all)
            _raw_publish(broker_url, "azr:000100", b"\x00\xffnot json",
                         pika.BasicProperties(message_id="raw-1", content_type="text/plain", headers={}))
            _raw_publish(broker_url, "azr:000100", b"{}", pika.BasicProperties(
                message_id="raw-2", content_type=CONTENT_TYPE, headers={"x-envelope-version": 1,
                                                                        "x-destination": "azr:000100",
                                                                        "x-message-type": "OZG.Antrag.130101"}))
            dead = drain(broker_url, DEAD_QUEUE, 6, timeout=30)
            # the worker survived all of it and still delivers
            with ConfirmingPublisher(config.broker, "test-portal") as publisher:
                publish_envelope(publisher, good).result(timeout=10)
            wait_for(lambda: status.of(good.message_id, DELIVERED), 30, what="delivery after bad input")
            assert worker.connections_opened == 1
    finally:
        status.close()

    reasons = {p.message_id: p.headers for p, _ in dead}
    assert set(reasons) == {schema_bad.message_id, not_xml.message_id, xxe.message_id, unknown_type.message_id,
                            "raw-1", "raw-2"}
    assert reasons[schema_bad.message_id]["x-hub-reason"] == "schema_violation"
    assert reasons[not_xml.message_id]["x-hub-reason"] == "xml_rejected"
    assert reasons[xxe.message_id]["x-hub-reason"] == "xml_rejected"
    assert reasons[unknown_type.message_id]["x-hub-reason"] == "unknown_message_type"
    assert reasons["raw-1"]["x-hub-reason"] == "envelope"
    assert reasons["raw-2"]["x-hub-reason"] == "envelope"
    for headers in reasons.values():
        assert headers["x-hub-adapter"] == "alpha"
        assert headers["x-hub-error-message"]
        assert marker not in json.dumps(headers, default=str)  # no payload content in the reason
    # the original message is kept intact in the dead-letter queue
    [(_props, body)] = [(p, b) for p, b in dead if p.message_id == schema_bad.message_id]
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(schema_bad.body(version=2)).hexdigest()
    assert status.of(schema_bad.message_id, DEAD_LETTERED)


def test_slow_endpoint_does_not_drop_the_connection(broker_url, pki):
    heartbeat = 1
    latency = 3.5  # > two heartbeat intervals: a SOAP call on the I/O thread would lose the connection
    running = serve(_sim_config(pki, latency=latency))
    try:
        config = make_config(broker_url, pki, running.url, heartbeat=heartbeat)
        status = StatusCollector(broker_url)
        try:
            with running_worker(config, "alpha") as worker:
                e = _application("azr:000100", 20)
                started = time.monotonic()
                with ConfirmingPublisher(config.broker, "test-portal") as publisher:
                    publish_envelope(publisher, e).result(timeout=10)
                wait_for(lambda: status.of(e.message_id, DELIVERED), 60, what="slow delivery")
                assert time.monotonic() - started >= 2 * latency  # createMessageId + sendMessage both slow
                assert worker.connected.is_set()
                assert worker.connections_opened == 1  # never reconnected
        finally:
            status.close()
    finally:
        running.stop()
