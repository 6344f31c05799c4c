"""The return channel end to end on the real RabbitMQ (fresh vhost) and the real XTA simulator:
authorities' replies (hub.replies_load.send_replies) are read from the portal's mailbox by the
hub's poller and reach hub.replies.<portal> with the contract's properties and headers and a
stable message_id, with reply_received events on hub.status; unusable replies end in
hub.replies.parked with their reason; every reply is closed only after the broker confirmed it."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from prometheus_client import CollectorRegistry

from hub.cli_replies import build_pollers, declare_topology
from hub.config import HubConfig
from hub.envelope import CONTENT_TYPE
from hub.publisher import ResilientPublisher
from hub.replies import ReplyMetrics, ReplyPoller
from hub.replies_load import ReplyToSend
from hub.samples import OZG_STATUSMELDUNG, OZG_TERMINMITTEILUNG, make_ozg_application
from hub.status import event_id_for
from hub.topology import REPLIES_PARKED, replies_queue
from tests.integration.helpers import StatusCollector, wait_for
from tests.integration.return_channel_support import (
    ABH,
    PORTAL,
    PORTAL_ID,
    REPLY_TYPES,
    in_portal_mailbox,
    make_config,
    queue_depth,
    reply,
    send,
    take_all,
    write_config,
)
from tests.integration.test_xta_support import sim_config
from tests.reliability.support import free_port, metric_value
from transport.security.keys import load_certificate, load_signing_identity
from transport.xta.simulator import InjectedFault, RunningSimulator, serve

ROOT = Path(__file__).resolve().parents[2]
QUEUE = replies_queue(PORTAL_ID)


@pytest.fixture()
def sim(pki) -> Iterator[RunningSimulator]:
    with serve(sim_config(pki)) as running:
        yield running


@pytest.fixture()
def config(fresh_broker_url, pki, sim) -> HubConfig:
    config = make_config(fresh_broker_url, pki, sim.url)
    declare_topology(config)
    return config


@pytest.fixture()
def poller(config) -> Iterator[ReplyPoller]:
    publisher = ResilientPublisher(config.broker, "test-replies")
    [built] = build_pollers(config, [PORTAL_ID], publisher, ReplyMetrics(CollectorRegistry()))
    yield built
    built.mailbox.close()
    publisher.close()


def _value(poller: ReplyPoller, name: str, **labels: str) -> float:
    return poller.metrics.registry.get_sample_value(name, {"portal": PORTAL_ID, **labels}) or 0.0


def test_replies_of_each_type_reach_the_portal_queue_with_events(config, sim, poller, pki) -> None:
    url = config.broker.url
    collector = StatusCollector(url, f"{PORTAL_ID}.reply_received.#")
    try:
        replies = [reply(t, seed=i, ref=f"OZG-ANTRAG-{i:08d}") for i, t in enumerate(REPLY_TYPES)]
        ids = send(pki, sim.url, replies)
        assert sorted(in_portal_mailbox(sim)) == sorted(ids)

        assert poller.drain() is True
        got = take_all(url, QUEUE, 3)
        assert in_portal_mailbox(sim) == []  # closed, after the confirm
        assert queue_depth(url, REPLIES_PARKED) == 0
        by_id = {props.message_id: (props, body) for props, body in got}
        assert len(got) == 3 and set(by_id) == set(ids)  # message_id = the reply's XTA MessageID
        for i, (sent, transport_id) in enumerate(zip(replies, ids, strict=True)):
            props, body = by_id[transport_id]
            assert (props.app_id, props.type, props.content_type, props.delivery_mode) == (
                "xoev-hub", "hub.reply", CONTENT_TYPE, 2)
            assert props.timestamp
            assert {k: v for k, v in props.headers.items() if k != "x-delivery-count"} == {
                "x-hub-portal": PORTAL_ID, "x-hub-authority": ABH.identifier, "x-message-type": sent.message_type,
                "x-hub-application-ref": f"OZG-ANTRAG-{i:08d}", "x-hub-reply-uuid": sent.reply_uuid,
                "x-hub-xta-message-id": transport_id}
            envelope = json.loads(body)
            assert base64.b64decode(envelope["message"]["data"]) == sent.message  # decrypted, unchanged
            assert envelope["attachments"] == []

        events = wait_for(lambda: collector.events if len(collector.events) >= 3 else None, 30,
                          what="3 reply_received events")
        assert len(events) == 3
        by_ref = {e.application_ref: e for e in events}
        for i, transport_id in enumerate(ids):
            event = by_ref[f"OZG-ANTRAG-{i:08d}"]
            assert (event.event, event.message_id, event.portal, event.destination) == (
                "reply_received", "", PORTAL_ID, ABH.identifier)
            assert event.transport_message_id == transport_id
            assert event.event_id == event_id_for("reply_received", transport_id)
            assert event.detail == {"reply_id": transport_id, "message_type": REPLY_TYPES[i],
                                    "reply_uuid": replies[i].reply_uuid}
        assert _value(poller, "hub_replies_total", outcome="published") == 3
    finally:
        collector.close()


def test_unusable_replies_are_parked_with_their_reason_and_closed(config, sim, poller, pki) -> None:
    url = config.broker.url
    collector = StatusCollector(url, "#")
    try:
        good = reply(OZG_STATUSMELDUNG, seed=10, ref="OZG-ANTRAG-00000010")
        forged = reply(OZG_STATUSMELDUNG, seed=11, ref="OZG-ANTRAG-00000011",
                       signer=load_signing_identity(*pki["mallory"]))
        undecryptable = reply(OZG_TERMINMITTEILUNG, seed=12, ref="OZG-ANTRAG-00000012",
                              encrypt_for=load_certificate(pki["azr-000200"][1]))
        valid = reply(OZG_STATUSMELDUNG, seed=13, ref="OZG-ANTRAG-00000013")
        invalid = ReplyToSend(OZG_STATUSMELDUNG, valid.message.replace(
            b"</antragsidentifikation>", b"</antragsidentifikation><unerwartet>x</unerwartet>"))
        assert invalid.message != valid.message
        application, _ = make_ozg_application(reader=PORTAL, author=ABH, seed=14)
        wrong_type = ReplyToSend("OZG.Antrag.130101", application)  # configured, but not a reply type
        plaintext = ReplyToSend(good.message_type, reply(OZG_STATUSMELDUNG, seed=15, ref="R").message, encrypt=False)
        ids = send(pki, sim.url, [good, forged, undecryptable, invalid, wrong_type, plaintext])
        expected = {ids[1]: "signature_invalid", ids[2]: "decryption_failed", ids[3]: "schema_violation",
                    ids[4]: "unknown_message_type", ids[5]: "content_not_encrypted"}

        assert poller.drain() is True
        parked = take_all(url, REPLIES_PARKED, len(expected))
        assert in_portal_mailbox(sim) == []  # parked safely, then closed: nothing left, nothing lost
        assert {p.message_id: p.headers["x-hub-reason"] for p, _b in parked} == expected
        for props, body in parked:
            h = props.headers
            assert (props.app_id, props.type, props.content_type, props.delivery_mode) == (
                "xoev-hub", "hub.reply", "application/xml", 2)
            assert h["x-hub-portal"] == PORTAL_ID and h["x-hub-authority"] == ABH.identifier
            assert h["x-hub-xta-message-id"] == props.message_id and h["x-hub-error-class"]
            assert h["x-hub-error-message"] and "OZG-ANTRAG" not in h["x-hub-error-message"]
            assert b"GenericContentContainer" in body  # the fetched container, as it came
            if h["x-hub-reason"] in ("signature_invalid", "decryption_failed", "schema_violation"):
                assert b"EncryptedData" in body and b"OZG-ANTRAG" not in body  # encrypted stays encrypted
        [(props, _body)] = take_all(url, QUEUE, 1)
        assert props.message_id == ids[0]
        wait_for(lambda: collector.events, 30, what="the good reply's event")
        assert [e.transport_message_id for e in collector.events if e.event == "reply_received"] == [ids[0]]
        assert _value(poller, "hub_replies_total", outcome="parked") == 5
        for reason in expected.values():
            assert _value(poller, "hub_replies_parked_total", reason=reason) == 1
    finally:
        collector.close()


def test_a_failed_close_gives_a_duplicate_with_the_same_message_id(config, sim, poller, pki) -> None:
    url = config.broker.url
    [transport_id] = send(pki, sim.url, [reply(OZG_STATUSMELDUNG, seed=20, ref="OZG-ANTRAG-00000020")])
    sim.inject(InjectedFault(operation="close", http_status=503))
    assert poller.poll_once().failed  # published and confirmed, but not closed
    assert in_portal_mailbox(sim) == [transport_id]
    assert _value(poller, "hub_mailbox_errors_total", reason="endpoint_unavailable") == 1
    assert poller.poll_once().handled == 1  # fetched again, published again, closed
    assert in_portal_mailbox(sim) == []
    got = take_all(url, QUEUE, 2)
    assert [p.message_id for p, _b in got] == [transport_id, transport_id]
    assert got[0][1] == got[1][1]


def test_nothing_is_closed_while_the_broker_cannot_take_the_reply(config, sim, poller, pki) -> None:
    url = config.broker.url
    [transport_id] = send(pki, sim.url, [reply(OZG_STATUSMELDUNG, seed=30, ref="OZG-ANTRAG-00000030")])
    connection = pika.BlockingConnection(pika.URLParameters(url))
    connection.channel().queue_delete(QUEUE)  # no queue bound for the portal: the mandatory publish returns
    connection.close()
    result = poller.poll_once()
    assert result.failed and result.handled == 0
    assert in_portal_mailbox(sim) == [transport_id]  # not closed
    assert _value(poller, "hub_mailbox_errors_total", reason="unknown_destination") == 1
    declare_topology(config)
    assert poller.poll_once().handled == 1
    assert [p.message_id for p, _b in take_all(url, QUEUE, 1)] == [transport_id]
    assert in_portal_mailbox(sim) == []


def _hub(config_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub", "--config", str(config_path), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, check=False)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:  # not listening (yet)
        return 0, ""


def test_hub_replies_command(fresh_broker_url, sim, pki, tmp_path) -> None:
    path = write_config(tmp_path, fresh_broker_url, pki, sim.url, poll_interval=0.2)
    port = free_port()
    log = (tmp_path / "replies.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "hub", "--config", str(path), "replies", "--http-port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _get(f"{base}/readyz")[0] == 200 if proc.poll() is None else pytest.fail("exited"),
                 60, interval=0.2, what="hub replies ready")  # the topology is declared by the process itself
        ids = send(pki, sim.url, [reply(t, seed=40 + i, ref=f"OZG-ANTRAG-{40 + i:08d}")
                                  for i, t in enumerate(REPLY_TYPES)])
        wait_for(lambda: queue_depth(fresh_broker_url, QUEUE) == 3, 60, what="3 replies in the portal's queue")
        wait_for(lambda: in_portal_mailbox(sim) == [], 30, what="the mailbox closed")
        metrics = wait_for(lambda: (m := _get(f"{base}/metrics")[1]) and metric_value(
            m, "hub_mailbox_polls_total", portal=PORTAL_ID, result="empty") >= 1 and m, 30,
            what="an empty poll after the replies")
        assert metric_value(metrics, "hub_replies_total", portal=PORTAL_ID, outcome="published") == 3
        assert _get(f"{base}/readyz") == (200, "connected; polling 1 mailbox(es)\n")
        assert _get(f"{base}/healthz")[0] == 200
        sim.inject(InjectedFault(operation="getStatusList", http_status=503, count=3))  # the endpoint in trouble
        wait_for(lambda: _get(f"{base}/readyz") == (503, f"last mailbox poll failed: {PORTAL_ID}\n"), 30,
                 interval=0.05, what="not ready while the mailbox fails")
        wait_for(lambda: _get(f"{base}/readyz")[0] == 200, 30, what="ready again")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
    assert sorted(p.message_id for p, _b in take_all(fresh_broker_url, QUEUE, 3)) == sorted(ids)

    more = send(pki, sim.url, [reply(OZG_STATUSMELDUNG, seed=50 + i, ref="OZG-ANTRAG-00000050") for i in range(2)])
    done = _hub(path, "replies", "--once", PORTAL_ID)
    assert done.returncode == 0, done.stderr
    assert in_portal_mailbox(sim) == []
    assert sorted(p.message_id for p, _b in take_all(fresh_broker_url, QUEUE, 2)) == sorted(more)

    unknown = _hub(path, "replies", "--once", "no-such-portal")
    assert unknown.returncode == 1 and "no-such-portal" in unknown.stderr

    broken = write_config(tmp_path / "broken", fresh_broker_url, pki, sim.url)
    broken.write_text(broken.read_text().replace(str(pki["portal"][0]), str(tmp_path / "missing.key.pem")))
    refused = _hub(broken, "replies", "--once")
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "mailboxes.test-portal.decryption_key" in lines[0], refused.stderr


def test_an_unreachable_mailbox_is_retried_not_fatal(fresh_broker_url, pki, tmp_path) -> None:
    config = make_config(fresh_broker_url, pki, "http://127.0.0.1:9/xta", poll_interval=0.2, timeout=2)
    declare_topology(config)
    publisher = ResilientPublisher(config.broker, "test-replies")
    [poller] = build_pollers(config, [PORTAL_ID], publisher, ReplyMetrics(CollectorRegistry()))
    try:
        assert poller.drain() is False
        result: Any = poller.poll_once()
        assert result.failed and poller.last_poll_ok is False
        assert _value(poller, "hub_mailbox_errors_total", reason="endpoint_unavailable") == 2
        assert PORTAL.identifier  # the account polled is the portal's own
    finally:
        poller.mailbox.close()
        publisher.close()
