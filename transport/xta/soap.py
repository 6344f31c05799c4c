"""SOAP 1.2 envelope pieces of XTA 2.1.1: MessageMetaData and Author headers, WS-Addressing headers.

Rendering follows the element order of OSCI_MessageMetaData_V2.02.xsd exactly (a schema-checking
XTA server rejects anything else); parsing is tolerant of optional elements the hub does not use.
Faults live in ``transport.xta.faults``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from lxml import etree

from hub.errors import ProtocolError
from transport.xta.metadata import BusinessScenario, MessageMetaData, MessageType, Party
from transport.xta.ns import NSMAP_ENVELOPE, NSMAP_OSCIMETA, OSCIMETA, SOAP12, WSA, WSA_ANONYMOUS, q

MESSAGE_METADATA = q(OSCIMETA, "MessageMetaData")
AUTHOR = q(OSCIMETA, "Author")
READER = q(OSCIMETA, "Reader")
IDENTIFIER = q(OSCIMETA, "Identifier")
ENVELOPE = q(SOAP12, "Envelope")
HEADER = q(SOAP12, "Header")
BODY = q(SOAP12, "Body")
WSA_MESSAGE_ID = q(WSA, "MessageID")


def _om(local: str) -> str:
    return q(OSCIMETA, local)


# ---------------------------------------------------------------- parties


def render_party(tag: str, party: Party, nsmap: dict[str, str] | None = None) -> etree._Element:
    """A PartyType element (``tag`` = oscimeta:Author or oscimeta:Reader) with its Identifier."""
    el = etree.Element(tag, nsmap=nsmap) if nsmap is not None else etree.Element(tag)
    _fill_party(el, party)
    return el


def _fill_party(el: etree._Element, party: Party) -> None:
    ident = etree.SubElement(el, IDENTIFIER)
    ident.set("type", party.type)
    if party.name:
        ident.set("name", party.name)
    if party.category:
        ident.set("category", party.category)
    ident.text = party.identifier


def render_author_header(author: Party) -> etree._Element:
    """The oscimeta:Author header of checkAccountActive, createMessageId and the MsgBox operations."""
    return render_party(AUTHOR, author, nsmap={"oscimeta": OSCIMETA})


def parse_party(el: etree._Element) -> Party:
    """Read a PartyType element (Author/Reader) into a Party."""
    ident = el.find(IDENTIFIER)
    value = (ident.text or "").strip() if ident is not None else ""
    if not value:
        raise ProtocolError(f"{etree.QName(el).localname}: Identifier missing or empty")
    return Party(
        identifier=value,
        name=ident.get("name"),
        category=ident.get("category"),
        type=ident.get("type") or "xoev",
    )


# ---------------------------------------------------------------- MessageMetaData


def _code(parent: etree._Element, tag: str, code: str, list_uri: str, list_version: str) -> etree._Element:
    el = etree.SubElement(parent, tag)
    el.set("listURI", list_uri)
    el.set("listVersionID", list_version)
    etree.SubElement(el, "code").text = code  # KeyCodeType: code/name are unqualified
    return el


def render_message_metadata(md: MessageMetaData) -> etree._Element:
    """The oscimeta:MessageMetaData header of sendMessage, in schema order."""
    root = etree.Element(MESSAGE_METADATA, nsmap=NSMAP_OSCIMETA)
    root.set("TestMsg", "true" if md.test else "false")
    etree.SubElement(root, _om("DeliveryAttributes"))
    originators = etree.SubElement(root, _om("Originators"))
    _fill_party(etree.SubElement(originators, AUTHOR), md.author)
    destinations = etree.SubElement(root, _om("Destinations"))
    _fill_party(etree.SubElement(destinations, READER), md.reader)
    ident = etree.SubElement(root, _om("MsgIdentification"))
    etree.SubElement(ident, WSA_MESSAGE_ID).text = md.message_id
    qualifier = etree.SubElement(root, _om("Qualifier"))
    etree.SubElement(qualifier, _om("Service")).text = md.service
    scenario = etree.SubElement(qualifier, _om("BusinessScenario"))
    bs = md.business_scenario
    if bs.defined:
        _code(scenario, _om("Defined"), bs.code, bs.list_uri, bs.list_version)
    else:
        etree.SubElement(scenario, _om("Undefined")).text = bs.code
    mt = md.message_type
    _code(qualifier, _om("MessageType"), mt.code, mt.list_uri, mt.list_version).set(
        "payloadSchema", mt.payload_schema
    )
    if md.size:  # xs:positiveInteger
        etree.SubElement(root, _om("MsgSize")).text = str(md.size)
    return root


def _required(parent: etree._Element, path: str, what: str) -> etree._Element:
    el = parent.find(path, namespaces=NSMAP_OSCIMETA)
    if el is None:
        raise ProtocolError(f"MessageMetaData: {what} missing")
    return el


def _text(el: etree._Element, what: str) -> str:
    value = (el.text or "").strip()
    if not value:
        raise ProtocolError(f"MessageMetaData: {what} empty")
    return value


def parse_message_metadata(el: etree._Element) -> MessageMetaData:
    """Read oscimeta:MessageMetaData back; raises ``ProtocolError`` naming the first missing piece."""
    if el.tag != MESSAGE_METADATA:
        raise ProtocolError(f"expected oscimeta:MessageMetaData, got {etree.QName(el).localname}")
    author = parse_party(_required(el, "oscimeta:Originators/oscimeta:Author", "Originators/Author"))
    reader = parse_party(_required(el, "oscimeta:Destinations/oscimeta:Reader", "Destinations/Reader"))
    message_id = _text(_required(el, "oscimeta:MsgIdentification/wsa:MessageID", "MessageID"), "MessageID")
    qualifier = _required(el, "oscimeta:Qualifier", "Qualifier")
    service = _text(_required(qualifier, "oscimeta:Service", "Service"), "Service")
    scenario_el = _required(qualifier, "oscimeta:BusinessScenario", "BusinessScenario")
    defined = scenario_el.find("oscimeta:Defined", namespaces=NSMAP_OSCIMETA)
    if defined is not None:
        scenario = BusinessScenario(
            code=_text(_required(defined, "code", "BusinessScenario code"), "BusinessScenario code"),
            list_uri=defined.get("listURI", ""),
            list_version=defined.get("listVersionID", ""),
        )
    else:
        undefined = _required(scenario_el, "oscimeta:Undefined", "BusinessScenario Defined/Undefined")
        scenario = BusinessScenario(code=_text(undefined, "BusinessScenario"), list_uri="", list_version="",
                                    defined=False)
    mt_el = _required(qualifier, "oscimeta:MessageType", "MessageType")
    message_type = MessageType(
        code=_text(_required(mt_el, "code", "MessageType code"), "MessageType code"),
        list_uri=mt_el.get("listURI", ""),
        list_version=mt_el.get("listVersionID", ""),
        payload_schema=mt_el.get("payloadSchema", ""),
    )
    size_el = el.find("oscimeta:MsgSize", namespaces=NSMAP_OSCIMETA)
    try:
        size = int(size_el.text) if size_el is not None and size_el.text else None
    except ValueError as exc:
        raise ProtocolError("MessageMetaData: MsgSize is not an integer") from exc
    return MessageMetaData(
        author=author,
        reader=reader,
        message_id=message_id,
        service=service,
        business_scenario=scenario,
        message_type=message_type,
        size=size,
        test=el.get("TestMsg", "false").strip() in ("true", "1"),
    )


# ---------------------------------------------------------------- WS-Addressing


@dataclass(frozen=True)
class Addressing:
    """The WS-Addressing headers of one SOAP message (absent ones are None)."""

    action: str | None
    message_id: str | None
    to: str | None = None
    relates_to: str | None = None


def new_message_id() -> str:
    """A fresh WS-Addressing MessageID (``urn:uuid:...``)."""
    return f"urn:uuid:{uuid.uuid4()}"


def addressing_headers(
    action: str,
    *,
    to: str | None = None,
    message_id: str | None = None,
    relates_to: str | None = None,
    reply_to_anonymous: bool = False,
) -> list[etree._Element]:
    """wsa:Action, wsa:MessageID, [wsa:To], [wsa:ReplyTo anonymous], [wsa:RelatesTo] as header elements."""
    els = []
    for local, value in (("Action", action), ("MessageID", message_id or new_message_id()), ("To", to)):
        if value is not None:
            el = etree.Element(q(WSA, local), nsmap={"wsa": WSA})
            el.text = value
            els.append(el)
    if reply_to_anonymous:
        els.append(reply_to_anonymous_header())
    if relates_to is not None:
        el = etree.Element(q(WSA, "RelatesTo"), nsmap={"wsa": WSA})
        el.text = relates_to
        els.append(el)
    return els


def reply_to_anonymous_header() -> etree._Element:
    """wsa:ReplyTo/wsa:Address = anonymous: the answer comes back on the same HTTP connection."""
    el = etree.Element(q(WSA, "ReplyTo"), nsmap={"wsa": WSA})
    etree.SubElement(el, q(WSA, "Address")).text = WSA_ANONYMOUS
    return el


def parse_addressing(header: etree._Element | None) -> Addressing:
    """Read the WS-Addressing headers from a soap-env:Header (None if there is no header)."""
    if header is None:
        return Addressing(action=None, message_id=None)

    def text(local: str) -> str | None:
        el = header.find(q(WSA, local))
        if el is None:
            return None
        return (el.text or "").strip() or None

    return Addressing(action=text("Action"), message_id=text("MessageID"), to=text("To"),
                      relates_to=text("RelatesTo"))


# ---------------------------------------------------------------- envelope


def build_envelope(headers: list[etree._Element], body: list[etree._Element]) -> etree._Element:
    """A SOAP 1.2 envelope with the given header and body children (moved, not copied)."""
    env = etree.Element(ENVELOPE, nsmap=NSMAP_ENVELOPE)
    if headers:
        header = etree.SubElement(env, HEADER)
        header.extend(headers)
    body_el = etree.SubElement(env, BODY)
    body_el.extend(body)
    return env


def split_envelope(root: etree._Element) -> tuple[etree._Element | None, etree._Element]:
    """(Header or None, Body) of a SOAP 1.2 envelope; ``ProtocolError`` for anything else."""
    if root.tag != ENVELOPE:
        raise ProtocolError(f"not a SOAP 1.2 envelope: {etree.QName(root).text}")
    header = root.find(HEADER)
    body = root.find(BODY)
    if body is None:
        raise ProtocolError("SOAP envelope without Body")
    return header, body


def body_children(body: etree._Element) -> list[etree._Element]:
    """The element children of a soap-env:Body (comments and processing instructions dropped)."""
    return [c for c in body if isinstance(c.tag, str)]
