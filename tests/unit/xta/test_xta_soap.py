from __future__ import annotations

from dataclasses import replace

import pytest
from lxml import etree
from xta_testdata import AUTHOR, READER, metadata

from hub.errors import ProtocolError
from schemas.xta import MESSAGE_METADATA_XSD
from transport.xta.metadata import BusinessScenario, Party
from transport.xta.ns import OSCIMETA, WSA, WSA_ANONYMOUS
from transport.xta.soap import (
    addressing_headers,
    build_envelope,
    parse_addressing,
    parse_message_metadata,
    parse_party,
    render_author_header,
    render_message_metadata,
    split_envelope,
)

OSCI_ORDER = ["DeliveryAttributes", "Originators", "Destinations", "MsgIdentification", "Qualifier", "MsgSize"]


@pytest.fixture(scope="module")
def own_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(MESSAGE_METADATA_XSD)))


@pytest.mark.parametrize("md", [
    metadata(),
    metadata(size=20480, test=True),
    metadata(business_scenario=BusinessScenario("FREI", list_uri="", list_version="", defined=False)),
    metadata(author=Party("alp:1"), reader=Party("azr:000200", type="xoev", category="ABH")),
])
def test_message_metadata_round_trip(md, own_schema) -> None:
    el = render_message_metadata(md)
    own_schema.assertValid(el)
    reparsed = etree.fromstring(etree.tostring(el))
    assert parse_message_metadata(reparsed) == md


def test_message_metadata_element_order_and_attributes() -> None:
    el = render_message_metadata(metadata(size=99))
    assert [etree.QName(c).localname for c in el] == OSCI_ORDER
    assert el.get("TestMsg") == "false"
    ident = el.find(f"{{{OSCIMETA}}}Originators/{{{OSCIMETA}}}Author/{{{OSCIMETA}}}Identifier")
    assert (ident.text, ident.get("type"), ident.get("name"), ident.get("category")) == (
        AUTHOR.identifier, "xoev", AUTHOR.name, AUTHOR.category)
    assert el.findtext(f"{{{OSCIMETA}}}MsgIdentification/{{{WSA}}}MessageID") == "urn:de:xta:messageid:test:1"
    mt = el.find(f"{{{OSCIMETA}}}Qualifier/{{{OSCIMETA}}}MessageType")
    assert mt.get("payloadSchema") == "http://www.osci.de/xauslaender2611"
    assert mt.findtext("code") == "OZG.Antrag.130101"  # unqualified, as KeyCodeType requires
    defined = el.find(f"{{{OSCIMETA}}}Qualifier/{{{OSCIMETA}}}BusinessScenario/{{{OSCIMETA}}}Defined")
    assert defined.get("listURI") and defined.get("listVersionID") and defined.findtext("code")


def test_size_zero_or_none_is_omitted(own_schema) -> None:
    for size in (None, 0):
        el = render_message_metadata(metadata(size=size))
        assert el.find(f"{{{OSCIMETA}}}MsgSize") is None
        own_schema.assertValid(el)


@pytest.mark.parametrize("xpath", [
    "oscimeta:Originators", "oscimeta:Destinations", "oscimeta:MsgIdentification", "oscimeta:Qualifier",
    "oscimeta:Qualifier/oscimeta:Service", "oscimeta:Qualifier/oscimeta:MessageType",
])
def test_parse_names_missing_piece(xpath) -> None:
    el = render_message_metadata(metadata())
    victim = el.find(xpath, namespaces={"oscimeta": OSCIMETA})
    victim.getparent().remove(victim)
    with pytest.raises(ProtocolError, match="MessageMetaData"):
        parse_message_metadata(el)


def test_author_header_matches_sample_shape() -> None:
    el = render_author_header(AUTHOR)
    assert el.tag == f"{{{OSCIMETA}}}Author"
    assert parse_party(el) == AUTHOR
    with pytest.raises(ProtocolError):
        parse_party(etree.Element(f"{{{OSCIMETA}}}Author"))


def test_addressing_headers_round_trip() -> None:
    headers = addressing_headers("http://www.xta.de/XTA/SendMessage", to="http://x/xta", reply_to_anonymous=True,
                                 relates_to="urn:uuid:1")
    env = build_envelope(headers, [])
    header, body = split_envelope(etree.fromstring(etree.tostring(env)))
    parsed = parse_addressing(header)
    assert parsed.action == "http://www.xta.de/XTA/SendMessage"
    assert parsed.message_id.startswith("urn:uuid:")
    assert (parsed.to, parsed.relates_to) == ("http://x/xta", "urn:uuid:1")
    assert header.findtext(f"{{{WSA}}}ReplyTo/{{{WSA}}}Address") == WSA_ANONYMOUS
    assert len(body) == 0


def test_split_envelope_rejects_non_soap12() -> None:
    with pytest.raises(ProtocolError):
        split_envelope(etree.fromstring(b"<Envelope/>"))
    with pytest.raises(ProtocolError):
        split_envelope(etree.fromstring(b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"/>'))


def test_metadata_defaults_stay_compatible() -> None:
    # BusinessScenario gained ``defined`` with a default: positional construction still works.
    assert BusinessScenario("X", "urn:l", "2") == BusinessScenario(code="X", list_uri="urn:l", list_version="2")
    assert replace(metadata(), reader=READER).reader == READER
