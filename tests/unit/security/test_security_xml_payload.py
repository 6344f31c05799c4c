"""The hardened parser with payload limits (``payload_limits``): nodes counted, so a hostile
document is refused while it is parsed instead of after it grew 30x its size in memory; huge_tree
on with the project's own bounds, so a payload embedding a base64 document above libxml2's 10 MB
text limit is accepted within the configured limit."""

from __future__ import annotations

import base64
import os

import pytest
from lxml import etree

from hub.errors import XmlRejected
from hub.samples import make_ozg_application
from transport.security.xml import LIBXML2_TEXT_LIMIT, XmlLimits, parse_xml, payload_limits
from transport.xta.metadata import Party

LIMITS = payload_limits(max_bytes=40 * 1024 * 1024, max_nodes=1000)


def _c14n(root: etree._Element) -> bytes:
    return etree.tostring(root, method="c14n")


def test_an_application_parses_as_without_limits() -> None:
    xml, _ = make_ozg_application(reader=Party("azr:000100"), author=Party("alp:000001"), seed=3)
    assert _c14n(parse_xml(xml, LIMITS)) == _c14n(parse_xml(xml))


@pytest.mark.parametrize("doc", [
    b"<a>" + b"<b/>" * 999 + b"</a>",  # elements
    b'<a x="1" y="2" z="3">' + b'<b v="1"/>' * 498 + b"</a>",  # attributes
    b'<a xmlns:p="urn:p" xmlns:q="urn:q">' + b"<b/>" * 997 + b"</a>",  # namespace declarations
    b"<a>" + b"<!---->" * 999 + b"</a>",  # comments
    b"<a>" + b"<?p?>" * 999 + b"</a>",  # processing instructions
])
def test_nodes_are_counted_up_to_the_limit(doc: bytes) -> None:
    assert parse_xml(doc, LIMITS) is not None  # exactly 1000
    with pytest.raises(XmlRejected, match=r"^more than 1000 elements, attributes, namespace declarations, comments "
                                          r"and processing instructions \(line 1\)$"):
        parse_xml(doc.replace(b"</a>", b"<c/></a>"), LIMITS)


def test_a_dense_document_stops_early() -> None:
    """Counting stops the parse within a slice (64 KiB) of the limit, not at the end of 40 MB."""
    doc = b"<a>\n" + b"<b/>\n" * 8_000_000 + b"</a>"
    with pytest.raises(XmlRejected, match=r"more than 1000 elements.*\(line \d{1,5}\)$"):
        parse_xml(doc, LIMITS)


def test_an_embedded_base64_document_above_libxml2s_text_limit_is_accepted() -> None:
    """XÖV payloads embed attachments as base64 elements: 12 MB of text in one node, within the limit."""
    text = base64.b64encode(os.urandom(9 * 1024 * 1024))
    assert len(text) > 12_000_000 > LIBXML2_TEXT_LIMIT
    doc = b"<a>\n<anlage>" + text + b"</anlage></a>"
    assert parse_xml(doc, payload_limits(max_bytes=len(doc), max_nodes=10))[0].text == text.decode()
    with pytest.raises(XmlRejected, match=rf"^document of {len(doc)} bytes exceeds {len(doc) - 1}$"):
        parse_xml(doc, payload_limits(max_bytes=len(doc) - 1, max_nodes=10))


def test_text_above_the_configured_limit_is_refused() -> None:
    """The text bound is the configured content limit, not libxml2's 10 MB."""
    limits = payload_limits(max_bytes=20 * 1024 * 1024, max_nodes=10)
    assert limits.max_text_length == 20 * 1024 * 1024 and limits.huge_tree
    with pytest.raises(XmlRejected, match=r"^text in element b longer than 10 characters$"):
        parse_xml(b"<a><b>" + b"z" * 11 + b"</b></a>", XmlLimits(max_text_length=10, max_nodes=10))


def test_a_long_attribute_is_refused_by_the_projects_bound() -> None:
    doc = b'<a v="' + b"x" * (LIBXML2_TEXT_LIMIT + 1) + b'"/>'
    with pytest.raises(XmlRejected, match=r"^attribute v longer than 65536 characters$"):
        parse_xml(doc, LIMITS)


def test_depth_is_capped_by_the_projects_own_check() -> None:
    limits = payload_limits(max_bytes=10_000, max_nodes=10_000)
    with pytest.raises(XmlRejected, match=r"^nesting depth 300 exceeds 256$"):
        parse_xml(b"<a>" * 300 + b"</a>" * 300, limits)
    assert parse_xml(b"<a>" * 256 + b"</a>" * 256, limits) is not None


def test_invalid_utf8_names_line_and_column() -> None:
    with pytest.raises(XmlRejected, match=r"^invalid UTF-8 \(line 2, column 6\)$"):
        parse_xml(b"<a>\n  abc\xff def</a>", LIMITS)


def test_declared_encoding_is_honoured() -> None:
    root = parse_xml(b"<?xml version='1.0' encoding='ISO-8859-1'?><a>\xe4</a>", LIMITS)
    assert root.text == "\u00e4"


def test_size_limit_is_the_content_limit() -> None:
    with pytest.raises(XmlRejected, match="document of 101 bytes exceeds 100"):
        parse_xml(b"<a>" + b"x" * 94 + b"</a>", payload_limits(max_bytes=100, max_nodes=10))
