"""The hostile corpus through the real pipeline: RabbitMQ -> worker -> (simulated) XTA receiver.

* payload cases (XXE, billion laughs, deep nesting, ...): the worker's hardened parser refuses
  them; each is dead-lettered (``hub.dead``) with reason ``xml_rejected`` and its specific message,
  the body kept byte-identical;
* crypto cases (tampered signed content, signature wrapping, wrong reader key): the worker signs
  and encrypts correctly, so they are produced on the way (a hostile signer stands in for an
  attacker on the path; the authority's directory entry holds a wrong certificate). The receiver
  (the XTA simulator) refuses them with an XTA fault MessageSchemaViolation 9052 naming the
  security reason; 9052 is permanent, so the worker dead-letters with ``xta_9052``.

After every case the same worker, on its first connection, still delivers a normal application.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.request
from pathlib import Path

import pytest

import adapters.xta2
import transport.security.signature
from hub.envelope import Envelope, new_envelope
from hub.publisher import ConfirmingPublisher, publish_envelope
from hub.samples import make_attachment, make_ozg_application
from hub.status import DEAD_LETTERED, DELIVERED
from hub.topology import DEAD_QUEUE
from tests.integration.helpers import (
    AUTHOR,
    StatusCollector,
    drain,
    make_config,
    running_worker,
    wait_for,
)
from transport.content import Content, ContentPart
from transport.security.keys import load_certificate, load_private_key
from transport.xta.metadata import Party
from transport.xta.simulator import SimulatorConfig, serve

pytestmark = pytest.mark.broker

HOSTILE = Path(__file__).resolve().parents[1] / "unit" / "security" / "hostile"
MANIFEST = {k: v for k, v in json.loads((HOSTILE / "manifest.json").read_text()).items() if not k.startswith("_")}
PAYLOAD_CASES = sorted(name for name, case in MANIFEST.items() if case["check"] == "parse")
READERS = ("azr:000100", "azr:000200", "azr:000300")


@pytest.fixture()
def simulator(pki):
    running = serve(SimulatorConfig(
        reader_keys={aid: load_private_key(pki[aid.replace(":", "-")][0]) for aid in READERS},
        trusted_signers=(load_certificate(pki["ca"][1]),)))
    yield running
    running.stop()


def application(destination: str, seed: int) -> Envelope:
    attachment, filename, ctype = make_attachment(seed)
    xml, message_id = make_ozg_application(reader=Party(destination, "ABH"), author=Party(**AUTHOR), seed=seed,
                                           attachment=attachment)
    return new_envelope(destination=destination, message_type="OZG.Antrag.130101", message=xml, portal="test-portal",
                        message_id=message_id, filename="antrag.xml",
                        attachments=(ContentPart(attachment, ctype, filename),))


def publish(config, envelopes) -> None:
    with ConfirmingPublisher(config.broker, "test-portal") as publisher:
        # unchecked: the hostile payloads must reach the worker, whose own checks are under test
        for future in [publish_envelope(publisher, e, check=False) for e in envelopes]:
            future.result(timeout=10)


def test_payload_cases_are_dead_lettered_with_their_reason(broker_url, pki, simulator) -> None:
    config = make_config(broker_url, pki, simulator.url)
    hostile = {name: new_envelope(destination="azr:000100", message_type="OZG.Antrag.130101", portal="test-portal",
                                  message=(HOSTILE / name).read_bytes(), message_id=f"hostile-{name}")
               for name in PAYLOAD_CASES}
    good = application("azr:000100", 41)
    status = StatusCollector(broker_url)
    try:
        with running_worker(config, "alpha") as worker:
            publish(config, hostile.values())
            dead = drain(broker_url, DEAD_QUEUE, len(hostile), timeout=60)
            publish(config, [good])
            wait_for(lambda: status.of(good.message_id, DELIVERED), 30, what="delivery after the hostile corpus")
            assert worker.connections_opened == 1  # never crashed, never reconnected
        wait_for(lambda: all(status.of(e.message_id, DEAD_LETTERED) for e in hostile.values()), 10,
                 what="dead_lettered status events")
    finally:
        status.close()
    by_id = {props.message_id: (props.headers, body) for props, body in dead}
    assert set(by_id) == {e.message_id for e in hostile.values()}
    for name, envelope in hostile.items():
        headers, body = by_id[envelope.message_id]
        case = MANIFEST[name]
        assert headers["x-hub-reason"] == case["reason"], name
        assert headers["x-hub-error-class"] == case["error"], name
        assert re.search(case["match"], headers["x-hub-error-message"]), (name, headers["x-hub-error-message"])
        assert headers["x-hub-attempts"] == 1  # permanent: no retry
        assert hashlib.sha256(body).digest() == hashlib.sha256(envelope.body(version=2)).digest()  # kept intact


def test_crypto_cases_are_refused_by_the_receiver_and_dead_lettered(broker_url, pki, simulator,
                                                                     monkeypatch) -> None:
    # azr:000200's directory entry carries mallory's certificate: the reader cannot decrypt
    base = make_config(broker_url, pki, simulator.url)
    authorities = tuple(a.model_copy(update={"certificate": pki["mallory"][1]}) if a.id == "azr:000200" else a
                        for a in base.authorities)
    config = base.model_copy(update={"authorities": authorities})
    tampered, wrapped, wrong_key = (application("azr:000100", 51), application("azr:000100", 52),
                                    application("azr:000200", 53))
    good = application("azr:000100", 54)
    real_sign = transport.security.signature.sign_content  # what adapters.xta2 imported

    def hostile_signer(content: Content, identity, **kwargs) -> Content:
        signed = real_sign(content, identity, **kwargs)
        if content.message.data == tampered.content.message.data:  # one byte changed after signing
            data = bytearray(signed.message.data)
            data[len(data) // 2] ^= 0x01
            return Content(ContentPart(bytes(data), signed.message.content_type, signed.message.filename),
                           signed.attachments)
        if content.message.data == wrapped.content.message.data:  # a part slipped in beside the signed ones
            evil = ContentPart(b"%PDF-1.7 evil", "application/pdf", "nachweis.pdf")
            return Content(signed.message, (*signed.attachments[:-1], evil, signed.attachments[-1]))
        return signed

    monkeypatch.setattr(adapters.xta2, "sign_content", hostile_signer)
    status = StatusCollector(broker_url)
    try:
        with running_worker(config, "alpha") as worker:
            publish(config, [tampered, wrapped, wrong_key])
            dead = drain(broker_url, DEAD_QUEUE, 3, timeout=60)
            publish(config, [good])
            wait_for(lambda: status.of(good.message_id, DELIVERED), 30, what="delivery after the crypto cases")
            assert worker.connections_opened == 1
    finally:
        status.close()
    by_id = {props.message_id: props.headers for props, _ in dead}
    expected = {tampered.message_id: "content signature not accepted (signature_invalid)",
                wrapped.message_id: "content signature not accepted (signature_invalid)",
                wrong_key.message_id: "content cannot be decrypted for the reader (decryption_failed)"}
    assert set(by_id) == set(expected)
    for message_id, text in expected.items():
        headers = by_id[message_id]
        assert headers["x-hub-reason"] == "xta_9052"
        assert headers["x-hub-xta-code"] == "9052"
        assert headers["x-hub-error-class"] == "XtaFault"
        # type and code only: a server's fault text may quote the payload, so it is not kept
        assert headers["x-hub-error-message"] == "XTA MessageSchemaViolationException errorCode 9052"
        assert text not in headers["x-hub-error-message"]
        assert headers["x-hub-attempts"] == 1
    base_url = simulator.url.rsplit("/", 1)[0]
    with urllib.request.urlopen(f"{base_url}/_sim/messages", timeout=10) as resp:
        accepted = json.loads(resp.read())
    assert [m["parts"][0]["sha256"] for m in accepted] == [good.content.message.sha256]  # only the good one
