"""The return-channel poller (hub/replies.py) with an in-memory mailbox and a stand-in publisher:
the order publish -> event -> commit, nothing committed unless confirmed, every unusable reply
parked with its reason, trouble of ours never parked, one reply that never works never blocking
the others, and no input that makes it raise."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import pytest
from prometheus_client import CollectorRegistry

from adapters.base import FetchedReply
from hub.envelope import CONTENT_TYPE
from hub.errors import (
    ConfigError,
    DecryptionFailed,
    EndpointUnavailable,
    KeyStoreError,
    MalformedAnswer,
    ProtocolError,
    PublishNotConfirmed,
    SignatureInvalid,
    UnknownDestination,
    XtaFault,
)
from hub.limits import SizeLimits
from hub.replies import ReplyMetrics, ReplyPoller, amqp_message_id
from hub.reply_failures import STUCK_AFTER
from hub.status import StatusEvent, event_id_for
from hub.topology import REPLIES_EXCHANGE, REPLIES_PARKED, STATUS_EXCHANGE
from schemas.registry import SchemaRegistry
from transport.content import Content, ContentPart

NS = "urn:test:reply"
TYPE = "OZG.Statusmeldung.130104"
OTHER_TYPE = "OZG.RueckkanalFrage.130102"
NOT_A_REPLY_TYPE = "OZG.Antrag.130101"
PORTAL = "portal-a"
AUTHORITY = "azr:000100"
XSD = f"""<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="{NS}" elementFormDefault="unqualified">
  <xs:element name="reply">
    <xs:complexType><xs:sequence>
      <xs:element name="nachrichtenkopf.g2g"><xs:complexType><xs:sequence>
        <xs:element name="identifikation.nachricht"><xs:complexType><xs:sequence>
          <xs:element name="nachrichtenUUID" type="xs:string"/>
        </xs:sequence></xs:complexType></xs:element>
      </xs:sequence></xs:complexType></xs:element>
      <xs:element name="antragsidentifikation" type="xs:string" minOccurs="0"/>
      <xs:element name="text" type="xs:string"/>
    </xs:sequence></xs:complexType>
  </xs:element>
</xs:schema>
"""


def reply_xml(ref: str | None = "OZG-ANTRAG-00000042", uuid: str = "5f0c6b1e-0000-4000-8000-000000000001",
              text: str = "Ihr Antrag ist eingegangen") -> bytes:
    ref_el = f"<antragsidentifikation>{ref}</antragsidentifikation>" if ref is not None else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?><r:reply xmlns:r="{NS}"><nachrichtenkopf.g2g>'
            f"<identifikation.nachricht><nachrichtenUUID>{uuid}</nachrichtenUUID></identifikation.nachricht>"
            f"</nachrichtenkopf.g2g>{ref_el}<text>{text}</text></r:reply>").encode()


def make_reply(tid: str = "urn:de:xta:messageid:reply-1", *, xml: bytes | None = None, message_type: str = TYPE,
               problem: Exception | None = None, content: Content | None | bool = True,
               author: str = AUTHORITY, raw: bytes = b"<raw-container/>") -> FetchedReply:
    if content is True:
        content = Content(ContentPart(xml if xml is not None else reply_xml(), "application/xml", "reply.xml"),
                          (ContentPart(b"%PDF-1.7 attachment", "application/pdf", "a.pdf"),))
    return FetchedReply(transport_message_id=tid, author=author, message_type=message_type,
                        content=content or None, problem=problem, raw=raw, handle=f"handle:{tid}")


@dataclass
class Memory:
    """An in-memory ReplyMailbox; ``log`` is shared with the publisher to check the order of calls."""

    replies: dict[str, FetchedReply]
    log: list[tuple[str, ...]]
    fail: dict[str, Exception] = field(default_factory=dict)  # operation -> error raised (once each)
    gone: set[str] = field(default_factory=set)
    broken: dict[str, Exception] = field(default_factory=dict)  # id -> error its every fetch raises
    fetched: list[str] = field(default_factory=list)

    def pending(self, max_items: int) -> list[str]:
        self._maybe_fail("pending")
        return list(self.replies)[:max_items]

    def fetch(self, transport_message_id: str) -> FetchedReply | None:
        self._maybe_fail("fetch")
        self.fetched.append(transport_message_id)
        if transport_message_id in self.broken:
            raise self.broken[transport_message_id]
        if transport_message_id in self.gone:
            return None
        return self.replies.get(transport_message_id)

    def commit(self, reply: FetchedReply) -> None:
        self._maybe_fail("commit")
        assert reply.handle == f"handle:{reply.transport_message_id}"
        self.log.append(("commit", reply.transport_message_id))
        del self.replies[reply.transport_message_id]

    def close(self) -> None:
        pass

    def _maybe_fail(self, operation: str) -> None:
        error = self.fail.pop(operation, None)
        if error is not None:
            raise error


@dataclass
class Sent:
    exchange: str
    routing_key: str
    body: bytes
    properties: pika.BasicProperties
    mandatory: bool


class StandInPublisher:
    """Records publishes into the shared log; ``fail[exchange]`` makes the next publish there raise."""

    def __init__(self, log: list[tuple[str, ...]]) -> None:
        self.log = log
        self.sent: list[Sent] = []
        self.fail: dict[str, list[Exception]] = {}
        self.is_open = True

    def publish_and_wait(self, exchange: str, routing_key: str, body: bytes, properties: pika.BasicProperties,
                         *, mandatory: bool = False, timeout: float = 30.0, deadline: float = 300.0) -> None:
        errors = self.fail.get(exchange or routing_key)
        if errors:
            raise errors.pop(0)
        self.log.append(("publish", exchange or routing_key, str(properties.message_id)))
        self.sent.append(Sent(exchange, routing_key, body, properties, mandatory))

    def to(self, exchange: str) -> list[Sent]:
        return [s for s in self.sent if (s.exchange or s.routing_key) == exchange]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> SchemaRegistry:
    xsd = tmp_path_factory.mktemp("xsd") / "reply.xsd"
    xsd.write_text(XSD)
    reg = SchemaRegistry()
    for code in (TYPE, OTHER_TYPE, NOT_A_REPLY_TYPE):  # the last is known, but not a reply type of the mailbox
        reg.register(code, xsd)
    reg.preload()
    return reg


class Rig:
    def __init__(self, registry: SchemaRegistry, *replies: FetchedReply, **options: Any) -> None:
        self.log: list[tuple[str, ...]] = []
        self.mailbox = Memory({r.transport_message_id: r for r in replies}, self.log)
        self.publisher = StandInPublisher(self.log)
        self.metrics = ReplyMetrics(CollectorRegistry())
        self.poller = ReplyPoller(PORTAL, self.mailbox, self.publisher, registry, (TYPE, OTHER_TYPE), SizeLimits(),
                                  self.metrics, **{"poll_interval": 0.5, "batch": 10, **options})

    def value(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, {"portal": PORTAL, **labels}) or 0.0


def test_publish_then_event_then_commit_in_that_order(registry: SchemaRegistry) -> None:
    rig = Rig(registry, make_reply())
    result = rig.poller.poll_once()
    assert (result.handled, result.failed) == (1, False)
    tid = "urn:de:xta:messageid:reply-1"
    assert rig.log == [("publish", REPLIES_EXCHANGE, tid), ("publish", STATUS_EXCHANGE, event_id_for("reply_received", tid)),
                       ("commit", tid)]
    assert rig.value("hub_replies_total", outcome="published") == 1
    assert rig.value("hub_mailbox_polls_total", result="replies") == 1
    assert rig.poller.last_poll_ok is True


def test_published_reply_follows_the_contract(registry: SchemaRegistry) -> None:
    rig = Rig(registry, make_reply())
    rig.poller.poll_once()
    [sent] = rig.publisher.to(REPLIES_EXCHANGE)
    p = sent.properties
    assert sent.routing_key == PORTAL and sent.mandatory
    assert (p.message_id, p.app_id, p.type, p.content_type, p.delivery_mode) == (
        "urn:de:xta:messageid:reply-1", "xoev-hub", "hub.reply", CONTENT_TYPE, 2)
    assert isinstance(p.timestamp, int)
    assert p.headers == {"x-hub-portal": PORTAL, "x-hub-authority": AUTHORITY, "x-message-type": TYPE,
                         "x-hub-application-ref": "OZG-ANTRAG-00000042",
                         "x-hub-reply-uuid": "5f0c6b1e-0000-4000-8000-000000000001",
                         "x-hub-xta-message-id": "urn:de:xta:messageid:reply-1"}
    body = json.loads(sent.body)
    assert set(body) == {"message", "attachments"}
    assert body["message"]["content_type"] == "application/xml" and body["message"]["size"] == len(reply_xml())
    assert [a["filename"] for a in body["attachments"]] == ["a.pdf"]


def test_reply_received_event_links_the_application(registry: SchemaRegistry) -> None:
    rig = Rig(registry, make_reply())
    rig.poller.poll_once()
    [sent] = rig.publisher.to(STATUS_EXCHANGE)
    event = StatusEvent.from_body(sent.body)  # what the tracker accepts
    tid = "urn:de:xta:messageid:reply-1"
    assert (event.event, event.message_id, event.portal, event.destination) == ("reply_received", "", PORTAL, AUTHORITY)
    assert event.application_ref == "OZG-ANTRAG-00000042" and event.transport_message_id == tid
    assert event.event_id == event_id_for("reply_received", tid)
    assert event.detail == {"reply_id": tid, "message_type": TYPE,
                            "reply_uuid": "5f0c6b1e-0000-4000-8000-000000000001"}
    assert sent.routing_key == f"{PORTAL}.reply_received.{AUTHORITY}"
    assert "eingegangen" not in sent.body.decode()  # ids only, never content


def test_same_reply_fetched_twice_keeps_its_ids(registry: SchemaRegistry) -> None:
    rig = Rig(registry, make_reply())
    rig.publisher.fail[REPLIES_EXCHANGE] = [PublishNotConfirmed("nacked")]
    assert rig.poller.poll_once().failed
    rig.mailbox.fail["commit"] = EndpointUnavailable("close timed out")
    assert rig.poller.poll_once().failed  # published, not closed: fetched again
    assert rig.poller.poll_once().handled == 1
    ids = [s.properties.message_id for s in rig.publisher.to(REPLIES_EXCHANGE)]
    events = [s.properties.message_id for s in rig.publisher.to(STATUS_EXCHANGE)]
    assert len(ids) == 2 and len(set(ids)) == 1 and len(events) == 2 and len(set(events)) == 1
    assert not rig.mailbox.replies


@pytest.mark.parametrize("error", [PublishNotConfirmed("nacked"), UnknownDestination("no route")],
                         ids=lambda e: type(e).__name__)
def test_no_commit_when_the_publish_is_not_confirmed(registry: SchemaRegistry, error: Exception) -> None:
    rig = Rig(registry, make_reply("r1"), make_reply("r2"))
    rig.publisher.fail[REPLIES_EXCHANGE] = [error]
    result = rig.poller.poll_once()
    assert result.failed and result.handled == 0
    assert not [e for e in rig.log if e[0] == "commit"] and set(rig.mailbox.replies) == {"r1", "r2"}
    assert not rig.publisher.to(STATUS_EXCHANGE)  # no event for what is not safely published
    assert rig.poller.last_poll_ok is False
    assert rig.value("hub_mailbox_polls_total", result="failed") == 1
    assert rig.value("hub_mailbox_errors_total", reason=getattr(error, "reason", "internal_error")) == 1
    assert rig.value("hub_replies_total", outcome="published") == 0
    assert rig.poller.poll_once().handled == 2  # the next cycle takes them again
    assert not rig.mailbox.replies


def test_a_publisher_bug_on_one_reply_skips_that_reply_only(registry: SchemaRegistry) -> None:
    rig = Rig(registry, make_reply("r1"), make_reply("r2"))
    rig.publisher.fail[REPLIES_EXCHANGE] = [RuntimeError("publisher bug")]
    result = rig.poller.poll_once()
    assert (result.handled, result.failed) == (1, False)
    assert [e for e in rig.log if e[0] == "commit"] == [("commit", "r2")] and set(rig.mailbox.replies) == {"r1"}
    assert rig.value("hub_mailbox_errors_total", reason="internal_error") == 1
    assert rig.poller.poll_once().handled == 1 and not rig.mailbox.replies


def test_no_commit_when_parking_is_not_confirmed(registry: SchemaRegistry) -> None:
    rig = Rig(registry, make_reply(problem=SignatureInvalid("bad signature"), content=None))
    rig.publisher.fail[REPLIES_PARKED] = [PublishNotConfirmed("no confirm")]
    assert rig.poller.poll_once().failed
    assert rig.mailbox.replies and not [e for e in rig.log if e[0] == "commit"]
    assert rig.poller.poll_once().handled == 1 and not rig.mailbox.replies


def test_a_lost_status_event_does_not_keep_the_reply(registry: SchemaRegistry) -> None:
    rig = Rig(registry, make_reply())
    rig.publisher.fail[STATUS_EXCHANGE] = [PublishNotConfirmed("no confirm")]
    assert rig.poller.poll_once().handled == 1
    assert not rig.mailbox.replies and len(rig.publisher.to(REPLIES_EXCHANGE)) == 1


PROBLEMS = [
    ("signature_invalid", {"problem": SignatureInvalid("signature does not verify"), "content": None}),
    ("decryption_failed", {"problem": DecryptionFailed("cannot decrypt"), "content": None}),
    ("reply_protocol", {"problem": ProtocolError("no MessageMetaData"), "content": None}),
    ("reply_protocol", {"content": None}),
    ("unknown_message_type", {"message_type": NOT_A_REPLY_TYPE}),
    ("unknown_message_type", {"message_type": "OZG.Unbekannt.999"}),
    ("xml_rejected", {"xml": b"<r:reply xmlns:r='urn:test:reply'><unclosed>"}),
    ("xml_rejected", {"xml": b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>'}),
    ("schema_violation", {"xml": reply_xml().replace(b"<text>", b"<extra/><text>")}),
    ("schema_violation", {"xml": b"<other xmlns='urn:else'/>"}),
]


@pytest.mark.parametrize(("reason", "kwargs"), PROBLEMS, ids=[f"{r}-{i}" for i, (r, _k) in enumerate(PROBLEMS)])
def test_unusable_replies_are_parked_with_their_reason_then_closed(registry: SchemaRegistry, reason: str,
                                                                   kwargs: dict[str, Any]) -> None:
    rig = Rig(registry, make_reply("bad-1", raw=b"<xenc:EncryptedData>still encrypted</xenc:EncryptedData>", **kwargs))
    result = rig.poller.poll_once()
    assert (result.handled, result.failed) == (1, False)
    assert rig.log == [("publish", REPLIES_PARKED, "bad-1"), ("commit", "bad-1")]
    [sent] = rig.publisher.sent
    assert (sent.exchange, sent.routing_key, sent.mandatory) == ("", REPLIES_PARKED, True)
    assert sent.body == b"<xenc:EncryptedData>still encrypted</xenc:EncryptedData>"
    p = sent.properties
    assert (p.message_id, p.app_id, p.type, p.content_type, p.delivery_mode) == (
        "bad-1", "xoev-hub", "hub.reply", "application/xml", 2)
    h = p.headers
    assert h["x-hub-reason"] == reason and h["x-hub-portal"] == PORTAL and h["x-hub-authority"] == AUTHORITY
    assert h["x-hub-xta-message-id"] == "bad-1" and h["x-message-type"] == kwargs.get("message_type", TYPE)
    assert h["x-hub-error-class"] and h["x-hub-error-message"]
    assert "eingegangen" not in json.dumps(h)
    assert rig.value("hub_replies_total", outcome="parked") == 1
    assert rig.value("hub_replies_parked_total", reason=reason) == 1


def test_reply_without_antragsidentifikation_is_published_without_an_event(registry: SchemaRegistry) -> None:
    rig = Rig(registry, make_reply(xml=reply_xml(ref=None)))
    assert rig.poller.poll_once().handled == 1
    [sent] = rig.publisher.sent
    assert "x-hub-application-ref" not in sent.properties.headers
    assert [e[0] for e in rig.log] == ["publish", "commit"]


def test_a_reply_that_left_meanwhile_is_skipped(registry: SchemaRegistry) -> None:
    rig = Rig(registry, make_reply("r1"), make_reply("r2"))
    rig.mailbox.gone.add("r1")
    result = rig.poller.poll_once()
    assert (result.handled, result.listed, result.failed) == (1, 2, False)
    assert [e for e in rig.log if e[0] == "commit"] == [("commit", "r2")]


@pytest.mark.parametrize("operation", ["pending", "fetch", "commit"])
@pytest.mark.parametrize("error", [EndpointUnavailable("connection refused"),
                                   XtaFault("internal", exception_type="XTAWSTechnicalProblemException", code="9030"),
                                   ValueError("adapter bug")], ids=lambda e: type(e).__name__)
def test_endpoint_trouble_is_counted_never_raised(registry: SchemaRegistry, operation: str, error: Exception) -> None:
    rig = Rig(registry, make_reply())
    rig.mailbox.fail[operation] = error
    result = rig.poller.poll_once()
    assert result.failed and rig.poller.last_poll_ok is False
    reason = getattr(error, "reason", "internal_error")
    assert rig.value("hub_mailbox_errors_total", reason=reason) == 1
    assert rig.poller.poll_once().failed is False and not rig.mailbox.replies


def test_an_empty_mailbox_is_an_ok_poll(registry: SchemaRegistry) -> None:
    rig = Rig(registry)
    assert rig.poller.poll_once() == type(rig.poller.poll_once())()
    assert rig.value("hub_mailbox_polls_total", result="empty") == 2 and rig.poller.last_poll_ok is True
    assert rig.poller.drain() is True


def test_drain_takes_everything_in_batches_and_reports_trouble(registry: SchemaRegistry) -> None:
    rig = Rig(registry, *(make_reply(f"r{i}") for i in range(25)), batch=10)
    assert rig.poller.drain() is True and not rig.mailbox.replies
    assert len(rig.publisher.to(REPLIES_EXCHANGE)) == 25
    rig2 = Rig(registry, make_reply())
    rig2.mailbox.fail["pending"] = EndpointUnavailable("down")
    assert rig2.poller.drain() is False


class RecordingStop:
    """Stands in for the poller's stop event: records every wait, stops after ``limit`` waits."""

    def __init__(self, limit: int) -> None:
        self.waits: list[float] = []
        self.limit = limit

    def is_set(self) -> bool:
        return len(self.waits) >= self.limit

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        return self.is_set()

    def set(self) -> None:
        self.limit = 0


def test_run_backs_off_exponentially_up_to_four_poll_intervals(registry: SchemaRegistry) -> None:
    rig = Rig(registry, make_reply(), poll_interval=1.0)  # every wait below the heartbeat's 5 s step

    class Down(Memory):
        def pending(self, max_items: int) -> list[str]:
            raise EndpointUnavailable("down")

    rig.poller.mailbox = Down({}, [])
    stop = RecordingStop(limit=6)
    rig.poller._stop = stop  # type: ignore[assignment]
    rig.poller.run()
    assert stop.waits == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]  # from 1 s, doubling, capped at 4 intervals
    assert rig.value("hub_mailbox_errors_total", reason="endpoint_unavailable") == 6


def test_run_polls_again_at_once_after_replies_and_waits_when_empty(registry: SchemaRegistry) -> None:
    rig = Rig(registry, make_reply("r1"), make_reply("r2"), batch=1, poll_interval=3.0)
    stop = RecordingStop(limit=2)
    rig.poller._stop = stop  # type: ignore[assignment]
    rig.poller.run()
    assert not rig.mailbox.replies
    assert stop.waits == [3.0, 3.0]  # no wait between the two replies, then the empty mailbox's interval



def test_a_wait_longer_than_the_heartbeat_step_is_cut_into_ticking_steps(registry: SchemaRegistry) -> None:
    rig = Rig(registry, poll_interval=12.0)
    stop = RecordingStop(limit=3)
    rig.poller._stop = stop  # type: ignore[assignment]
    ticks: list[None] = []
    rig.poller.heartbeat.tick = lambda: ticks.append(None)  # type: ignore[method-assign]
    rig.poller.run()
    assert stop.waits == [5.0, 5.0, 2.0]  # the empty mailbox's 12 s, in the heartbeat's 5 s steps
    assert len(ticks) >= 2  # ticked between the steps (and once per poll)

HOSTILE = [
    make_reply("x" * 5000),  # an id far too long for an AMQP short string
    make_reply("id\x00with\x07controls"),
    make_reply("r", author="not an id\n" * 50),
    make_reply("r", author=""),
    make_reply("r", message_type="\x00" * 300),
    make_reply("r", xml=b""),
    make_reply("r", xml=b"\xff\xfe\x00<"),
    make_reply("r", xml=b"<a>" * 100_000),
    make_reply("r", xml=reply_xml(ref="x" * 10_000, uuid="\x01")),
    make_reply("r", xml=reply_xml(ref="OZG&#10;ANTRAG")),
    make_reply("r", problem=KeyError("not even a HubError"), content=None),
]


@pytest.mark.parametrize("reply", HOSTILE, ids=range(len(HOSTILE)))
def test_never_raises_on_bad_input_and_keeps_every_reply(registry: SchemaRegistry, reply: FetchedReply) -> None:
    rig = Rig(registry, reply)
    result = rig.poller.poll_once()
    assert (result.handled, result.failed) == (1, False)
    [sent, *event] = rig.publisher.sent
    assert sent.routing_key in (PORTAL, REPLIES_PARKED)
    assert sent.properties.message_id == amqp_message_id(reply.transport_message_id)
    assert len(sent.properties.message_id.encode()) <= 200
    for value in sent.properties.headers.values():
        assert isinstance(value, str) and len(value) <= 1000
    for e in event:
        StatusEvent.from_body(e.body)  # still a valid event
    assert not rig.mailbox.replies


@pytest.mark.parametrize("error", [ConfigError("schema file gone"), KeyStoreError("key unreadable"),
                                   RuntimeError("validator bug")], ids=lambda e: type(e).__name__)
def test_our_own_trouble_while_checking_never_parks_the_reply(registry: SchemaRegistry, error: Exception,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(registry, make_reply())
    failing = [error]

    def validate(code: str, document: Any) -> None:
        if failing:
            raise failing[0]
        return real(code, document)

    real = registry.validate
    monkeypatch.setattr(registry, "validate", validate)
    result = rig.poller.poll_once()
    assert (result.handled, result.failed) == (0, True) and rig.poller.last_poll_ok is False
    assert not rig.publisher.sent and not [e for e in rig.log if e[0] == "commit"] and rig.mailbox.replies
    assert rig.value("hub_mailbox_errors_total", reason=getattr(error, "reason", "internal_error")) == 1
    assert rig.value("hub_replies_total", outcome="parked") == 0
    failing.clear()  # fixed: the reply is read again and published
    assert rig.poller.poll_once().handled == 1 and not rig.mailbox.replies
    assert [s.routing_key for s in rig.publisher.sent] == [PORTAL, f"{PORTAL}.reply_received.{AUTHORITY}"]


def test_a_reply_that_crashes_our_checks_every_time_does_not_block_the_mailbox(
        registry: SchemaRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(registry, make_reply("r1", xml=reply_xml(text="boom")), make_reply("r2"), make_reply("r3"))
    real = registry.validate

    def validate(code: str, document: Any) -> None:
        if document.findtext("text") == "boom":
            raise RuntimeError("validator bug")
        return real(code, document)

    monkeypatch.setattr(registry, "validate", validate)
    for _ in range(STUCK_AFTER):
        rig.poller.poll_once()
    assert set(rig.mailbox.replies) == {"r1"} and not rig.publisher.to(REPLIES_PARKED)
    assert rig.value("hub_mailbox_stuck_replies") == 1


MESSAGE_FAULTS = [MalformedAnswer("XTA getMessage: no MIME part for cid:x"),
                  XtaFault("refused", exception_type="InvalidMessageIDException", code="9999"),
                  XtaFault("internal", exception_type="XTAWSTechnicalProblemException", code="9030"),
                  ProtocolError("no MessageMetaData"), ValueError("adapter bug")]


@pytest.mark.parametrize("error", MESSAGE_FAULTS, ids=lambda e: f"{type(e).__name__}-{getattr(e, 'reason', '')}")
def test_a_reply_that_cannot_be_fetched_does_not_block_the_others(registry: SchemaRegistry, error: Exception,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(registry, make_reply("r1"), make_reply("r2"), make_reply("r3"))
    rig.mailbox.broken["r1"] = error
    result = rig.poller.poll_once()
    assert (result.handled, result.listed, result.failed) == (2, 3, False)  # something worked: no back-off
    assert [e for e in rig.log if e[0] == "commit"] == [("commit", "r2"), ("commit", "r3")]
    assert [s.properties.message_id for s in rig.publisher.to(REPLIES_EXCHANGE)] == ["r2", "r3"]
    assert set(rig.mailbox.replies) == {"r1"} and rig.poller.last_poll_ok is True
    reason = getattr(error, "reason", "internal_error")
    assert rig.value("hub_mailbox_errors_total", reason=reason) == 1
    with caplog.at_level(logging.WARNING, logger="hub.replies"):
        for polls in range(2, STUCK_AFTER + 3):  # r1 alone now: nothing succeeds, so these back off
            assert rig.poller.poll_once().failed
            assert rig.value("hub_mailbox_stuck_replies") == (1 if polls >= STUCK_AFTER else 0)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [(f"mailbox {PORTAL}: reply r1 cannot be fetched for {STUCK_AFTER} polls; it stays in the "
                       f"mailbox (last reason: {reason})")]
    assert rig.value("hub_mailbox_errors_total", reason=reason) == STUCK_AFTER + 2
    del rig.mailbox.broken["r1"]  # it works again: published, closed, no longer stuck
    assert rig.poller.poll_once().handled == 1 and not rig.mailbox.replies
    assert rig.value("hub_mailbox_stuck_replies") == 0


def test_plain_endpoint_trouble_while_fetching_ends_the_cycle(registry: SchemaRegistry) -> None:
    rig = Rig(registry, make_reply("r1"), make_reply("r2"), make_reply("r3"))
    rig.mailbox.broken["r1"] = EndpointUnavailable("connection refused")
    for _ in range(STUCK_AFTER + 1):
        result = rig.poller.poll_once()
        assert result.failed and result.handled == 0
    assert set(rig.mailbox.fetched) == {"r1"}  # no point in asking a dead endpoint for r2 and r3
    assert rig.value("hub_mailbox_stuck_replies") == 0  # not r1's fault


def test_failing_replies_do_not_use_up_the_batch(registry: SchemaRegistry) -> None:
    rig = Rig(registry, make_reply("r1"), make_reply("r2"), make_reply("r3"), batch=2)
    rig.mailbox.broken.update(r1=MalformedAnswer("x"), r2=MalformedAnswer("y"))
    assert rig.poller.poll_once().failed  # r1, r2 listed, both failed
    result = rig.poller.poll_once()  # lists batch + the 2 failing ones
    assert (result.handled, result.listed, result.failed) == (1, 3, False)
    assert set(rig.mailbox.replies) == {"r1", "r2"}


def test_failure_counts_are_bounded(registry: SchemaRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hub.reply_failures.MAX_TRACKED", 3)
    rig = Rig(registry, *(make_reply(f"r{i}") for i in range(5)), batch=10)
    rig.mailbox.broken.update({f"r{i}": MalformedAnswer("x") for i in range(5)})
    for _ in range(STUCK_AFTER):
        rig.poller.poll_once()
    assert len(rig.poller._failing) == 3
    assert rig.value("hub_mailbox_stuck_replies") == 0  # the least recent were forgotten and counted anew


def test_a_stuck_reply_that_left_the_mailbox_is_forgotten(registry: SchemaRegistry) -> None:
    rig = Rig(registry, make_reply("r1"), make_reply("r2"))
    rig.mailbox.broken["r1"] = MalformedAnswer("x")
    for _ in range(STUCK_AFTER):
        rig.poller.poll_once()
    assert rig.value("hub_mailbox_stuck_replies") == 1
    del rig.mailbox.replies["r1"]  # taken by someone else, never fetched by us again
    assert rig.poller.poll_once().failed is False
    assert rig.value("hub_mailbox_stuck_replies") == 0 and len(rig.poller._failing) == 0


def test_stable_amqp_message_id() -> None:
    assert amqp_message_id("urn:de:xta:messageid:1") == "urn:de:xta:messageid:1"
    long_id = "y" * 300
    assert amqp_message_id(long_id) == amqp_message_id(long_id) != amqp_message_id(long_id + "z")
    assert amqp_message_id(long_id).startswith("xta-sha256:")


def test_replies_module_documented_metrics() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text(encoding="utf-8")
    for name in ("hub_replies_total", "hub_replies_parked_total", "hub_mailbox_polls_total", "hub_mailbox_errors_total",
                 "hub_mailbox_stuck_replies"):
        assert f"`{name}`" in doc
