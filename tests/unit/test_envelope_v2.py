"""Envelope version 2 (hub/envelope_v2.py): raw parts behind a JSON preamble. Round trip without a
copy of the body, every corruption refused with its own reason, limits checked before any byte is
hashed, and version 1 still read beside it (the content type selects the decoder)."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import pika
import pytest

import hub.envelope_v2
from hub.envelope import CONTENT_TYPE, decode_envelope, new_envelope
from hub.envelope_v2 import (
    CONTENT_TYPE_V2,
    HEAD_BYTES,
    MAGIC,
    MAX_PARTS,
    MAX_PREAMBLE_BYTES,
    body_limit,
    encode_body,
)
from hub.errors import ContentTooLarge, EnvelopeError, HubError
from hub.limits import SizeLimits
from transport.content import ContentPart

LIMITS = SizeLimits(max_content_bytes=64 * 1024, per_message_type={"Big.Type": 256 * 1024})
MESSAGE = b"<a>\xc3\xa4</a>"


def _envelope(*attachments: bytes, message_type: str = "OZG.Antrag.130101"):
    return new_envelope(destination="azr:000100", message_type=message_type, message=MESSAGE, portal="portal-1",
                        message_id="m-1", service="svc", business_scenario="BS", correlation_id="c-1", test=True,
                        attachments=tuple(ContentPart(a, "application/pdf", f"a{i}.pdf") for i, a in enumerate(attachments)))


def _decode(body: bytes, message_type: str = "OZG.Antrag.130101", limits: SizeLimits = LIMITS):
    return decode_envelope(_envelope(message_type=message_type).properties(version=2), body, limits)


def _entry(data: bytes, **overrides: Any) -> dict[str, Any]:
    return {"content_type": "application/pdf", "filename": "x.pdf", "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), **overrides}


def _frame(preamble: Any, *datas: bytes, raw_preamble: bytes | None = None) -> bytes:
    raw = raw_preamble if raw_preamble is not None else json.dumps(preamble).encode()
    return MAGIC + len(raw).to_bytes(4, "big") + raw + b"".join(datas)


def _body(*datas: bytes, **overrides: Any) -> bytes:
    """A valid v2 body of ``datas`` (the first is the message); ``overrides`` change the last entry."""
    entries = [_entry(d, content_type="application/xml") if i == 0 else _entry(d) for i, d in enumerate(datas)]
    entries[-1].update(overrides)
    return _frame({"parts": entries}, *datas)


def test_round_trip_keeps_bytes_and_metadata_without_copying_the_body() -> None:
    e = _envelope(os.urandom(5000), b"", os.urandom(40_000))
    props, body = e.properties(version=2), e.body(version=2)
    assert props.content_type == CONTENT_TYPE_V2 and props.headers["x-envelope-version"] == 2
    assert len(body) - len(MESSAGE) - 45_000 < 600  # raw bytes: no base64 growth
    decoded = decode_envelope(props, body, LIMITS)
    assert decoded == e
    for part in decoded.content.parts:  # slices of the body itself: nothing was copied
        view: object = part.data
        assert isinstance(view, memoryview) and view.obj is body
    assert [p.filename for p in decoded.content.parts] == ["nachricht.xml", "a0.pdf", "a1.pdf", "a2.pdf"]


def test_version_1_is_still_read_and_the_content_type_selects_the_decoder() -> None:
    e = _envelope(os.urandom(3000))
    assert decode_envelope(e.properties(), e.body(), LIMITS) == e  # v1: JSON
    assert decode_envelope(e.properties(version=2), e.body(version=2), LIMITS) == e
    with pytest.raises(EnvelopeError, match="body is not valid JSON"):  # v1 labels on a v2 body
        decode_envelope(e.properties(), e.body(version=2), LIMITS)
    with pytest.raises(EnvelopeError, match="not a version 2 envelope"):  # v2 labels on a v1 body
        decode_envelope(e.properties(version=2), e.body(), LIMITS)


@pytest.mark.parametrize(("content_type", "version", "expected"), [
    (CONTENT_TYPE_V2, 1, rf"x-envelope-version must be 2 for content_type {CONTENT_TYPE_V2}, got 1"),
    (CONTENT_TYPE_V2, None, "x-envelope-version must be 2"),
    (CONTENT_TYPE_V2, True, "x-envelope-version must be 2"),
    (CONTENT_TYPE_V2, "2", "x-envelope-version must be 2"),
    (CONTENT_TYPE, 2, "x-envelope-version must be 1"),
    (CONTENT_TYPE, True, "x-envelope-version must be 1"),  # an AMQP boolean is not the integer 1
    ("application/octet-stream", 2, "content_type must be"),
])
def test_content_type_and_version_header_must_agree(content_type: str, version: Any, expected: str) -> None:
    e = _envelope()
    p = e.properties(version=2)
    props = pika.BasicProperties(message_id="m-1", content_type=content_type,
                                 headers={**p.headers, "x-envelope-version": version})
    with pytest.raises(EnvelopeError, match=expected):
        decode_envelope(props, e.body(version=2), LIMITS)


def test_unknown_version_is_refused_on_writing() -> None:
    with pytest.raises(EnvelopeError, match="envelope version 3 is unknown"):
        _envelope().body(version=3)


DATA = os.urandom(3000)
CORRUPTIONS: dict[str, tuple[bytes, str]] = {
    "empty body": (b"", "not a version 2 envelope"),
    "wrong magic": (b"XHE1" + _body(MESSAGE, DATA)[4:], "not a version 2 envelope"),
    "head cut short": (MAGIC + b"\x00\x00", "not a version 2 envelope"),
    "preamble longer than the body": (MAGIC + (500).to_bytes(4, "big") + b"{}", r"preamble of 500 bytes declared, 2 bytes"),
    "preamble above its limit": (MAGIC + (MAX_PREAMBLE_BYTES + 1).to_bytes(4, "big"), r"at most 524288 allowed"),
    "preamble not JSON": (_frame(None, raw_preamble=b"{parts"), "preamble is not valid UTF-8 JSON"),
    "preamble not UTF-8": (_frame(None, raw_preamble='{"parts":[]}'.encode("utf-16")), "not valid UTF-8 JSON"),
    "preamble nested deeply": (_frame(None, raw_preamble=b"[" * 100_000 + b"]" * 100_000), "not valid UTF-8 JSON"),
    "preamble with a BOM": (_frame(None, raw_preamble=b"\xef\xbb\xbf{}"), "not valid UTF-8 JSON"),
    "preamble not an object": (_frame([]), "one key 'parts', a list"),
    "extra top-level key": (_frame({"parts": [_entry(MESSAGE)], "x": 1}, MESSAGE), "one key 'parts'"),
    "repeated key": (_frame(None, MESSAGE, raw_preamble=b'{"parts":[],"parts":[]}'), "repeats a key"),
    "no parts": (_frame({"parts": []}), r"0 parts declared, 1 to 256 allowed"),
    "too many parts": (_frame({"parts": [_entry(b"")] * (MAX_PARTS + 1)}), r"257 parts declared"),
    "entry not an object": (_frame({"parts": ["x"]}), r"body.parts\[0\]: expected an object"),
    "missing sha256": (_frame({"parts": [{"content_type": "a/b", "size": 0}]}), r"parts\[0\]: missing field sha256"),
    "missing content_type": (_body(MESSAGE, DATA, content_type=None), r"parts\[1\]: content_type must be a non-empty"),
    "unknown field": (_body(MESSAGE, DATA, data="QUJD"), r"parts\[1\]: unknown field 'data'"),
    "size a float": (_body(MESSAGE, DATA, size=3000.0), r"parts\[1\]: size is not an integer"),
    "size a bool": (_body(MESSAGE, b"\x00", size=True), r"parts\[1\]: size is not an integer"),
    "size negative": (_body(MESSAGE, DATA, size=-1), r"parts\[1\]: size -1 is negative"),
    "sha256 upper case": (_body(MESSAGE, DATA, sha256=hashlib.sha256(DATA).hexdigest().upper()), "64 lower-case hex"),
    "sha256 short": (_body(MESSAGE, DATA, sha256="ab"), "64 lower-case hex"),
    "sizes short of the body": (_body(MESSAGE, DATA, size=2999), r"declare 3008 bytes, 3009 bytes follow"),
    "sizes beyond the body": (_body(MESSAGE, DATA, size=3001), r"declare 3010 bytes, 3009 bytes follow"),
    "trailing junk": (_body(MESSAGE, DATA) + b"\x00", r"declare 3009 bytes, 3010 bytes follow"),
    "data truncated": (_body(MESSAGE, DATA)[:-1], r"declare 3009 bytes, 3008 bytes follow"),
    "hash mismatch": (_body(MESSAGE, DATA, sha256="0" * 64), r"body.parts\[1\]: sha256 does not match"),
    "one bit flipped": (_body(MESSAGE, DATA)[:-1] + bytes([DATA[-1] ^ 1]), r"parts\[1\]: sha256 does not match"),
    "parts swapped": (_frame({"parts": [_entry(MESSAGE), _entry(DATA)]}, DATA, MESSAGE), "sha256 does not match"),
    "content_type no media type": (_body(MESSAGE, DATA, content_type="pdf"), "not a media type"),
    "content_type with a newline": (_body(MESSAGE, DATA, content_type="a/b\nX-Evil: 1"), "control or invalid"),
    "content_type too long": (_body(MESSAGE, DATA, content_type="a/" + "b" * 300), "longer than 255"),
    "filename a path": (_body(MESSAGE, DATA, filename="../../etc/passwd"), "a name, not a path"),
    "filename with NUL": (_body(MESSAGE, DATA, filename="a\x00.pdf"), "control or invalid"),
    "filename a lone surrogate": (_body(MESSAGE, DATA, filename="a\ud800.pdf"), "control or invalid"),
    "filename a number": (_body(MESSAGE, DATA, filename=7), "filename must be a non-empty string"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_every_corruption_is_a_permanent_envelope_error_with_its_reason(case: str) -> None:
    body, expected = CORRUPTIONS[case]
    with pytest.raises(EnvelopeError, match=expected) as caught:
        _decode(body)
    assert isinstance(caught.value, HubError) and not caught.value.transient
    assert caught.value.reason == "envelope"


def test_a_valid_body_of_the_corruption_helpers_decodes() -> None:
    """The corruptions above differ from a valid body in the one way each names."""
    content = _decode(_body(MESSAGE, DATA)).content
    assert bytes(content.message.data) == MESSAGE and bytes(content.attachments[0].data) == DATA


def _count_hashing(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    hashed: list[int] = []
    real = hashlib.sha256

    def counting(data: Any = b"") -> Any:
        hashed.append(len(data))
        return real(data)

    monkeypatch.setattr(hashlib, "sha256", counting)  # the module hub.envelope_v2 uses
    return hashed


def test_declared_sizes_above_the_limit_are_refused_before_anything_is_hashed(monkeypatch: pytest.MonkeyPatch) -> None:
    body = _envelope(os.urandom(40_000), os.urandom(30_000)).body(version=2)
    hashed = _count_hashing(monkeypatch)
    with pytest.raises(ContentTooLarge, match=r"content of 70009 bytes \(3 parts\) exceeds the limit of 65536 bytes "
                                              r"\(limits.max_content_bytes\); not decoded"):
        _decode(body)
    assert not hashed
    assert _decode(body, "Big.Type").content.size == 70_009  # the per-type limit admits it
    assert len(hashed) == 3


def test_a_lying_size_above_the_limit_is_refused_before_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A small body that declares a huge part: the limit speaks first, not the length mismatch."""
    body = _body(MESSAGE, DATA, size=10**9)
    hashed = _count_hashing(monkeypatch)
    with pytest.raises(ContentTooLarge, match=r"content of 1000000\d+ bytes"):
        _decode(body)
    assert not hashed


def test_body_above_the_limit_is_refused_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    limit = body_limit(64 * 1024)
    assert limit == 64 * 1024 + HEAD_BYTES + MAX_PREAMBLE_BYTES
    monkeypatch.setattr(hub.envelope_v2, "_read_preamble", lambda _raw: pytest.fail("read"))
    with pytest.raises(ContentTooLarge, match=rf"body of {limit + 1} bytes exceeds {limit} bytes.*not read"):
        _decode(b"x" * (limit + 1))


def test_names_and_types_are_checked_on_writing_too() -> None:
    bad = new_envelope(destination="azr:000100", message_type="t", message=b"<a/>", portal="p",
                       attachments=(ContentPart(b"x", "application/pdf", "dir/a.pdf"),))
    with pytest.raises(EnvelopeError, match=r"parts\[1\]: filename must be a name"):
        bad.body(version=2)
    assert json.loads(bad.body())["attachments"][0]["filename"] == "dir/a.pdf"  # v1 as before


def test_asyncapi_describes_version_2_as_the_code_checks_it() -> None:
    from pathlib import Path

    import yaml

    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml").read_text(encoding="utf-8"))
    message = doc["components"]["messages"]["ApplicationV2"]
    assert message["contentType"] == CONTENT_TYPE_V2
    assert message["headers"]["properties"]["x-envelope-version"]["const"] == 2
    assert set(doc["channels"]["inboundChecked"]["messages"]) == {"application", "applicationV2"}
    preamble, part = doc["components"]["schemas"]["PreambleV2"], doc["components"]["schemas"]["PartV2"]
    assert preamble["properties"]["parts"]["maxItems"] == MAX_PARTS
    assert str(MAX_PREAMBLE_BYTES) in message["payload"]["description"]
    assert set(part["properties"]) == set(_entry(b"")) and set(part["required"]) == set(_entry(b"")) - {"filename"}
    assert part["properties"]["content_type"]["pattern"] == f"^{hub.envelope_v2._MEDIA_TYPE.pattern}$"


def test_the_publisher_refuses_what_a_worker_would_refuse_before_sending() -> None:
    from transport.content import Content

    many = Content(ContentPart(b"<a/>", "application/xml", "a.xml"),
                   tuple(ContentPart(b"x", "application/pdf", f"{n}.pdf") for n in range(MAX_PARTS)))
    with pytest.raises(EnvelopeError, match="257 parts, at most 256 allowed"):
        encode_body(many)
    encode_body(Content(many.message, many.attachments[:MAX_PARTS - 1]))  # 256 parts: fine


def test_a_huge_declared_size_stays_out_of_the_message() -> None:
    preamble = json.dumps({"parts": [{"content_type": "application/xml", "size": 10 ** 4000,
                                      "sha256": "0" * 64}]}).encode()
    body = MAGIC + len(preamble).to_bytes(4, "big") + preamble
    with pytest.raises(ContentTooLarge) as caught:
        hub.envelope_v2.decode_parts(body, 10_000, "limits.x")
    assert len(str(caught.value)) < 200


def test_dlq_show_describes_a_version_2_body_from_its_preamble() -> None:
    from hub.dlq import _parts_summary
    from transport.content import Content

    body = encode_body(Content(ContentPart(b"<a/>", "application/xml", "antrag.xml"),
                               (ContentPart(b"%PDF", "application/pdf", "pass.pdf"),)))
    assert _parts_summary(body) == [
        {"filename": "antrag.xml", "content_type": "application/xml", "size": 4,
         "sha256": hashlib.sha256(b"<a/>").hexdigest()},
        {"filename": "pass.pdf", "content_type": "application/pdf", "size": 4,
         "sha256": hashlib.sha256(b"%PDF").hexdigest()}]
    assert _parts_summary(body[:10]) == [{"unparsable_body_bytes": 10}]
