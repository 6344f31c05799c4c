from __future__ import annotations

import pytest
from lxml import etree

from hub.errors import EndpointUnavailable, MalformedAnswer, XtaFault
from hub.failures import safe_error_text
from schemas.xta import WEBSERVICE_XSD
from transport.xta import faults
from transport.xta.ns import SOAP12, WSA, XTA
from transport.xta.soap import build_envelope

# One representative code per exception type, plus every transient code.
CASES = [
    ("9012", faults.PERMISSION_DENIED, False),
    ("9011", faults.PERMISSION_DENIED, False),
    ("9023", faults.PARAMETER_IS_NOT_VALID, False),
    ("9024", faults.PARAMETER_IS_NOT_VALID, False),
    ("9030", faults.TECHNICAL_PROBLEM, True),
    ("9031", faults.TECHNICAL_PROBLEM, True),
    ("9032", faults.TECHNICAL_PROBLEM, True),
    ("9050", faults.MESSAGE_SCHEMA_VIOLATION, False),
    ("9060", faults.MESSAGE_VIRUS_DETECTION, False),
    ("9080", faults.SYNC_ASYNC, False),
    ("9070", faults.INVALID_MESSAGE_ID, False),
    ("9100", faults.CANCEL_DENIED, False),
]


def _roundtrip(fault: etree._Element) -> etree._Element:
    env = etree.fromstring(etree.tostring(build_envelope([], [fault])))
    return env.find(f"{{{SOAP12}}}Body/{{{SOAP12}}}Fault")


@pytest.mark.parametrize("code, exception_type, transient", CASES)
def test_fault_parse_per_exception_type(code, exception_type, transient) -> None:
    fault = _roundtrip(faults.render_fault(code, "Grund"))
    error = faults.error_from_fault(fault, http_status=400)
    assert isinstance(error, XtaFault)
    assert (error.exception_type, error.code, error.transient) == (exception_type, code, transient)
    assert error.reason == f"xta_{code}"
    assert "Grund" in str(error)


def test_every_exception_type_is_covered() -> None:
    assert {t for _, t, _ in CASES} == faults.EXCEPTION_TYPES


def test_rendered_fault_shape() -> None:
    fault = _roundtrip(faults.render_fault("9012", "Account nicht vorhanden"))
    assert fault.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Value") == "soap-env:Sender"
    text = fault.find(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text")
    assert text.get("{http://www.w3.org/XML/1998/namespace}lang") == "de"
    exc = fault.find(f"{{{SOAP12}}}Detail/{{{XTA}}}PermissionDeniedException")
    code = exc.find(f"{{{XTA}}}errorCode")
    assert code.get("listURI") == "urn:de:xta:webservice:codeliste:fehlernummer"
    assert code.get("listVersionID") == "1.0"
    assert (code.findtext("code"), code.findtext("name")) == ("9012", "Account nicht vorhanden.")
    etree.XMLSchema(etree.parse(str(WEBSERVICE_XSD))).assertValid(exc)


def test_technical_problem_is_a_receiver_fault() -> None:
    fault = faults.render_fault("9030", "db down")
    assert fault.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Value") == "soap-env:Receiver"
    assert faults.http_status_for("Receiver") == 500 and faults.http_status_for("Sender") == 400


def test_subcode_is_rendered_with_a_declared_prefix() -> None:
    fault = _roundtrip(faults.render_fault("9000", "x", exception_type=faults.PARAMETER_IS_NOT_VALID,
                                           subcode=(WSA, "ActionNotSupported")))
    value = fault.find(f"{{{SOAP12}}}Code/{{{SOAP12}}}Subcode/{{{SOAP12}}}Value")
    prefix, local = value.text.split(":")
    assert value.nsmap[prefix] == WSA and local == "ActionNotSupported"


def test_code_9000_needs_an_exception_type() -> None:
    with pytest.raises(ValueError):
        faults.render_fault("9000", "x")


def _plain_fault(code: str, detail: str = "") -> etree._Element:
    return etree.fromstring(
        f'<e:Fault xmlns:e="{SOAP12}"><e:Code><e:Value>e:{code}</e:Value></e:Code>'
        f'<e:Reason><e:Text xml:lang="en">boom</e:Text></e:Reason>{detail}</e:Fault>')


def test_soap_fault_without_xta_detail() -> None:
    assert isinstance(faults.error_from_fault(_plain_fault("Receiver")), EndpointUnavailable)
    # not XTA, so not an explicit refusal from the fault table: the endpoint's fault, retried
    assert isinstance(faults.error_from_fault(_plain_fault("Sender")), MalformedAnswer)
    assert isinstance(faults.error_from_fault(_plain_fault("Sender", "<e:Detail><x>1</x></e:Detail>")),
                      MalformedAnswer)
    assert faults.error_from_fault(_plain_fault("Sender")).transient


def test_xta_exception_without_error_code() -> None:
    fault = _plain_fault("Sender", f'<e:Detail><x:ParameterIsNotValidException xmlns:x="{XTA}"/></e:Detail>')
    error = faults.error_from_fault(fault)
    assert isinstance(error, XtaFault) and error.code is None and not error.transient


class _ZeepFault(Exception):
    def __init__(self, message, code, detail):
        super().__init__(message)
        self.message, self.code, self.detail = message, code, detail


def test_zeep_fault_translation() -> None:
    fault = _roundtrip(faults.render_fault("9031", "DVDV"))
    detail = fault.find(f"{{{SOAP12}}}Detail")
    error = faults.error_from_zeep_fault(_ZeepFault("DVDV", "soap-env:Receiver", detail), http_status=500)
    assert isinstance(error, XtaFault) and error.code == "9031" and error.transient
    no_fault = _ZeepFault("Unknown fault occured", None, "<html/>")
    assert isinstance(faults.error_from_zeep_fault(no_fault, http_status=502), EndpointUnavailable)
    assert isinstance(faults.error_from_zeep_fault(no_fault, http_status=404), MalformedAnswer)
    assert isinstance(faults.error_from_zeep_fault(_ZeepFault("x", "soap-env:Receiver", None)), EndpointUnavailable)
    assert isinstance(faults.error_from_zeep_fault(_ZeepFault("x", "soap-env:Sender", None)), MalformedAnswer)


REMOTE_MARKER = "Zyxwv-GEHEIM-Marker-4711"


@pytest.mark.parametrize("soap_code, error_type", [("Receiver", EndpointUnavailable), ("Sender", MalformedAnswer)])
def test_fault_without_xta_detail_keeps_codes_never_the_remote_text(soap_code, error_type) -> None:
    """The Reason is the far side's free text (it may quote the payload): the error keeps the SOAP
    code, subcode and HTTP status only, on both paths (own parser and zeep)."""
    fault = etree.fromstring(
        f'<e:Fault xmlns:e="{SOAP12}"><e:Code><e:Value>e:{soap_code}</e:Value><e:Subcode><e:Value>e:Busy</e:Value>'
        f'</e:Subcode></e:Code><e:Reason><e:Text xml:lang="de">Wert {REMOTE_MARKER} ungültig</e:Text></e:Reason>'
        f'</e:Fault>')
    parsed = faults.error_from_fault(fault, http_status=500)
    via_zeep = faults.error_from_zeep_fault(_ZeepFault(f"Wert {REMOTE_MARKER} ungültig", f"soap-env:{soap_code}", None),
                                            http_status=500)
    for error in (parsed, via_zeep):
        assert isinstance(error, error_type) and error.transient
        assert REMOTE_MARKER not in str(error) and "ungültig" not in str(error)
        assert REMOTE_MARKER not in safe_error_text(error)
    assert str(parsed).startswith(f"SOAP {soap_code}/Busy fault without XTA detail, HTTP 500")
    assert str(via_zeep).startswith(f"SOAP {soap_code} fault without XTA detail, HTTP 500")
    # a (sub)code that is no name is not quoted either
    odd = etree.fromstring(f'<e:Fault xmlns:e="{SOAP12}"><e:Code><e:Value>e:Sender</e:Value><e:Subcode>'
                           f'<e:Value>{REMOTE_MARKER} x</e:Value></e:Subcode></e:Code></e:Fault>')
    assert REMOTE_MARKER not in str(faults.error_from_fault(odd))


# ------------------------------------------------------------------ the one table


@pytest.mark.parametrize("code", sorted(faults.FAULT_TABLE))
def test_every_code_in_the_table_is_mapped(code) -> None:
    """Render -> parse -> XtaFault for every code: type, code and transient flag as the table says."""
    entry = faults.FAULT_TABLE[code]
    exception_type = entry.exception_type or faults.PARAMETER_IS_NOT_VALID
    fault = _roundtrip(faults.render_fault(code, "Grund", exception_type=exception_type))
    error = faults.error_from_fault(fault, http_status=faults.http_status_for(faults.soap_code_for(exception_type)))
    assert isinstance(error, XtaFault)
    assert (error.exception_type, error.code) == (exception_type, code)
    assert error.transient is entry.transient is faults.is_transient(code)
    assert error.reason == f"xta_{code}"


def test_table_matches_the_code_list() -> None:
    official = etree.parse(str(WEBSERVICE_XSD)).getroot()
    listed = {e.get("value") for e in official.iter("{http://www.w3.org/2001/XMLSchema}enumeration")}
    assert set(faults.FAULT_TABLE) == listed  # every code of list 1.0, nothing else
    assert faults.TRANSIENT_CODES == {"9030", "9031", "9032"}
    assert {e.exception_type for e in faults.FAULT_TABLE.values()} - {None} == faults.EXCEPTION_TYPES
    assert faults.ERROR_CODES["9024"] == (faults.PARAMETER_IS_NOT_VALID, "MessageID ist bereits vergeben.")


def test_the_error_tree_keeps_no_table_of_its_own() -> None:
    """``XtaFault`` takes its transient flag from the caller (the table, via ``error_from_fault``):
    the same code is transient or permanent as it is told, never by a second list in hub.errors."""
    for code, entry in faults.FAULT_TABLE.items():
        told = XtaFault("x", exception_type=entry.exception_type or faults.TECHNICAL_PROBLEM, code=code,
                        transient=not entry.transient)
        assert told.transient is not entry.transient, code
    assert not XtaFault("x", exception_type=faults.TECHNICAL_PROBLEM, code="9030").transient  # untold: permanent


def test_unknown_codes_are_permanent() -> None:
    fault = _roundtrip(faults.render_fault("9999", "neu", exception_type=faults.TECHNICAL_PROBLEM))
    error = faults.error_from_fault(fault)
    assert isinstance(error, XtaFault) and error.code == "9999" and not error.transient
    assert not faults.is_transient(None) and not faults.is_transient("")


@pytest.mark.parametrize("condition", sorted(faults.TRANSPORT_CONDITIONS))
def test_transport_conditions_are_classified(condition) -> None:
    error_class, transient = faults.TRANSPORT_CONDITIONS[condition]
    assert error_class.transient is transient
    # every failure without an XTA fault is the endpoint's: transient and counted by the breaker
    assert transient and issubclass(error_class, EndpointUnavailable)


def test_transient_http_statuses() -> None:
    assert all(faults.is_transient_http_status(s) for s in (500, 502, 503, 504, 408, 429))
    assert not any(faults.is_transient_http_status(s) for s in (200, 400, 401, 403, 404))
