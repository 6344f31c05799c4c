"""Size limits and the copy-free body reader of the worker's envelope decode (hub/envelope.py,
hub/envelope_body.py, hub/limits.py): too much is refused before anything is decoded, and every
body the old ``json.loads`` + ``b64decode`` accepted still decodes to the same bytes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from typing import Any

import pika
import pytest

import hub.envelope_body
from hub.envelope import decode_envelope, new_envelope
from hub.envelope_body import CUT_AT, MAX_REST_BYTES
from hub.errors import ContentTooLarge, EnvelopeError
from hub.limits import BODY_OVERHEAD_BYTES, SizeLimits
from transport.content import ContentPart

LIMITS = SizeLimits(max_content_bytes=64 * 1024, per_message_type={"Big.Type": 256 * 1024})


def _envelope(message: bytes = b"<a>\xc3\xa4</a>", *attachments: bytes, message_type: str = "OZG.Antrag.130101"):
    return new_envelope(destination="azr:000100", message_type=message_type, message=message, portal="p",
                        message_id="m-1",
                        attachments=tuple(ContentPart(a, "application/pdf", f"a{i}.pdf")
                                          for i, a in enumerate(attachments)))


def _body(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _part(raw: bytes, **overrides: Any) -> dict[str, Any]:
    return {"filename": "x.bin", "content_type": "application/pdf", "size": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(), "data": base64.b64encode(raw).decode(), **overrides}


def _decode(body: bytes, message_type: str = "OZG.Antrag.130101", limits: SizeLimits = LIMITS):
    props = _envelope(message_type=message_type).properties()
    return decode_envelope(props, body, limits)


@pytest.mark.parametrize("sizes", [(), (10,), (CUT_AT,), (CUT_AT * 3 + 1, 5, 40_000)])
def test_round_trip_with_short_and_long_parts(sizes: tuple[int, ...]) -> None:
    envelope = _envelope(b"<a>" + b"x" * 3000 + b"</a>", *(os.urandom(n) for n in sizes))
    assert decode_envelope(envelope.properties(), envelope.body(), LIMITS) == envelope


def test_body_above_the_limit_is_refused_unread() -> None:
    limit = LIMITS.body_limit("OZG.Antrag.130101")
    assert limit == 4 * -(-64 * 1024 // 3) + BODY_OVERHEAD_BYTES
    with pytest.raises(ContentTooLarge, match=rf"body of {limit + 1} bytes exceeds {limit} bytes.*"
                                              r"limit of 65536 bytes \(limits.max_content_bytes\) needs; not read"):
        _decode(b"x" * (limit + 1))  # not even JSON: it was never looked at
    with pytest.raises(EnvelopeError, match="JSON"):  # read, and refused for what it is
        _decode(b"x" * limit)


def test_declared_sizes_above_the_limit_are_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[int] = []
    real = hub.envelope_body.CutStrings.decode_base64

    def counting_decode(self: Any, value: Any, where: Any) -> Any:
        decoded.append(1)
        return real(self, value, where)

    monkeypatch.setattr(hub.envelope_body.CutStrings, "decode_base64", counting_decode)
    envelope = _envelope(b"<a/>", os.urandom(40_000), os.urandom(30_000))
    with pytest.raises(ContentTooLarge, match=r"content of 70004 bytes \(3 parts\) exceeds the limit of 65536 "
                                              r"bytes \(limits.max_content_bytes\); not decoded"):
        _decode(envelope.body())
    assert not decoded
    assert _decode(_envelope(b"<a/>", os.urandom(40_000)).body()).content.size == 40_004


def test_limit_per_message_type() -> None:
    body = _envelope(b"<a/>", os.urandom(100_000), message_type="Big.Type").body()
    assert _decode(body, "Big.Type").content.size == 100_004
    with pytest.raises(ContentTooLarge, match=r"limits.max_content_bytes"):
        _decode(body)
    small = SizeLimits(max_content_bytes=200_000, per_message_type={"Big.Type": 50_000})
    with pytest.raises(ContentTooLarge, match=r"limit of 50000 bytes \(message_types\[\].max_content_bytes\)"):
        _decode(body, "Big.Type", small)


def test_long_data_whose_length_contradicts_its_size_is_refused_undecoded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub.envelope_body.CutStrings, "decode_base64", lambda *_: pytest.fail("decoded"))
    data = os.urandom(6000)
    body = _body({"message": _part(data, size=10), "attachments": []})
    with pytest.raises(EnvelopeError, match=r"body.message: size 10 declared, 6000 bytes received"):
        _decode(body)


def test_escaped_slashes_as_php_writes_them_decode_to_the_same_bytes() -> None:
    data = bytes(range(256)) * 40  # base64 with many '/'
    plain = _body({"message": _part(b"<a/>"), "attachments": [_part(data)]})
    escaped = plain.replace(b"/", b"\\/")
    assert escaped.count(b"\\/") > 100
    assert _decode(escaped).content.attachments[0].data == data
    assert _decode(escaped) == _decode(plain)


def _escaped_body(data: bytes, escape: dict[str, str]) -> tuple[bytes, bytes]:
    """The plain body of one attachment ``data``, and the same body with ``escape`` applied to its base64."""
    part = _part(data)
    encoded = part["data"]
    escaped = "".join(escape.get(c, c) for c in encoded)
    plain = _body({"message": _part(b"<a/>"), "attachments": [part]})
    return plain, plain.replace(encoded.encode(), escaped.encode())


@pytest.mark.parametrize("escape", [
    {"+": "\\u002B"},  # .NET System.Text.Json, by default
    {"=": "\\u003d"},  # Gson
    {"+": "\\u002b", "=": "\\u003D", "/": "\\/", "A": "\\u0041"},  # all of it at once
])
def test_escaped_base64_as_other_publishers_write_it_decodes_to_the_same_bytes(escape: dict[str, str]) -> None:
    data = bytes(range(256)) * 40  # '+', '/' and '==' padding in its base64
    plain, escaped = _escaped_body(data, escape)
    assert escaped != plain and json.loads(escaped) == json.loads(plain)
    assert _decode(escaped).content.attachments[0].data == data
    assert _decode(escaped) == _decode(plain)


def test_more_escapes_than_max_escapes_cost_nothing_in_ordinary_data() -> None:
    data = b"\xfb\xef\xbe" * 50_000  # base64 '++++...': 200000 escapes as .NET writes them
    escaped = _escaped_body(data, {"+": "\\u002B"})[1]
    assert escaped.count(b"\\u002B") > hub.envelope_body.MAX_ESCAPES
    assert _decode(escaped, "Big.Type").content.attachments[0].data == data


def test_a_utf8_bom_is_skipped() -> None:
    body = _envelope(b"<a/>", os.urandom(5000)).body()
    assert _decode(b"\xef\xbb\xbf" + body) == _decode(body)
    assert _decode(b"\xef\xbb\xbf" + _escaped_body(os.urandom(5000), {"+": "\\u002B"})[1])


@pytest.mark.parametrize(("escape", "expected"), [
    ({"A": "\\u0021"}, r"attachments\[0\]: data is not valid base64"),  # '!' after unescaping
    ({"A": '\\"'}, r"attachments\[0\]: data is not valid base64"),  # an escaped quote
    ({"A": "\\u00e4"}, r"attachments\[0\]: data is not valid base64"),  # not ASCII
    ({"A": "\\u0041\\n"}, r"attachments\[0\]: (data is not valid base64|size \d+ declared)"),
    ({"A": "\\n\\n\\n\\nA"}, r"attachments\[0\]: size 10240 declared, \d+ bytes received"),
    ({"A": "\\uZZZZ"}, r"attachments\[0\]: data is not valid base64"),  # not JSON
])
def test_escaped_junk_in_long_data_is_refused(escape: dict[str, str], expected: str) -> None:
    plain, escaped = _escaped_body(bytes(range(256)) * 40, escape)
    assert escaped != plain
    with pytest.raises(EnvelopeError, match=expected):
        _decode(escaped)


def test_a_long_string_outside_the_parts_is_refused() -> None:
    body = _body({"message": _part(b"<a/>"), "attachments": [], "note": "x" * CUT_AT})
    with pytest.raises(EnvelopeError, match=r"1 long string\(s\) outside the parts' fields"):
        _decode(body)
    assert _decode(_body({"message": _part(b"<a/>"), "attachments": [], "note": "x" * (CUT_AT - 1)}))


def test_long_filename_is_read() -> None:
    name = "ä" * CUT_AT
    body = _body({"message": _part(b"<a/>", filename=name), "attachments": []})
    assert _decode(body).content.message.filename == name


def test_one_data_string_cannot_be_used_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """A marker is unguessable (random per body); if guessed, it still cannot multiply the data."""
    monkeypatch.setattr(secrets, "token_hex", lambda _n: "known")  # the module hub.envelope_body uses
    data = os.urandom(6000)
    body = _body({"message": _part(b"<a/>"), "attachments": [_part(data), _part(data, data="\x00known:0")]})
    with pytest.raises(EnvelopeError, match=r"attachments\[1\]: refers to data used elsewhere"):
        _decode(body)


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"message": "' + b"x" * 5000, "unterminated string"),
    (b"[" * 150_000 + b"]" * 150_000, "more than 262144 bytes of JSON"),
    (b"[" * 50_000 + b"]" * 50_000, "not valid JSON"),  # deep nesting: RecursionError inside json
    (json.dumps({"message": {}, "x": ["a"] * 70_000}).encode(), "more than 262144 bytes of JSON"),
    ("{}".encode("utf-16"), r"not valid JSON \(UTF-8 required\)"),
    (b"\xef\xbb\xbf" + "{}".encode("utf-16-le"), r"not valid JSON \(UTF-8 required\)"),
    (b'{"message": {"data": "' + b"\\\\" * 100_001 + b'"}}', "more than 100000 JSON escapes"),
    (b'{"message": {"data": "' + b'\\"' * 100_001 + b'"}}', "more than 100000 JSON escapes"),
])
def test_hostile_bodies_are_envelope_errors(body: bytes, expected: str) -> None:
    assert len(body) < LIMITS.body_limit("OZG.Antrag.130101")
    with pytest.raises(EnvelopeError, match=expected):
        _decode(body)
    assert MAX_REST_BYTES == 262144


@pytest.mark.parametrize(("size", "expected"), [(-1, "size -1 is negative"), ("1e999", "size is not a number"),
                                                (1e999, "size is not a number"), ([], "size is not a number")])
def test_bad_sizes(size: Any, expected: str) -> None:
    with pytest.raises(EnvelopeError, match=expected):
        _decode(_body({"message": _part(b"<a/>", size=size), "attachments": []}))


def test_long_data_that_is_not_base64_is_refused() -> None:
    junk = "!" * 4000
    with pytest.raises(EnvelopeError, match=r"body.message: data is not valid base64"):
        _decode(_body({"message": _part(b"x" * 3000, data=junk), "attachments": []}))
    with pytest.raises(EnvelopeError, match=r"body.message: data is not valid base64"):
        _decode(_body({"message": _part(b"x" * 3000, data="A" * 4001), "attachments": []}))


def test_properties_are_untouched_by_limits() -> None:
    props = pika.BasicProperties(message_id="m", content_type="application/json", headers={})
    with pytest.raises(EnvelopeError, match="content_type must be"):
        decode_envelope(props, b"x" * 10_000_000, LIMITS)


def _config(limits: dict[str, Any] | None = None, per_type: int | None = None) -> Any:
    from pathlib import Path

    from hub.config import parse_config

    message_type: dict[str, Any] = {"code": "Big.Type", "schema": "/x.xsd", "list_uri": "u", "list_version": "1",
                                    "payload_schema": "p"}
    if per_type is not None:
        message_type["max_content_bytes"] = per_type
    raw: dict[str, Any] = {"message_types": [message_type]}
    if limits is not None:
        raw["limits"] = limits
    return parse_config(raw, base=Path("/"), environ={})


def test_limits_come_from_the_config() -> None:
    defaults = SizeLimits.from_config(_config())
    assert defaults == SizeLimits() and defaults.content_limit("Big.Type") == 20 * 1024 * 1024
    limits = SizeLimits.from_config(_config({"max_content_bytes": 4096, "max_xml_nodes": 500}, per_type=8192))
    assert (limits.content_limit("Big.Type"), limits.content_limit("Other"), limits.max_xml_nodes) == (8192, 4096, 500)
    xml_limits = limits.xml_limits("Big.Type")
    assert (xml_limits.max_nodes, xml_limits.max_text_length, xml_limits.max_depth) == (500, 8192, 256)


@pytest.mark.parametrize(("limits", "per_type", "key"), [
    ({"max_content_bytes": 200 * 1024 * 1024}, None, "limits.max_content_bytes"),
    ({"max_content_bytes": 10}, None, "limits.max_content_bytes"),
    ({"max_xml_nodes": 0}, None, "limits.max_xml_nodes"),
    (None, 100 * 1024 * 1024, r"message_types\[0\].max_content_bytes"),
])
def test_limits_out_of_range_name_the_key(limits: dict[str, Any] | None, per_type: int | None, key: str) -> None:
    from hub.errors import ConfigError

    with pytest.raises(ConfigError, match=key):
        _config(limits, per_type)
