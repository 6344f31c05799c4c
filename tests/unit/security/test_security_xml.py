"""The hardened parser refuses DTDs, entities and oversized/overdeep input, accepts normal XML."""

from __future__ import annotations

import base64
import dataclasses
import os
from pathlib import Path

import pytest
from lxml import etree

from hub.errors import MessageError, XmlRejected
from transport.security.xml import DEFAULT_LIMITS, XmlLimits, parse_xml, serialize

NORMAL = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<!-- a comment -->\n"
    b'<x:antrag xmlns:x="urn:test" id="1"><x:name>M\xc3\xbcller</x:name>'
    b"<x:note><![CDATA[a < b & c]]></x:note><x:amp>&amp;&#x41;</x:amp></x:antrag>"
)


def nested(depth: int) -> bytes:
    return b"<a>" * depth + b"</a>" * depth


def test_accepts_normal_document() -> None:
    root = parse_xml(NORMAL)
    assert etree.QName(root).localname == "antrag"
    assert root.get("id") == "1"
    assert root[0].text == "Müller"
    assert root[1].text == "a < b & c"
    assert root[2].text == "&A"


def test_accepts_bytearray_and_memoryview() -> None:
    assert parse_xml(bytearray(b"<a/>")).tag == "a"
    assert parse_xml(memoryview(b"<a/>")).tag == "a"


def test_rejects_str_input() -> None:
    with pytest.raises(TypeError):
        parse_xml("<a/>")  # type: ignore[arg-type]


def test_billion_laughs_rejected() -> None:
    entities = b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1)) * 10) for i in range(1, 10)
    )
    doc = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">'
        + entities
        + b"]><lolz>&lol9;</lolz>"
    )
    with pytest.raises(XmlRejected, match="DOCTYPE not allowed"):
        parse_xml(doc)


@pytest.mark.parametrize(
    "doctype",
    [
        b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
        b'<!DOCTYPE x [<!ENTITY e SYSTEM "http://127.0.0.1:9/secret">]>',
        b'<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]>',
        b'<!DOCTYPE x SYSTEM "http://127.0.0.1:9/x.dtd">',
        b'<!DOCTYPE x PUBLIC "-//X//DTD X//EN" "file:///etc/x.dtd">',
        b"<!DOCTYPE x>",
    ],
    ids=["xxe-file", "xxe-http", "parameter-entity", "external-dtd", "public-dtd", "bare"],
)
def test_doctype_variants_rejected(doctype: bytes) -> None:
    with pytest.raises(XmlRejected, match="DOCTYPE not allowed"):
        parse_xml(b'<?xml version="1.0"?>' + doctype + b"<x>&e;</x>")


def test_xxe_does_not_read_the_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-4711")
    doc = b'<!DOCTYPE x [<!ENTITY e SYSTEM "%s">]><x>&e;</x>' % secret.as_uri().encode()
    with pytest.raises(XmlRejected) as info:
        parse_xml(doc)
    assert "TOPSECRET" not in str(info.value)


@pytest.mark.parametrize(
    "prefix",
    [b"\xef\xbb\xbf", b"<!-- hello -->\n", b"<?pi data?>", b'<?xml version="1.0"?>\n\n  '],
    ids=["bom", "comment", "pi", "whitespace"],
)
def test_doctype_behind_prolog_items_rejected(prefix: bytes) -> None:
    with pytest.raises(XmlRejected, match="DOCTYPE not allowed"):
        parse_xml(prefix + b'<!DOCTYPE x [<!ENTITY e "v">]><x>&e;</x>')


def test_doctype_in_utf16_document_rejected() -> None:
    doc = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY e "v">]><x>&e;</x>'
    with pytest.raises(XmlRejected):
        parse_xml(doc.encode("utf-16"))


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE x SYSTEM "{dtd}">',
        '<!DOCTYPE x [<!ENTITY % p SYSTEM "{dtd}"> %p;]>',
        '<!DOCTYPE x [<!ENTITY e SYSTEM "{dtd}">]>',
    ],
    ids=["external-subset", "parameter-entity", "external-entity"],
)
def test_parser_never_loads_external_dtds(tmp_path: Path, doctype: str) -> None:
    """UTF-16 skips the byte-level prolog check, so this exercises the parser options.

    The file is not a valid DTD: had libxml2 loaded it (as it does with lxml's
    ``collect_ids=False``), the error would be "Content error in the external subset".
    """
    dtd = tmp_path / "broken.dtd"
    dtd.write_text("this is not a DTD <<<")
    doc = doctype.format(dtd=dtd.as_uri()) + "<x>&e;</x>"
    with pytest.raises(XmlRejected) as info:
        parse_xml(doc.encode("utf-16"))
    assert str(info.value) == "DOCTYPE not allowed"


def test_utf16_document_without_doctype_accepted() -> None:
    root = parse_xml('<?xml version="1.0" encoding="UTF-16"?><x>ä</x>'.encode("utf-16"))
    assert root.text == "ä"


def test_undefined_entity_rejected() -> None:
    with pytest.raises(XmlRejected, match="not well-formed"):
        parse_xml(b"<x>&e;</x>")


def test_nesting_over_limit_rejected_with_depth() -> None:
    with pytest.raises(XmlRejected, match="nesting depth 300 exceeds 256"):
        parse_xml(nested(300))


def test_nesting_at_limit_accepted() -> None:
    assert parse_xml(nested(DEFAULT_LIMITS.max_depth)).tag == "a"


def test_very_deep_nesting_rejected() -> None:
    with pytest.raises(XmlRejected, match="nesting depth"):
        parse_xml(nested(100_000))


def test_custom_depth_limit() -> None:
    with pytest.raises(XmlRejected, match="nesting depth 6 exceeds 5"):
        parse_xml(nested(6), XmlLimits(max_depth=5))


def test_oversize_input_rejected_before_parsing() -> None:
    with pytest.raises(XmlRejected, match="exceeds 1000"):
        parse_xml(b"<a>" + b"x" * 1000 + b"</a>", XmlLimits(max_bytes=1000))
    big = b"<a>" + b"x" * DEFAULT_LIMITS.max_bytes + b"</a>"
    with pytest.raises(XmlRejected, match="bytes exceeds"):
        parse_xml(big)


def test_empty_input_rejected() -> None:
    with pytest.raises(XmlRejected, match="empty"):
        parse_xml(b"")


def test_invalid_utf8_rejected() -> None:
    with pytest.raises(XmlRejected, match="invalid UTF-8") as info:
        parse_xml(b'<?xml version="1.0" encoding="UTF-8"?><a>ok \xc3\x28 \xff</a>')
    assert "0xC3" not in str(info.value)  # libxml2 quotes raw bytes on a second line


def test_huge_attribute_rejected() -> None:
    doc = b'<a big="' + b"y" * (DEFAULT_LIMITS.max_attribute_length + 1) + b'"/>'
    with pytest.raises(XmlRejected, match="attribute big longer than"):
        parse_xml(doc)


def test_attribute_at_limit_accepted() -> None:
    doc = b'<a big="' + b"y" * DEFAULT_LIMITS.max_attribute_length + b'"/>'
    assert len(parse_xml(doc).get("big")) == DEFAULT_LIMITS.max_attribute_length


def test_text_limit() -> None:
    with pytest.raises(XmlRejected, match="text in element b longer than 10"):
        parse_xml(b"<a><b>" + b"z" * 11 + b"</b></a>", XmlLimits(max_text_length=10))
    assert parse_xml(b"<a><b>" + b"z" * 10 + b"</b></a>", XmlLimits(max_text_length=10)) is not None


def test_large_base64_text_accepted() -> None:
    # Above libxml2's 10 MB text node limit without huge_tree.
    payload = base64.b64encode(os.urandom(9 * 1024 * 1024))
    root = parse_xml(b"<c><Message>" + payload + b"</Message></c>")
    assert len(root[0].text) == len(payload)


@pytest.mark.parametrize("ns", ["http://www.w3.org/2001/XInclude", "http://www.w3.org/2003/XInclude"])
def test_xinclude_is_refused_not_processed(ns: str) -> None:
    """Never processed, and refused: receivers get the payload byte-identical and might process it."""
    doc = f'<a><b xmlns:xi="{ns}"><xi:include href="file:///etc/passwd" parse="text"/></b></a>'.encode()
    with pytest.raises(XmlRejected, match="XInclude element not allowed"):
        parse_xml(doc)


def test_not_well_formed_rejected_with_line() -> None:
    with pytest.raises(XmlRejected, match=r"not well-formed: .*line 2"):
        parse_xml(b"<a>\n<b></a>")


def test_xml_rejected_is_a_message_error() -> None:
    assert issubclass(XmlRejected, MessageError)
    with pytest.raises(MessageError):
        parse_xml(b"<a")


def test_limits_are_frozen_and_validated() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_LIMITS.max_depth = 5  # type: ignore[misc]  # assigning to a frozen field is the point
    with pytest.raises(ValueError):
        XmlLimits(max_depth=0)


def test_serialize_round_trip() -> None:
    root = parse_xml(NORMAL)
    out = serialize(root)
    assert out.startswith(b"<?xml")
    assert etree.tostring(parse_xml(out), method="c14n") == etree.tostring(root, method="c14n")
    assert not serialize(root, xml_declaration=False).startswith(b"<?xml")
