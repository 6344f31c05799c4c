from __future__ import annotations

import base64

import pytest
from lxml import etree
from xta_testdata import content

from hub.errors import ProtocolError
from schemas.xta import WEBSERVICE_XSD
from transport.content import Content, ContentPart
from transport.xta.container import (
    ATTACHMENT,
    CONTENT_CONTAINER,
    ENCRYPTED_DATA,
    GENERIC_CONTENT_CONTAINER,
    MESSAGE,
    build_content_container,
    container_payload,
    generic_container,
    parse_content_container,
)
from transport.xta.ns import XENC


@pytest.fixture(scope="module")
def own_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(WEBSERVICE_XSD)))


def test_round_trip_keeps_bytes_and_metadata(own_schema) -> None:
    original = content(size=5000, attachments=2)
    el = build_content_container(original)
    assert el.tag == CONTENT_CONTAINER
    assert [c.tag for c in el] == [MESSAGE, ATTACHMENT, ATTACHMENT]
    msg = el[0]
    assert (msg.get("contentType"), msg.get("filename"), msg.get("size")) == ("application/xml", "antrag.xml", "5000")
    assert el[1].get("contentDescription") == "Nachweis"
    wrapped = generic_container(el)
    own_schema.assertValid(wrapped)
    reparsed = etree.fromstring(etree.tostring(wrapped))
    assert parse_content_container(reparsed) == original
    assert parse_content_container(container_payload(reparsed)) == original


def test_empty_part_has_no_size_attribute(own_schema) -> None:
    el = build_content_container(Content(ContentPart(b"", "text/plain")))
    assert el[0].get("size") is None and el[0].get("filename") is None
    own_schema.assertValid(generic_container(el))
    assert parse_content_container(el).message.data == b""


def test_wrapped_base64_is_accepted() -> None:
    data = bytes(range(256)) * 10
    text = base64.encodebytes(data).decode()  # 76-character lines
    el = etree.fromstring(
        f'<xta:ContentContainer xmlns:xta="http://xoev.de/transport/xta/211">'
        f'<xta:Message contentType="application/octet-stream">{text}</xta:Message></xta:ContentContainer>')
    assert parse_content_container(el).message.data == data


@pytest.mark.parametrize("xml, match", [
    ('<xta:ContentContainer {ns}/>', "Message"),
    ('<xta:ContentContainer {ns}><xta:Message>AAAA</xta:Message></xta:ContentContainer>', "contentType"),
    ('<xta:ContentContainer {ns}><xta:Message contentType="a/b">!!not base64</xta:Message></xta:ContentContainer>',
     "base64"),
    ('<xta:ContentContainer {ns}><xta:Message contentType="a/b"/><xta:Other/></xta:ContentContainer>', "unexpected"),
    ('<xta:Message {ns} contentType="a/b"/>', "ContentContainer"),
])
def test_broken_containers_raise_protocol_error(xml, match) -> None:
    el = etree.fromstring(xml.format(ns='xmlns:xta="http://xoev.de/transport/xta/211"'))
    with pytest.raises(ProtocolError, match=match):
        parse_content_container(el)


def test_generic_container_wraps_encrypted_data(own_schema) -> None:
    enc = etree.Element(ENCRYPTED_DATA, nsmap={"xenc": XENC})
    etree.SubElement(etree.SubElement(enc, f"{{{XENC}}}CipherData"), f"{{{XENC}}}CipherValue").text = "AAAA"
    wrapped = generic_container(enc)
    assert wrapped.tag == GENERIC_CONTENT_CONTAINER
    own_schema.assertValid(wrapped)
    assert container_payload(wrapped) is enc
    with pytest.raises(ProtocolError, match="encrypted"):
        parse_content_container(wrapped)


def test_generic_container_refuses_other_elements() -> None:
    with pytest.raises(ValueError):
        generic_container(etree.Element("foo"))
    with pytest.raises(ProtocolError):
        container_payload(etree.Element(GENERIC_CONTENT_CONTAINER))
