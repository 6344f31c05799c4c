"""The simulator's nonsense answers (``simulator.garbage``): each kind, in an outage window, by
injection, over the control API and from the command line; and the client takes every one for the
endpoint's fault (``MalformedAnswer``, transient)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from lxml import etree
from xta_testdata import AUTHOR, READER, content, metadata

from hub.errors import MalformedAnswer, XtaFault
from tests.clock import SteppedClock
from transport.xta.client import XtaClient, XtaEndpoint
from transport.xta.container import build_content_container, generic_container
from transport.xta.simulator import (
    ChaosConfig,
    Exchange,
    InjectedFault,
    Outage,
    RunningSimulator,
    SimulatorConfig,
    serve,
)
from transport.xta.simulator.cli import build_config, parser
from transport.xta.simulator.config import GARBAGE_KINDS
from transport.xta.simulator.garbage import FOREIGN_NS, PROCESSED_KINDS

SERVICE = "xauslaender1211OZGPORTALABH"


class _Simulator:
    def __init__(self) -> None:
        self.clock = SteppedClock()
        self.exchanges: list[Exchange] = []
        self.running: RunningSimulator = serve(SimulatorConfig(clock=self.clock), observer=self.exchanges.append)
        self.client = XtaClient(XtaEndpoint(self.running.url, timeout=10))

    def garbage_window(self, kind: str, seconds: float = 60) -> None:
        """From now on, for ``seconds`` of the simulator's clock, every answer is ``kind`` nonsense."""
        self.running.simulator.configure_chaos(ChaosConfig(outages=(Outage(0, seconds, kind),)))

    def send(self, message_id: str) -> None:
        self.client.send_message(metadata(message_id), generic_container(build_content_container(content())))

    def last(self, operation: str) -> Exchange:
        return next(e for e in reversed(self.exchanges) if e.operation == operation)


@pytest.fixture
def sim() -> Iterator[_Simulator]:
    simulator = _Simulator()
    yield simulator
    simulator.client.close()
    simulator.running.stop()


def _looks_like(kind: str, exchange: Exchange) -> None:
    """What the far side really sent for each kind (so a kind cannot quietly become another)."""
    body, ctype = exchange.response, exchange.response_content_type
    assert exchange.status == 200
    if kind == "html":
        assert ctype.startswith("text/html") and b"<html>" in body
    elif kind == "text":
        assert ctype.startswith("text/plain") and b"<" not in body
    elif kind == "empty":
        assert body == b""
    elif kind == "soap11":
        assert b"http://schemas.xmlsoap.org/soap/envelope/" in body
    elif kind == "wrong-body":
        assert FOREIGN_NS.encode() in body
    elif kind == "empty-body":
        root = etree.fromstring(body)
        assert len(root.find("{http://www.w3.org/2003/05/soap-envelope}Body")) == 0
    else:
        assert kind == "truncated-mtom" and ctype.startswith("multipart/related") and not body.endswith(b"--\r\n")


@pytest.mark.parametrize("kind", GARBAGE_KINDS)
def test_every_kind_is_a_malformed_answer_until_the_window_ends(sim, kind) -> None:
    ready = sim.client.create_message_id(AUTHOR)
    sim.garbage_window(kind)
    for call, operation in ((lambda: sim.client.create_message_id(AUTHOR), "createMessageId"),
                            (lambda: sim.client.lookup_service(AUTHOR, [(READER, SERVICE)]), "lookupService")):
        with pytest.raises(MalformedAnswer) as info:
            call()
        assert info.value.transient and info.value.reason == "endpoint_protocol"
        _looks_like(kind, sim.last(operation))
    if kind == "empty-body":  # sendMessage's right answer *is* an empty body: carried out, accepted
        sim.send(ready)
        assert sim.running.store.get(ready) is not None
        assert sim.client.check_account_active(AUTHOR)
    else:
        with pytest.raises(MalformedAnswer):
            sim.send(ready)
        _looks_like(kind, sim.last("sendMessage"))
        assert (sim.running.store.get(ready) is not None) is (kind in PROCESSED_KINDS)
        with pytest.raises(MalformedAnswer):
            sim.client.check_account_active(AUTHOR)
    sim.clock.advance(59)
    with pytest.raises(MalformedAnswer):  # still inside the window
        sim.client.create_message_id(AUTHOR)
    sim.clock.advance(1)
    assert sim.client.create_message_id(AUTHOR).startswith("urn:de:xta:messageid:")  # recovered
    assert sim.client.lookup_service(AUTHOR, [(READER, SERVICE)])[0].available is True


def test_truncated_answer_after_acceptance_then_resend_gets_9024(sim) -> None:
    message_id = sim.client.create_message_id(AUTHOR)
    sim.running.inject(InjectedFault(operation="sendMessage", garbage="truncated-mtom"))
    with pytest.raises(MalformedAnswer, match="truncated|closing boundary"):
        sim.send(message_id)
    assert sim.running.store.get(message_id) is not None  # accepted; only the answer was broken
    with pytest.raises(XtaFault) as info:
        sim.send(message_id)
    assert info.value.code == "9024"


def test_garbage_true_is_plain_text_and_unknown_kinds_are_refused(sim) -> None:
    sim.running.inject(InjectedFault(garbage=True))
    with pytest.raises(MalformedAnswer):
        sim.client.create_message_id(AUTHOR)
    _looks_like("text", sim.last("createMessageId"))
    with pytest.raises(ValueError, match="garbage"):
        InjectedFault(garbage="pdf")
    with pytest.raises(ValueError, match="outage mode"):
        Outage(0, 10, "pdf")


def test_garbage_over_the_control_api(sim) -> None:
    base = sim.running.base_url
    answer = requests.post(f"{base}/_sim/inject", json={"operation": "createMessageId", "garbage": "soap11"}, timeout=10)
    assert answer.status_code == 201 and answer.json()["garbage"] == "soap11"
    with pytest.raises(MalformedAnswer, match="SOAP 1.1"):
        sim.client.create_message_id(AUTHOR)
    assert sim.client.create_message_id(AUTHOR)  # one-off: used up
    assert requests.post(f"{base}/_sim/inject", json={"garbage": "pdf"}, timeout=10).status_code == 400
    spec = {"outages": [{"start": 0, "duration": 30, "mode": "html"}]}
    answer = requests.post(f"{base}/_sim/chaos", json=spec, timeout=10)
    assert answer.status_code == 200 and answer.json()["outages"][0]["mode"] == "html"
    with pytest.raises(MalformedAnswer):
        sim.client.create_message_id(AUTHOR)
    _looks_like("html", sim.last("createMessageId"))
    sim.clock.advance(30)
    assert sim.client.create_message_id(AUTHOR)
    bad = {"outages": [{"start": 0, "duration": 30, "mode": "pdf"}]}
    assert requests.post(f"{base}/_sim/chaos", json=bad, timeout=10).status_code == 400


def test_garbage_window_from_the_command_line() -> None:
    config = build_config(parser().parse_args(["--outage", "60:30:truncated-mtom", "--outage", "0:5:empty-body"]))
    assert config.chaos.outages == (Outage(60, 30, "truncated-mtom"), Outage(0, 5, "empty-body"))
    with pytest.raises(SystemExit):
        build_config(parser().parse_args(["--outage", "0:30:pdf"]))
