from __future__ import annotations

import json

import pika
import pytest

from hub.envelope import CONTENT_TYPE, decode_envelope, new_envelope
from hub.errors import EnvelopeError
from transport.content import ContentPart


def _envelope():
    return new_envelope(destination="azr:000100", message_type="OZG.Antrag.130101", message=b"<a>\xc3\xa4</a>",
                        portal="portal-1", message_id="8a7f0c1e-0000-4000-8000-000000000001",
                        attachments=(ContentPart(b"%PDF-1.7 ...", "application/pdf", "pass.pdf"),),
                        service="svc", business_scenario="BS", correlation_id="c-1", test=True)


def test_round_trip_keeps_bytes_and_metadata() -> None:
    e = _envelope()
    decoded = decode_envelope(e.properties(), e.body())
    assert decoded == e
    props = e.properties()
    assert props.delivery_mode == 2 and props.content_type == CONTENT_TYPE and props.app_id == "portal-1"
    assert props.headers["x-destination"] == "azr:000100"


def test_destination_syntax_checked_on_build() -> None:
    with pytest.raises(EnvelopeError, match="Behördenkennung"):
        new_envelope(destination="000100", message_type="t", message=b"<a/>", portal="p")


def _tampered(mutate) -> bytes:
    doc = json.loads(_envelope().body())
    mutate(doc)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(("props_change", "body", "expected"), [
    ({"message_id": None}, None, "message_id"),
    ({"content_type": "application/json"}, None, "content_type must be"),
    ({"headers": {"x-envelope-version": 1, "x-message-type": "t"}}, None, "x-destination is missing"),
    ({"headers": {"x-envelope-version": 2, "x-destination": "azr:1", "x-message-type": "t"}}, None, "x-envelope-version"),
    ({}, b"\xff\xfe", "not valid JSON"),
    ({}, b"[]", "must be an object"),
    ({}, _tampered(lambda d: d["message"].update(size=1)), r"body.message: size 1 declared"),
    ({}, _tampered(lambda d: d["attachments"][0].update(sha256="0" * 64)), r"attachments\[0\]: sha256"),
    ({}, _tampered(lambda d: d["message"].update(data="***")), "not valid base64"),
    ({}, _tampered(lambda d: d["message"].pop("sha256")), "missing field sha256"),
])
def test_contract_violations_are_envelope_errors(props_change, body, expected) -> None:
    e = _envelope()
    p = e.properties()
    props = pika.BasicProperties(**{**{k: getattr(p, k) for k in ("message_id", "content_type", "headers", "app_id")},
                                    **props_change})
    with pytest.raises(EnvelopeError, match=expected):
        decode_envelope(props, body if body is not None else e.body())
