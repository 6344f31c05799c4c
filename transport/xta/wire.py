"""Bodies and extra headers of XTA 2.1.1 beyond the content container, as XML <-> data.

- management port: LookupServiceRequest/-Response, TransportReport, the wsa:MessageID body of
  getTransportReport/cancelMessage;
- send port: osci:X509TokenContainer (optional header of sendMessage/sendMessageSync);
- MsgBox port (OSCI 2.0.2): MsgBoxStatusListRequest, MsgBoxFetchRequest, MsgBoxGetNextRequest,
  MsgBoxCloseRequest, the MsgBoxResponse header and the MsgStatusList body.

Element order follows the official XSDs (XTA-Webservice-Globale-Elemente/-Datentypen 2.1.1,
OSCI2_02.xsd); the conformance tests validate every rendered element against them. Parsers raise
``ProtocolError`` naming what is missing.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from hub.errors import ProtocolError
from transport.xta.metadata import (
    LookupResult,
    MessageMetaData,
    Party,
    ReportRecord,
    ServiceParameter,
    StatusList,
    TransportReport,
)
from transport.xta.mmd import (
    MESSAGE_METADATA,
    READER,
    code_element,
    parse_message_metadata,
    parse_party,
    render_message_metadata,
    render_party,
    xs_datetime,
)
from transport.xta.ns import DS, OSCI, OSCIMETA, WSA, XTA, q

LOOKUP_SERVICE_REQUEST = q(XTA, "LookupServiceRequest")
LOOKUP_SERVICE_RESPONSE = q(XTA, "LookupServiceResponse")
TRANSPORT_REPORT = q(XTA, "TransportReport")
WSA_MESSAGE_ID = q(WSA, "MessageID")
X509_TOKEN_CONTAINER = q(OSCI, "X509TokenContainer")
MSGBOX_STATUS_LIST_REQUEST = q(OSCI, "MsgBoxStatusListRequest")
MSGBOX_FETCH_REQUEST = q(OSCI, "MsgBoxFetchRequest")
MSGBOX_GET_NEXT_REQUEST = q(OSCI, "MsgBoxGetNextRequest")
MSGBOX_CLOSE_REQUEST = q(OSCI, "MsgBoxCloseRequest")
MSGBOX_RESPONSE = q(OSCI, "MsgBoxResponse")
MSG_STATUS_LIST = q(OSCI, "MsgStatusList")

NO_MATCH = "http://www.osci.eu/ws/2008/05/transport/MsgBox/reasons/NoMatch"
REQUEST_ID_INVALID = "http://www.osci.eu/ws/2008/05/transport/MsgBox/reasons/RequestIdInvalid"
SEARCH_ARGS_INVALID = "http://www.osci.eu/ws/2008/05/transport/MsgBox/reasons/SearchArgsInvalid"


def _x(local: str) -> str:
    return q(XTA, local)


def _o(local: str) -> str:
    return q(OSCI, local)


def _text(el: etree._Element | None, what: str) -> str:
    value = (el.text or "").strip() if el is not None else ""
    if not value:
        raise ProtocolError(f"{what} missing or empty")
    return value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str | None, what: str) -> bytes:
    try:
        return binascii.a2b_base64(text or "")
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"{what} is not valid base64") from exc


# ---------------------------------------------------------------------- MessageID body


def render_message_id(message_id: str) -> etree._Element:
    el = etree.Element(WSA_MESSAGE_ID, nsmap={"wsa": WSA})
    el.text = message_id
    return el


def parse_message_id(body_children: Sequence[etree._Element], what: str = "MessageID") -> str:
    """The wsa:MessageID that is the whole body of getTransportReport/cancelMessage/createMessageId."""
    if len(body_children) != 1 or body_children[0].tag != WSA_MESSAGE_ID:
        raise ProtocolError(f"body must hold exactly one wsa:MessageID ({what})")
    return _text(body_children[0], what)


# ---------------------------------------------------------------------- lookupService


def render_lookup_request(queries: Iterable[tuple[Party, str]]) -> etree._Element:
    root = etree.Element(LOOKUP_SERVICE_REQUEST, nsmap={"xta": XTA, "oscimeta": OSCIMETA})
    for reader, service in queries:
        item = etree.SubElement(etree.SubElement(root, _x("LookupServiceRequestList")), _x("LookupService"))
        item.append(render_party(READER, reader))
        etree.SubElement(item, _x("ServiceType")).text = service
    if not len(root):
        raise ValueError("lookupService needs at least one (reader, service) query")
    return root


def parse_lookup_request(el: etree._Element) -> list[tuple[Party, str]]:
    if el.tag != LOOKUP_SERVICE_REQUEST:
        raise ProtocolError("expected xta:LookupServiceRequest")
    queries = []
    for item in el.iterfind(f"{_x('LookupServiceRequestList')}/{_x('LookupService')}"):
        reader = item.find(READER)
        if reader is None:
            raise ProtocolError("LookupService without Reader")
        queries.append((parse_party(reader), _text(item.find(_x("ServiceType")), "LookupService/ServiceType")))
    if not queries:
        raise ProtocolError("LookupServiceRequest holds no LookupService")
    return queries


def render_lookup_response(results: Iterable[LookupResult]) -> etree._Element:
    root = etree.Element(LOOKUP_SERVICE_RESPONSE, nsmap={"xta": XTA, "oscimeta": OSCIMETA})
    result_list = etree.SubElement(root, _x("LookupServiceResultList"))
    for result in results:
        item = etree.SubElement(result_list, _x("LookupServiceResult"))
        item.append(render_party(READER, result.reader))
        etree.SubElement(item, _x("ServiceType")).text = result.service
        value = etree.SubElement(item, _x("IsServiceAvailableValue"))
        if result.available is None:
            etree.SubElement(value, _x("ServiceIsAvailableUnknown")).text = "true"
        else:
            etree.SubElement(value, _x("ServiceIsAvailable")).text = "true" if result.available else "false"
        for p in result.parameters:
            param = etree.SubElement(item, _x("ServiceParameter"))
            code_element(param, _x("ParameterType"), p.code, p.list_uri, p.list_version)
            etree.SubElement(param, _x("Resource")).text = _b64(p.resource)
    return root


def parse_lookup_response(el: etree._Element) -> list[LookupResult]:
    if el.tag != LOOKUP_SERVICE_RESPONSE:
        raise ProtocolError(f"expected xta:LookupServiceResponse, got {etree.QName(el).localname}")
    items = el.findall(f"{_x('LookupServiceResultList')}/{_x('LookupServiceResult')}")
    if not items:  # the schema requires the list with at least one (possibly nil) result
        raise ProtocolError("LookupServiceResponse without LookupServiceResultList/LookupServiceResult")
    results = []
    for item in items:
        reader = item.find(READER)
        if reader is None:  # nillable: a result the server could not produce
            continue
        value = item.find(_x("IsServiceAvailableValue"))
        known = value.find(_x("ServiceIsAvailable")) if value is not None else None
        available = None if known is None else (known.text or "").strip() in ("true", "1")
        params = []
        for param in item.iterfind(_x("ServiceParameter")):
            ptype = param.find(_x("ParameterType"))
            if ptype is None:
                raise ProtocolError("ServiceParameter without ParameterType")
            params.append(ServiceParameter(
                code=_text(ptype.find("code"), "ParameterType/code"), list_uri=ptype.get("listURI", ""),
                list_version=ptype.get("listVersionID", ""),
                resource=_unb64(param.findtext(_x("Resource")), "ServiceParameter/Resource")))
        results.append(LookupResult(reader=parse_party(reader),
                                    service=_text(item.find(_x("ServiceType")), "LookupServiceResult/ServiceType"),
                                    available=available, parameters=tuple(params)))
    return results


def certificate_parameter(result: LookupResult, codes: Iterable[str]) -> x509.Certificate | None:
    """The first ServiceParameter with a code in ``codes`` whose Resource is an X.509 certificate
    (DER or PEM); None if there is none or it does not parse."""
    wanted = set(codes)
    for p in result.parameters:
        if p.code not in wanted:
            continue
        for loader in (x509.load_der_x509_certificate, x509.load_pem_x509_certificate):
            try:
                return loader(p.resource)
            except ValueError:
                continue
    return None


# ---------------------------------------------------------------------- TransportReport


def _render_records(parent: etree._Element, list_tag: str, item_tag: str, records: Sequence[ReportRecord]) -> None:
    if not records:
        return
    lst = etree.SubElement(parent, _x(list_tag))
    for r in records:
        item = etree.SubElement(lst, _x(item_tag))
        etree.SubElement(item, _x("Timestamp")).text = r.timestamp
        code_element(item, _x("Code"), r.code, r.list_uri, r.list_version)
        etree.SubElement(item, _x("Reason")).text = r.reason


def render_transport_report(report: TransportReport) -> etree._Element:
    root = etree.Element(TRANSPORT_REPORT, nsmap={"xta": XTA, "oscimeta": OSCIMETA, "wsa": WSA})
    root.append(render_message_metadata(report.metadata))
    etree.SubElement(root, _x("ReportTime")).text = report.report_time
    etree.SubElement(root, _x("XTAServerIdentity")).text = report.server_identity
    status = etree.SubElement(root, _x("MessageStatus"))
    etree.SubElement(status, _x("Status")).text = str(report.status)
    _render_records(status, "ErrorList", "Error", report.errors)
    _render_records(status, "WarnList", "Warning", report.warnings)
    _render_records(status, "InfoList", "Info", report.infos)
    return root


def _parse_records(status: etree._Element, list_tag: str, item_tag: str) -> tuple[ReportRecord, ...]:
    records = []
    for item in status.iterfind(f"{_x(list_tag)}/{_x(item_tag)}"):
        code = item.find(_x("Code"))
        records.append(ReportRecord(
            timestamp=(item.findtext(_x("Timestamp")) or "").strip(),
            code=(code.findtext("code") or "").strip() if code is not None else "",
            list_uri=code.get("listURI", "") if code is not None else "",
            list_version=code.get("listVersionID", "") if code is not None else "",
            reason=" ".join((item.findtext(_x("Reason")) or "").split())[:500]))
    return tuple(records)


def parse_transport_report(el: etree._Element) -> TransportReport:
    if el.tag != TRANSPORT_REPORT:
        raise ProtocolError(f"expected xta:TransportReport, got {etree.QName(el).localname}")
    mmd_el = el.find(MESSAGE_METADATA)
    if mmd_el is None:
        raise ProtocolError("TransportReport without MessageMetaData")
    status = el.find(_x("MessageStatus"))
    if status is None:
        raise ProtocolError("MessageStatus/Status missing or empty")
    try:
        value = int(_text(status.find(_x("Status")), "MessageStatus/Status"))
    except ValueError as exc:
        raise ProtocolError("MessageStatus/Status is not an integer") from exc
    keys = tuple((k.findtext("code") or "").strip()
                 for k in el.iterfind(f"{_x('AdditionalReports')}/{_x('Report')}/{_x('Key')}"))
    return TransportReport(
        metadata=parse_message_metadata(mmd_el), report_time=(el.findtext(_x("ReportTime")) or "").strip(),
        server_identity=(el.findtext(_x("XTAServerIdentity")) or "").strip(), status=value,
        errors=_parse_records(status, "ErrorList", "Error"), warnings=_parse_records(status, "WarnList", "Warning"),
        infos=_parse_records(status, "InfoList", "Info"), additional_report_types=keys)


# ---------------------------------------------------------------------- X509TokenContainer


def render_x509_token_container(certificates: Sequence[x509.Certificate],
                                at: _dt.datetime | None = None) -> etree._Element:
    """osci:X509TokenContainer listing the certificates a message uses (e.g. signer, reader cipher)."""
    when = xs_datetime(at or _dt.datetime.now(_dt.UTC))
    root = etree.Element(X509_TOKEN_CONTAINER, nsmap={"osci": OSCI, "ds": DS})
    root.set("validateCompleted", "false")
    for i, cert in enumerate(certificates, start=1):
        info = etree.SubElement(root, _o("X509TokenInfo"))
        info.set("Id", f"x509-token-{i}")
        info.set("validated", "false")
        data = etree.SubElement(info, q(DS, "X509Data"))
        etree.SubElement(data, q(DS, "X509Certificate")).text = _b64(cert.public_bytes(serialization.Encoding.DER))
        etree.SubElement(etree.SubElement(info, _o("TokenApplication")), _o("TimeInstant")).text = when
    if not len(root):
        raise ValueError("X509TokenContainer needs at least one certificate")
    return root


def parse_x509_token_container(el: etree._Element) -> list[x509.Certificate]:
    certs = []
    for value in el.iterfind(f"{_o('X509TokenInfo')}/{q(DS, 'X509Data')}/{q(DS, 'X509Certificate')}"):
        try:
            certs.append(x509.load_der_x509_certificate(_unb64(value.text, "X509Certificate")))
        except ValueError as exc:
            raise ProtocolError("X509TokenContainer holds an unreadable certificate") from exc
    return certs


# ---------------------------------------------------------------------- MsgBox


@dataclass(frozen=True)
class MsgBoxRequest:
    """What a MsgBox request asks for (fields unused by an operation stay at their defaults)."""

    request_id: str | None = None  # MsgBoxRequestID (getNext*, close)
    message_ids: tuple[str, ...] = ()  # MsgSelector/wsa:MessageID (getMessage, getStatusList)
    last_received: tuple[str, ...] = ()  # LastMsgReceived (getNextMessage, close)
    max_items: int | None = None  # maxListItems (getStatusList)
    list_form: str | None = None  # ListForm (getStatusList): "MessageMetaData" or "MsgAtrributes"
    new_entry: bool | None = None  # MsgSelector/@newEntry


def parse_msgbox_request(el: etree._Element) -> MsgBoxRequest:
    """Any of the four OSCI MsgBox request elements."""
    if el.tag not in (MSGBOX_STATUS_LIST_REQUEST, MSGBOX_FETCH_REQUEST, MSGBOX_GET_NEXT_REQUEST,
                      MSGBOX_CLOSE_REQUEST):
        raise ProtocolError(f"not an OSCI MsgBox request: {etree.QName(el).localname}")
    selector = el.find(_o("MsgSelector"))
    ids: tuple[str, ...] = ()
    new_entry = None
    if selector is not None:
        ids = tuple((m.text or "").strip() for m in selector.iterfind(WSA_MESSAGE_ID) if (m.text or "").strip())
        new_entry_flag = selector.get("newEntry")
        if new_entry_flag is not None:
            new_entry = new_entry_flag.strip() in ("true", "1")
    max_items = el.get("maxListItems")
    try:
        limit = int(max_items) if max_items else None
    except ValueError as exc:
        raise ProtocolError("maxListItems is not an integer") from exc
    return MsgBoxRequest(
        request_id=(el.get("MsgBoxRequestID") or "").strip() or None, message_ids=ids,
        last_received=tuple((r.text or "").strip() for r in el.iterfind(_o("LastMsgReceived"))
                            if (r.text or "").strip()),
        max_items=limit, list_form=el.get("ListForm"), new_entry=new_entry)


def render_msgbox_response(request_id: str, items_pending: int | None,
                           no_message_reason: str | None = None) -> etree._Element:
    """The osci:MsgBoxResponse header: ItemsPending, or NoMessageAvailable with a reason URI."""
    root = etree.Element(MSGBOX_RESPONSE, nsmap={"osci": OSCI})
    root.set("MsgBoxRequestID", request_id)
    if no_message_reason is not None:
        etree.SubElement(root, _o("NoMessageAvailable")).set("reason", no_message_reason)
    else:
        etree.SubElement(root, _o("ItemsPending")).text = str(max(0, items_pending or 0))
    return root


def parse_msgbox_response(header: etree._Element | None) -> tuple[str, int | None, str | None]:
    """(MsgBoxRequestID, ItemsPending or None, NoMessageAvailable reason or None)."""
    el = header.find(MSGBOX_RESPONSE) if header is not None else None
    if el is None:
        raise ProtocolError("MsgBox answer without osci:MsgBoxResponse header")
    request_id = (el.get("MsgBoxRequestID") or "").strip()
    nothing = el.find(_o("NoMessageAvailable"))
    if nothing is not None:
        return request_id, None, nothing.get("reason")
    pending = el.findtext(_o("ItemsPending"))
    try:
        return request_id, int(pending) if pending else 0, None
    except ValueError as exc:
        raise ProtocolError("ItemsPending is not an integer") from exc


def render_status_list(entries: Iterable[MessageMetaData]) -> etree._Element:
    root = etree.Element(MSG_STATUS_LIST, nsmap={"osci": OSCI, "oscimeta": OSCIMETA, "wsa": WSA})
    for md in entries:
        root.append(render_message_metadata(md))
    return root


def parse_status_list(header: etree._Element | None, body: etree._Element | None) -> StatusList:
    request_id, pending, reason = parse_msgbox_response(header)
    entries: tuple[MessageMetaData, ...] = ()
    if body is not None:
        if body.tag != MSG_STATUS_LIST:
            raise ProtocolError(f"expected osci:MsgStatusList, got {etree.QName(body).localname}")
        entries = tuple(parse_message_metadata(m) for m in body.iterfind(MESSAGE_METADATA))
    return StatusList(request_id=request_id, entries=entries, items_pending=pending, no_message_reason=reason)


def render_msgbox_request(tag: str, request: MsgBoxRequest) -> etree._Element:
    """One of the four OSCI MsgBox request elements (``tag`` = MSGBOX_*_REQUEST)."""
    root = etree.Element(tag, nsmap={"osci": OSCI, "wsa": WSA})
    if tag in (MSGBOX_GET_NEXT_REQUEST, MSGBOX_CLOSE_REQUEST):
        if not request.request_id:
            raise ValueError("MsgBoxRequestID is required for getNext*/close")
        root.set("MsgBoxRequestID", request.request_id)
        for message_id in request.last_received:
            etree.SubElement(root, _o("LastMsgReceived")).text = message_id
        return root
    if tag == MSGBOX_STATUS_LIST_REQUEST:
        if request.max_items is not None:
            root.set("maxListItems", str(request.max_items))
        if request.list_form:
            root.set("ListForm", request.list_form)
    elif tag == MSGBOX_FETCH_REQUEST:
        root.set("MsgPart", "Envelope")
    else:
        raise ValueError(f"not an OSCI MsgBox request element: {tag}")
    if request.message_ids or request.new_entry is not None:
        selector = etree.SubElement(root, _o("MsgSelector"))
        if request.new_entry is not None:
            selector.set("newEntry", "true" if request.new_entry else "false")
        for message_id in request.message_ids:
            etree.SubElement(selector, WSA_MESSAGE_ID).text = message_id
    return root
