"""SOAP 1.2 faults of XTA 2.1.1: the error-code list, parsing into ``XtaFault``, rendering for the
simulator.

An XTA fault is ``soap-env:Fault`` with Code/Reason and, in Detail, one xta exception element
(``PermissionDeniedException`` ...) whose ``errorCode`` carries a code of the list
``urn:de:xta:webservice:codeliste:fehlernummer`` (version 1.0). Parsing turns it into
``hub.errors.XtaFault``. ``FAULT_TABLE`` is the one table of every code with its exception type and
whether it is transient (9030/9031/9032 only); ``XtaFault`` has no table of its own and takes its
transient flag from here (``error_from_fault``). ``TRANSPORT_CONDITIONS`` lists the failures below
SOAP (connection errors, timeouts, HTTP 5xx/408/429 -> ``EndpointUnavailable``, transient). An
answer that is not what XTA promises (not SOAP 1.2, an empty or unexpected body, a SOAP fault
without an XTA detail other than ``Receiver``) is ``MalformedAnswer``: the endpoint's fault, so
transient and counted by the breaker. Permanent are only the codes ``FAULT_TABLE`` marks so: an
explicit refusal by the server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from lxml import etree

from hub.errors import EndpointUnavailable, HubError, MalformedAnswer, XtaFault
from transport.xta.ns import (
    ERROR_CODE_LIST_URI,
    ERROR_CODE_LIST_VERSION,
    SOAP12,
    WSA,
    XML,
    XTA,
    q,
)

PERMISSION_DENIED = "PermissionDeniedException"
PARAMETER_IS_NOT_VALID = "ParameterIsNotValidException"
TECHNICAL_PROBLEM = "XTAWSTechnicalProblemException"
MESSAGE_SCHEMA_VIOLATION = "MessageSchemaViolationException"
MESSAGE_VIRUS_DETECTION = "MessageVirusDetectionException"
SYNC_ASYNC = "SyncAsyncException"
INVALID_MESSAGE_ID = "InvalidMessageIDException"
CANCEL_DENIED = "CancelDeniedException"

EXCEPTION_TYPES: frozenset[str] = frozenset({
    PERMISSION_DENIED, PARAMETER_IS_NOT_VALID, TECHNICAL_PROBLEM, MESSAGE_SCHEMA_VIOLATION,
    MESSAGE_VIRUS_DETECTION, SYNC_ASYNC, INVALID_MESSAGE_ID, CANCEL_DENIED,
})

@dataclass(frozen=True)
class ErrorCode:
    """One entry of the code list ``urn:de:xta:webservice:codeliste:fehlernummer`` (version 1.0)."""

    code: str
    exception_type: str | None  # the xta exception element the list assigns it to (None: any)
    name: str  # codeName from the list
    transient: bool  # True: retrying the same message later can succeed


def _table(*rows: tuple[str, str | None, str, bool]) -> Mapping[str, ErrorCode]:
    return MappingProxyType({code: ErrorCode(code, etype, name, transient) for code, etype, name, transient in rows})


# THE table: every XTA error code, its exception type and whether it is transient. Transient are only
# the technical problems of the server side (9030 internal error, 9031 directory service, 9032
# delivery); everything else needs a change by a human (account, certificate, content, MessageID).
# Transport failures without an XTA fault are classified in ``TRANSPORT_CONDITIONS`` below.
FAULT_TABLE: Mapping[str, ErrorCode] = _table(
    ("9000", None, "Unspezifizierter Fehler, als Freitext beschrieben", False),
    ("9010", PERMISSION_DENIED, "Authentisierung/Zertifikat ist abgelaufen.", False),
    ("9011", PERMISSION_DENIED, "Account ist gesperrt.", False),
    ("9012", PERMISSION_DENIED, "Account nicht vorhanden.", False),
    ("9013", PERMISSION_DENIED, "Dienst ist nicht gebucht.", False),
    ("9014", PERMISSION_DENIED, "Authentisierung/Zertifikat passt nicht zur Absenderkennung.", False),
    ("9020", PARAMETER_IS_NOT_VALID, "Keine Parameter vorhanden", False),
    ("9021", PARAMETER_IS_NOT_VALID, "Keine gültige URI", False),
    ("9022", PARAMETER_IS_NOT_VALID, "Ungültige Parameterkombination", False),
    ("9023", PARAMETER_IS_NOT_VALID, "Die Nachricht überschreitet die Größenbeschränkung.", False),
    ("9024", PARAMETER_IS_NOT_VALID, "MessageID ist bereits vergeben.", False),
    ("9030", TECHNICAL_PROBLEM, "Interner Fehler beim XTA-Server bzw. XTA-Dienstleister", True),
    ("9031", TECHNICAL_PROBLEM, "Fehler beim externen Verzeichnisdienst", True),
    ("9032", TECHNICAL_PROBLEM, "Fehler bei der Zustellung", True),
    ("9050", MESSAGE_SCHEMA_VIOLATION, "Fachnachricht ist nicht schemakonform", False),
    ("9051", MESSAGE_SCHEMA_VIOLATION, "Fachnachricht trägt ein falsches Encoding.", False),
    ("9052", MESSAGE_SCHEMA_VIOLATION, "Nachricht verletzt das entsprechende Service Profil.", False),
    ("9060", MESSAGE_VIRUS_DETECTION, "Es wurde schadhafter Code ermittelt.", False),
    ("9070", INVALID_MESSAGE_ID, "MessageID für den Account nicht bekannt.", False),
    ("9080", SYNC_ASYNC, "Der Dienst wird nur asynchron angeboten.", False),
    ("9081", SYNC_ASYNC, "Der Dienst wird nur synchron angeboten.", False),
    ("9100", CANCEL_DENIED, "Der durch den Schalter NotBefore gesetzte Termin ist verstrichen.", False),
    ("9101", CANCEL_DENIED, "Der Schalter NotBefore wurde nicht gesetzt.", False),
)

# Failures without an XTA fault, and how the client classifies them: all transient, all counted by
# the circuit breaker. An answer that makes no sense is the endpoint's fault, never the message's:
# dead-lettering on it would empty a whole queue during one bad deploy upstream (pitfall 11).
TRANSPORT_CONDITIONS: Mapping[str, tuple[type[HubError], bool]] = MappingProxyType({
    "connection_error": (EndpointUnavailable, True),  # refused, reset, DNS, TLS handshake failure
    "timeout": (EndpointUnavailable, True),  # connect or read timeout
    "http_5xx": (EndpointUnavailable, True),  # 500-599 without an XTA fault
    "http_408": (EndpointUnavailable, True),  # request timeout
    "http_429": (EndpointUnavailable, True),  # too many requests
    "soap_receiver_fault": (EndpointUnavailable, True),  # SOAP Receiver fault without XTA detail
    "not_soap": (MalformedAnswer, True),  # 2xx/4xx answer that is no SOAP 1.2 envelope: HTML, text, empty
    "soap11_envelope": (MalformedAnswer, True),  # a SOAP 1.1 envelope (XTA 2 is SOAP 1.2 only)
    "unexpected_body": (MalformedAnswer, True),  # SOAP 1.2, but the body is empty or the wrong element
    "missing_field": (MalformedAnswer, True),  # the right element without a field XTA requires
    "truncated_mtom": (MalformedAnswer, True),  # multipart/related answer cut off before its end
    "soap_sender_fault": (MalformedAnswer, True),  # SOAP Sender fault without XTA detail
})

# Backwards-compatible view: code -> (exception type, codeName).
ERROR_CODES: Mapping[str, tuple[str | None, str]] = MappingProxyType(
    {code: (entry.exception_type, entry.name) for code, entry in FAULT_TABLE.items()})
TRANSIENT_CODES: frozenset[str] = frozenset(code for code, entry in FAULT_TABLE.items() if entry.transient)


def is_transient(code: str | None) -> bool:
    """True for the codes the table marks transient; unknown codes and None are permanent."""
    entry = FAULT_TABLE.get(code or "")
    return bool(entry and entry.transient)


def is_transient_http_status(status: int) -> bool:
    """HTTP statuses (without an XTA fault) after which a retry can succeed."""
    return status >= 500 or status in (408, 429)

_CODE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,59}")
_MAX_REASON = 300  # fault reasons end up in exception messages and logs: keep them short


def soap_code_for(exception_type: str) -> str:
    """``Receiver`` for server-side problems (XTAWSTechnicalProblem), ``Sender`` for the rest."""
    return "Receiver" if exception_type == TECHNICAL_PROBLEM else "Sender"


def http_status_for(soap_code: str) -> int:
    """HTTP status of a fault per the SOAP 1.2 HTTP binding: 400 for Sender, 500 otherwise."""
    return 400 if soap_code == "Sender" else 500


def render_fault(
    code: str,
    reason: str,
    *,
    exception_type: str | None = None,
    soap_code: str | None = None,
    subcode: tuple[str, str] | None = None,
    lang: str = "de",
) -> etree._Element:
    """A ``soap-env:Fault`` whose Detail carries the xta exception with ``errorCode`` ``code``.

    ``exception_type`` defaults to the exception the code list assigns to the code (9000 needs one);
    ``subcode`` is an optional (namespace, local name) such as WS-Addressing's ActionNotSupported.
    """
    listed_type, name = ERROR_CODES.get(code, (None, reason))
    exception_type = exception_type or listed_type
    if exception_type not in EXCEPTION_TYPES:
        raise ValueError(f"no XTA exception type for error code {code}")
    soap_code = soap_code or soap_code_for(exception_type)
    fault = etree.Element(q(SOAP12, "Fault"), nsmap={"soap-env": SOAP12, "wsa": WSA})
    code_el = etree.SubElement(fault, q(SOAP12, "Code"))
    etree.SubElement(code_el, q(SOAP12, "Value")).text = f"soap-env:{soap_code}"
    if subcode is not None:
        sub_ns, sub_local = subcode
        sub = etree.SubElement(code_el, q(SOAP12, "Subcode"))
        value = etree.SubElement(sub, q(SOAP12, "Value"), nsmap={"sub": sub_ns} if sub_ns != WSA else None)
        value.text = f"{'wsa' if sub_ns == WSA else 'sub'}:{sub_local}"
    reason_el = etree.SubElement(fault, q(SOAP12, "Reason"))
    text = etree.SubElement(reason_el, q(SOAP12, "Text"))
    text.set(q(XML, "lang"), lang)
    text.text = reason
    detail = etree.SubElement(fault, q(SOAP12, "Detail"))
    exc = etree.SubElement(detail, q(XTA, exception_type), nsmap={"xta": XTA})
    error_code = etree.SubElement(exc, q(XTA, "errorCode"))
    error_code.set("listURI", ERROR_CODE_LIST_URI)
    error_code.set("listVersionID", ERROR_CODE_LIST_VERSION)
    etree.SubElement(error_code, "code").text = code
    etree.SubElement(error_code, "name").text = name
    return fault


def _local(text: str | None) -> str:
    return (text or "").strip().rpartition(":")[2]


def _code_name(text: str) -> str:
    """A fault (sub)code's local name as it may appear in messages: a name, else a placeholder."""
    return text if _CODE_NAME.fullmatch(text) else "(not a name)"


def _short(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


def _xta_exception(detail: etree._Element | None) -> etree._Element | None:
    if detail is None:
        return None
    for child in detail:
        tag: object = child.tag  # comments and PIs have a function as tag (lxml-stubs 0.5.1 say str)
        if not isinstance(tag, str):
            continue
        qn = etree.QName(child)
        if qn.namespace == XTA or qn.localname in EXCEPTION_TYPES:
            return child
    return None


def error_from_fault(fault: etree._Element, *, http_status: int | None = None) -> HubError:
    """Translate a parsed ``soap-env:Fault`` into the hub's error (``XtaFault`` for XTA faults)."""
    soap_code = _local(fault.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Value"))
    reason = _short(fault.findtext(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text"))
    exc = _xta_exception(fault.find(q(SOAP12, "Detail")))
    if exc is not None:
        exception_type = etree.QName(exc).localname
        error_code = next((c for c in exc if isinstance(c.tag, str) and etree.QName(c).localname == "errorCode"),
                          None)
        code = name = None
        if error_code is not None:
            code = (error_code.findtext("code") or "").strip() or None
            name = _short(error_code.findtext("name")) or None
        label = " ".join(p for p in (exception_type, code, f"({name})" if name else None) if p)
        return XtaFault(f"{label}: {reason}" if reason else label, exception_type=exception_type, code=code,
                        transient=is_transient(code))
    subcodes = [_local(v.text) for v in fault.iterfind(f"{{{SOAP12}}}Code//{{{SOAP12}}}Subcode/{{{SOAP12}}}Value")]
    return _fault_without_detail(soap_code, subcodes, fault.findtext(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text"),
                                 http_status)


def error_from_zeep_fault(exc: Any, *, http_status: int | None = None) -> HubError:
    """Translate a ``zeep.exceptions.Fault`` (duck-typed: message, code, detail)."""
    detail = getattr(exc, "detail", None)
    if isinstance(detail, etree._Element):
        parent = detail.getparent()
        if parent is not None and parent.tag == q(SOAP12, "Fault"):
            return error_from_fault(parent, http_status=http_status)
    code = getattr(exc, "code", None)
    if code is None:  # zeep's "Unknown fault occured": the answer held no soap-env:Fault at all
        if http_status is not None and is_transient_http_status(http_status):
            return EndpointUnavailable(f"HTTP {http_status} without SOAP fault")
        return MalformedAnswer(f"answer is not a SOAP response (HTTP {http_status})")
    subcodes = [_local(str(getattr(c, "localname", c))) for c in getattr(exc, "subcodes", None) or ()]
    return _fault_without_detail(_local(code), subcodes, getattr(exc, "message", None), http_status)


def _fault_without_detail(soap_code: str, subcodes: list[str], reason: str | None,
                          http_status: int | None) -> HubError:
    """A SOAP fault without XTA detail: Receiver -> ``EndpointUnavailable``, else ``MalformedAnswer``.

    The message keeps the codes and the HTTP status, never the Reason text: free text from the far side
    may echo payload values, and this message reaches dead-letter headers and every retry's log line
    (only its length is kept, to tell a reason from none)."""
    code = "/".join(_code_name(c) for c in (soap_code or "unknown", *subcodes) if c)
    status = f", HTTP {http_status}" if http_status else ""
    reason_length = len(" ".join((reason or "").split()))
    text = f"SOAP {code} fault without XTA detail{status}; reason text withheld ({reason_length} chars)"
    if soap_code == "Receiver":
        return EndpointUnavailable(text)
    return MalformedAnswer(text)
