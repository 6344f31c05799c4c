"""oscimeta:MessageMetaData (OSCI MessageMetaData 2.02) <-> ``transport.xta.metadata.MessageMetaData``.

Rendering follows the element order of OSCI_MessageMetaData_V2.02.xsd exactly (a schema-checking XTA
server rejects anything else): DeliveryAttributes {Origin, InitialSend, NotBefore, ObsoleteAfter,
Delivery, InitialFetch, Reception, ServiceQuality, ReceiptRequests}, Originators/Author,
Destinations/Reader, MsgIdentification {wsa:MessageID, In-Reply-To*}, Qualifier {Subject, Service,
BusinessScenario, MessageType}, MessageProperties, MsgSize, @TestMsg. Parsing is tolerant of optional
elements the hub does not use (Sender, OtherDestinations, ProcessRef, security tokens).
"""

from __future__ import annotations

import datetime as _dt

from lxml import etree

from hub.errors import ProtocolError
from transport.xta.metadata import (
    RECEIPT_KINDS,
    BusinessScenario,
    DeliveryAttributes,
    MessageMetaData,
    MessageProperty,
    MessageType,
    Party,
)
from transport.xta.ns import NSMAP_OSCIMETA, OSCIMETA, WSA, q

MESSAGE_METADATA = q(OSCIMETA, "MessageMetaData")
AUTHOR = q(OSCIMETA, "Author")
READER = q(OSCIMETA, "Reader")
IDENTIFIER = q(OSCIMETA, "Identifier")
WSA_MESSAGE_ID = q(WSA, "MessageID")

_TIMES = ("Origin", "InitialSend", "NotBefore", "ObsoleteAfter", "Delivery", "InitialFetch", "Reception")
_FIELDS = {"Origin": "origin", "InitialSend": "initial_send", "NotBefore": "not_before",
           "ObsoleteAfter": "obsolete_after", "Delivery": "delivery", "InitialFetch": "initial_fetch",
           "Reception": "reception"}


def _om(local: str) -> str:
    return q(OSCIMETA, local)


# ---------------------------------------------------------------- parties


def fill_party(el: etree._Element, party: Party) -> None:
    """Add the Identifier child (value, @type, @name, @category) of a PartyType element."""
    ident = etree.SubElement(el, IDENTIFIER)
    ident.set("type", party.type)
    if party.name:
        ident.set("name", party.name)
    if party.category:
        ident.set("category", party.category)
    ident.text = party.identifier


def render_party(tag: str, party: Party, nsmap: dict[str, str] | None = None) -> etree._Element:
    """A PartyType element (``tag`` = oscimeta:Author or oscimeta:Reader) with its Identifier."""
    el = etree.Element(tag, nsmap=nsmap) if nsmap is not None else etree.Element(tag)
    fill_party(el, party)
    return el


def parse_party(el: etree._Element) -> Party:
    """Read a PartyType element (Author/Reader) into a Party."""
    ident = el.find(IDENTIFIER)
    value = (ident.text or "").strip() if ident is not None else ""
    if ident is None or not value:
        raise ProtocolError(f"{etree.QName(el).localname}: Identifier missing or empty")
    return Party(identifier=value, name=ident.get("name"), category=ident.get("category"),
                 type=ident.get("type") or "xoev")


# ---------------------------------------------------------------- times


def xs_datetime(value: _dt.datetime) -> str:
    """xs:dateTime with an explicit offset (naive datetimes are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.UTC)
    return value.isoformat(timespec="seconds")


def _parse_time(text: str, local: str) -> _dt.datetime | _dt.date:
    try:
        if local == "ObsoleteAfter":
            return _dt.date.fromisoformat(text[:10])
        return _dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise ProtocolError(f"MessageMetaData: DeliveryAttributes/{local} is not a valid date/time") from exc


# ---------------------------------------------------------------- render


def code_element(parent: etree._Element, tag: str, code: str, list_uri: str, list_version: str) -> etree._Element:
    """A KeyCodeType-like element: @listURI, @listVersionID and an unqualified ``code`` child."""
    el = etree.SubElement(parent, tag)
    el.set("listURI", list_uri)
    el.set("listVersionID", list_version)
    etree.SubElement(el, "code").text = code
    return el


def _render_delivery_attributes(parent: etree._Element, da: DeliveryAttributes) -> None:
    el = etree.SubElement(parent, _om("DeliveryAttributes"))
    for local in _TIMES:
        value = getattr(da, _FIELDS[local])
        if value is not None:
            text = value.isoformat() if local == "ObsoleteAfter" else xs_datetime(value)
            etree.SubElement(el, _om(local)).text = text
    if da.service_quality:
        etree.SubElement(el, _om("ServiceQuality")).text = da.service_quality
    if da.receipt_requests or da.receipt_to:
        requests_el = etree.SubElement(el, _om("ReceiptRequests"))
        for kind in da.receipt_requests:
            etree.SubElement(requests_el, _om(kind))
        if da.receipt_to:
            to = etree.SubElement(requests_el, _om("ReceiptTo"))
            etree.SubElement(to, q(WSA, "Address")).text = da.receipt_to


def render_message_metadata(md: MessageMetaData, tag: str = MESSAGE_METADATA) -> etree._Element:
    """The oscimeta:MessageMetaData header (sendMessage, TransportReport, MsgBox), in schema order."""
    root = etree.Element(tag, nsmap=NSMAP_OSCIMETA)
    root.set("TestMsg", "true" if md.test else "false")
    _render_delivery_attributes(root, md.delivery_attributes)
    fill_party(etree.SubElement(etree.SubElement(root, _om("Originators")), AUTHOR), md.author)
    fill_party(etree.SubElement(etree.SubElement(root, _om("Destinations")), READER), md.reader)
    ident = etree.SubElement(root, _om("MsgIdentification"))
    etree.SubElement(ident, WSA_MESSAGE_ID).text = md.message_id
    for ref in md.in_reply_to:
        etree.SubElement(ident, _om("In-Reply-To")).text = ref
    qualifier = etree.SubElement(root, _om("Qualifier"))
    if md.subject:
        etree.SubElement(qualifier, _om("Subject")).text = md.subject
    etree.SubElement(qualifier, _om("Service")).text = md.service
    scenario = etree.SubElement(qualifier, _om("BusinessScenario"))
    bs = md.business_scenario
    if bs.defined:
        code_element(scenario, _om("Defined"), bs.code, bs.list_uri, bs.list_version)
    else:
        etree.SubElement(scenario, _om("Undefined")).text = bs.code
    mt = md.message_type
    code_element(qualifier, _om("MessageType"), mt.code, mt.list_uri, mt.list_version).set(
        "payloadSchema", mt.payload_schema)
    if md.properties:
        props = etree.SubElement(root, _om("MessageProperties"))
        for p in md.properties:
            prop = etree.SubElement(props, _om("Property"))
            code_element(prop, _om("Key"), p.code, p.list_uri, p.list_version)
            etree.SubElement(prop, _om("Value")).text = p.value
    if md.size:  # xs:positiveInteger
        etree.SubElement(root, _om("MsgSize")).text = str(md.size)
    return root


# ---------------------------------------------------------------- parse


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


def _parse_delivery_attributes(el: etree._Element | None) -> DeliveryAttributes:
    if el is None:
        return DeliveryAttributes()
    values: dict[str, object] = {}
    for local in _TIMES:
        child = el.find(_om(local))
        text = (child.text or "").strip() if child is not None else ""
        if text:
            values[_FIELDS[local]] = _parse_time(text, local)
    quality = el.findtext(_om("ServiceQuality"))
    requests_el = el.find(_om("ReceiptRequests"))
    kinds: tuple[str, ...] = ()
    receipt_to = None
    if requests_el is not None:
        kinds = tuple(k for k in RECEIPT_KINDS if requests_el.find(_om(k)) is not None)
        receipt_to = (requests_el.findtext(f"{_om('ReceiptTo')}/{q(WSA, 'Address')}") or "").strip() or None
    return DeliveryAttributes(service_quality=(quality or "").strip() or None, receipt_requests=kinds,
                              receipt_to=receipt_to, **values)  # type: ignore[arg-type]  # a date or datetime per field


def _message_property(p: etree._Element) -> MessageProperty:
    key = p.find(_om("Key"))
    return MessageProperty(code=(p.findtext(f"{_om('Key')}/code") or "").strip(),
                           list_uri=key.get("listURI", "") if key is not None else "",
                           list_version=key.get("listVersionID", "") if key is not None else "",
                           value=(p.findtext(_om("Value")) or ""))


def parse_message_metadata(el: etree._Element) -> MessageMetaData:
    """Read oscimeta:MessageMetaData back; raises ``ProtocolError`` naming the first missing piece."""
    if etree.QName(el).localname != "MessageMetaData" or etree.QName(el).namespace != OSCIMETA:
        raise ProtocolError(f"expected oscimeta:MessageMetaData, got {etree.QName(el).localname}")
    author = parse_party(_required(el, "oscimeta:Originators/oscimeta:Author", "Originators/Author"))
    reader = parse_party(_required(el, "oscimeta:Destinations/oscimeta:Reader", "Destinations/Reader"))
    ident = _required(el, "oscimeta:MsgIdentification", "MsgIdentification")
    message_id = _text(_required(ident, "wsa:MessageID", "MessageID"), "MessageID")
    in_reply_to = tuple((r.text or "").strip() for r in ident.findall(_om("In-Reply-To")) if (r.text or "").strip())
    qualifier = _required(el, "oscimeta:Qualifier", "Qualifier")
    service = _text(_required(qualifier, "oscimeta:Service", "Service"), "Service")
    scenario_el = _required(qualifier, "oscimeta:BusinessScenario", "BusinessScenario")
    defined = scenario_el.find("oscimeta:Defined", namespaces=NSMAP_OSCIMETA)
    if defined is not None:
        scenario = BusinessScenario(
            code=_text(_required(defined, "code", "BusinessScenario code"), "BusinessScenario code"),
            list_uri=defined.get("listURI", ""), list_version=defined.get("listVersionID", ""))
    else:
        undefined = _required(scenario_el, "oscimeta:Undefined", "BusinessScenario Defined/Undefined")
        scenario = BusinessScenario(code=_text(undefined, "BusinessScenario"), list_uri="", list_version="",
                                    defined=False)
    mt_el = _required(qualifier, "oscimeta:MessageType", "MessageType")
    message_type = MessageType(
        code=_text(_required(mt_el, "code", "MessageType code"), "MessageType code"),
        list_uri=mt_el.get("listURI", ""), list_version=mt_el.get("listVersionID", ""),
        payload_schema=mt_el.get("payloadSchema", ""))
    properties = tuple(_message_property(p) for p in el.findall(f"{_om('MessageProperties')}/{_om('Property')}"))
    size_el = el.find(_om("MsgSize"))
    try:
        size = int(size_el.text) if size_el is not None and size_el.text else None
    except ValueError as exc:
        raise ProtocolError("MessageMetaData: MsgSize is not an integer") from exc
    subject = qualifier.findtext(_om("Subject"))
    return MessageMetaData(
        author=author, reader=reader, message_id=message_id, service=service, business_scenario=scenario,
        message_type=message_type, size=size, test=el.get("TestMsg", "false").strip() in ("true", "1"),
        delivery_attributes=_parse_delivery_attributes(el.find(_om("DeliveryAttributes"))),
        subject=subject if subject else None, in_reply_to=in_reply_to, properties=properties)
