"""An answer that makes no sense is the endpoint's fault (pitfall 11): for every operation the worker
uses, each kind of nonsense raises ``MalformedAnswer`` (transient, reason ``endpoint_protocol``,
counted by the circuit breaker), never a permanent error that would dead-letter the message.

A canned HTTP server on loopback plays the far side; the right answer of each operation is served
too, so the test fails if the client refuses everything."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from lxml import etree
from xta_testdata import AUTHOR, READER, content, metadata

from hub.errors import MalformedAnswer, XtaFault
from hub.worker import _endpoint_failure
from transport.xta import mtom, wire
from transport.xta.client import XtaClient, XtaEndpoint
from transport.xta.container import build_content_container, generic_container
from transport.xta.faults import render_fault
from transport.xta.metadata import LookupResult, TransportReport
from transport.xta.ns import SOAP11, SOAP12, SOAP12_CONTENT_TYPE, WSA
from transport.xta.soap import build_envelope

SERVICE = "xauslaender1211OZGPORTALABH"
MESSAGE_ID = "urn:de:xta:messageid:test:1"
SOAP = f"{SOAP12_CONTENT_TYPE}; charset=utf-8"
Answer = tuple[int, str, bytes]


def _envelope(*body: etree._Element) -> bytes:
    return etree.tostring(build_envelope([], list(body)), xml_declaration=True, encoding="utf-8")


def _soap(*body: etree._Element) -> Answer:
    return 200, SOAP, _envelope(*body)


def _xml(text: str) -> etree._Element:
    return etree.fromstring(text)


def _message_id(text: str) -> etree._Element:
    el = etree.Element(f"{{{WSA}}}MessageID", nsmap={"wsa": WSA})
    el.text = text
    return el


def _report(**changes: Any) -> etree._Element:
    report = TransportReport(metadata(MESSAGE_ID), "2025-01-01T00:00:00Z", "xta-test", 1)
    el = wire.render_transport_report(report)
    for local in changes.get("drop", ()):
        for child in list(el.iter(f"{{*}}{local}")):
            child.getparent().remove(child)
    return el


def _truncated_mtom(*body: etree._Element) -> Answer:
    content_type, package = mtom.package(_envelope(*body), mtom.Attachments(), "urn:action")
    whole = package.to_bytes()
    return 200, content_type, whole[: len(whole) // 2]


# the right answer (body elements) of each operation, and the ways to get it wrong that concern only it
RIGHT_BODY: dict[str, list[etree._Element]] = {
    "lookupService": [wire.render_lookup_response([LookupResult(READER, SERVICE, True)])],
    "createMessageId": [_message_id(MESSAGE_ID)],
    "sendMessage": [],
    "getTransportReport": [_report()],
    "checkAccountActive": [],
}
RIGHT: dict[str, Answer] = {operation: _soap(*body) for operation, body in RIGHT_BODY.items()}
MISSING_FIELDS: dict[str, list[tuple[str, Answer]]] = {
    "lookupService": [
        ("no_result_list", _soap(_xml('<x:LookupServiceResponse xmlns:x="http://xoev.de/transport/xta/211"/>'))),
        ("result_without_service_type", _soap(_xml(
            etree.tostring(wire.render_lookup_response([LookupResult(READER, SERVICE, True)])).decode()
            .replace(f"<xta:ServiceType>{SERVICE}</xta:ServiceType>", "")))),
    ],
    "createMessageId": [("empty_message_id", _soap(_message_id("  ")))],
    "getTransportReport": [
        ("no_metadata", _soap(_report(drop=("MessageMetaData",)))),
        ("no_status", _soap(_report(drop=("Status",)))),
    ],
}
# operations whose right answer is an empty Body: there an empty Body is not nonsense
EMPTY_ANSWER = {"sendMessage", "checkAccountActive"}
FOREIGN = _xml('<gw:Status xmlns:gw="urn:x-gateway">maintenance</gw:Status>')
COMMON: list[tuple[str, Answer]] = [
    ("unexpected_body_element", _soap(FOREIGN)),
    ("two_body_elements", _soap(FOREIGN, _xml('<gw:More xmlns:gw="urn:x-gateway"/>'))),
    ("html_200", (200, "text/html", b"<!DOCTYPE html><html><body><h1>Wartungsarbeiten</h1></body></html>")),
    ("html_200_no_doctype", (200, "text/html; charset=utf-8", b"<html><body>maintenance</body></html>")),
    ("text_200", (200, "text/plain", b"Service temporarily unavailable")),
    ("empty_200", (200, SOAP, b"")),
    ("soap11_envelope", (200, "text/xml", f'<s:Envelope xmlns:s="{SOAP11}"><s:Body/></s:Envelope>'.encode())),
    ("no_body", (200, SOAP, f'<e:Envelope xmlns:e="{SOAP12}"><e:Header/></e:Envelope>'.encode())),
    ("soap_sender_fault_without_xta_detail", (400, SOAP, (
        f'<e:Envelope xmlns:e="{SOAP12}"><e:Body><e:Fault><e:Code><e:Value>e:Sender</e:Value></e:Code>'
        '<e:Reason><e:Text xml:lang="en">rejected by gateway</e:Text></e:Reason></e:Fault></e:Body></e:Envelope>'
    ).encode())),
    ("http_404_page", (404, "text/html", b"<html><body>Not Found</body></html>")),
]


def _cases() -> Iterator[Any]:
    for operation in RIGHT:
        if operation not in EMPTY_ANSWER:
            yield pytest.param(operation, _soap(), id=f"{operation}-empty_body")
        for name, answer in [*COMMON, *MISSING_FIELDS.get(operation, [])]:
            yield pytest.param(operation, answer, id=f"{operation}-{name}")
        # the right answer, but packaged as MTOM and cut off before its end
        yield pytest.param(operation, _truncated_mtom(*RIGHT_BODY[operation]), id=f"{operation}-truncated_mtom")


def _call(client: XtaClient, operation: str) -> Any:
    if operation == "lookupService":
        return client.lookup_service(AUTHOR, [(READER, SERVICE)])
    if operation == "createMessageId":
        return client.create_message_id(AUTHOR)
    if operation == "sendMessage":
        return client.send_message(metadata(MESSAGE_ID), generic_container(build_content_container(content())))
    if operation == "getTransportReport":
        return client.get_transport_report(AUTHOR, MESSAGE_ID)
    return client.check_account_active(AUTHOR)


@pytest.mark.parametrize("operation", sorted(RIGHT))
def test_the_right_answer_is_accepted(far_side, operation) -> None:
    url, answers = far_side
    answers.append(RIGHT[operation])
    with XtaClient(XtaEndpoint(url, timeout=10)) as client:
        result = _call(client, operation)
    expected = {"lookupService": [LookupResult(READER, SERVICE, True)], "createMessageId": MESSAGE_ID,
                "sendMessage": None, "checkAccountActive": True}
    if operation == "getTransportReport":
        assert result.status == 1 and result.metadata.message_id == MESSAGE_ID
    else:
        assert result == expected[operation]


@pytest.mark.parametrize("operation, answer", list(_cases()))
def test_nonsense_is_a_transient_endpoint_failure(far_side, operation, answer) -> None:
    url, answers = far_side
    answers.append(answer)
    with XtaClient(XtaEndpoint(url, timeout=10)) as client, pytest.raises(MalformedAnswer) as info:
        _call(client, operation)
    error = info.value
    assert error.transient and error.reason == "endpoint_protocol"
    assert _endpoint_failure(error), "the circuit breaker must count it"
    assert not answers, "the canned answer was not used"


def test_explicit_refusals_stay_permanent(far_side) -> None:
    """The XTA fault table still decides: an explicit refusal (9012, no account) is permanent."""
    url, answers = far_side
    fault = render_fault("9012", "Account nicht vorhanden")
    answers.append((400, SOAP, _envelope(fault)))
    with XtaClient(XtaEndpoint(url, timeout=10)) as client, pytest.raises(XtaFault) as info:
        client.create_message_id(AUTHOR)
    assert info.value.code == "9012" and not info.value.transient and not _endpoint_failure(info.value)


def test_more_lookup_results_than_queries_is_nonsense(far_side) -> None:
    url, answers = far_side
    two = wire.render_lookup_response([LookupResult(READER, SERVICE, True), LookupResult(READER, "urn:other", True)])
    answers.append(_soap(two))
    with XtaClient(XtaEndpoint(url, timeout=10)) as client, pytest.raises(MalformedAnswer, match="2 results"):
        client.lookup_service(AUTHOR, [(READER, SERVICE)])
