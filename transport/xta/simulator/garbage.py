"""Nonsensical answers of the XTA simulator (chaos kind "garbage"): what a broken deploy upstream, a
maintenance page or a misconfigured gateway in front of an XTA server sends instead of an answer.

    empty-body      processed; a SOAP 1.2 envelope with an empty Body (the right answer only for
                    operations that answer with an empty Body: sendMessage, checkAccountActive, ...)
    truncated-mtom  processed; the answer packaged as MTOM multipart/related and cut off half-way
    wrong-body      not processed; a SOAP 1.2 envelope with a foreign element in the Body
    html            not processed; HTTP 200 with an HTML maintenance page
    text            not processed; HTTP 200 with plain text
    empty           not processed; HTTP 200 with an empty body
    soap11          not processed; HTTP 200 with a SOAP 1.1 envelope

"Processed" kinds model a server whose work succeeds while its answers break (an accepted
sendMessage stays accepted: a re-send gets 9024); the others a front end answering in its place.
A client must take each for the endpoint's fault: retry later, count it in its circuit breaker.
"""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from transport.xta import mtom
from transport.xta.ns import SOAP11, SOAP12_CONTENT_TYPE
from transport.xta.soap import addressing_headers, build_envelope

PROCESSED_KINDS = frozenset({"empty-body", "truncated-mtom"})
FOREIGN_NS = "urn:x-xta-simulator:gateway"
_SOAP12 = f"{SOAP12_CONTENT_TYPE}; charset=utf-8"
_HTML = ("<!DOCTYPE html>\n<html><head><title>Wartungsarbeiten</title></head><body><h1>Wartungsarbeiten</h1>"
         "<p>Der Dienst ist vorübergehend nicht erreichbar.</p></body></html>\n").encode()
_TEXT = b"Service temporarily unavailable (maintenance)\n"
_SOAP11_ENVELOPE = (f'<?xml version="1.0" encoding="utf-8"?>\n<soap:Envelope xmlns:soap="{SOAP11}">'
                    "<soap:Header/><soap:Body/></soap:Envelope>").encode()


def processes(kind: str | None) -> bool:
    """Whether the request is carried out before the broken answer goes out."""
    return kind in PROCESSED_KINDS


def unprocessed_answer(kind: str, action: str | None, request_id: str | None) -> tuple[int, bytes, str]:
    """(HTTP status, body, content type) sent instead of carrying out the request."""
    if kind == "wrong-body":
        status = etree.Element(f"{{{FOREIGN_NS}}}Status", nsmap={"gw": FOREIGN_NS})
        status.text = "maintenance"
        headers = addressing_headers(action, relates_to=request_id) if action else []
        return 200, _serialize(build_envelope(headers, [status])), _SOAP12
    if kind == "html":
        return 200, _HTML, "text/html; charset=utf-8"
    if kind == "empty":
        return 200, b"", _SOAP12
    if kind == "soap11":
        return 200, _SOAP11_ENVELOPE, "text/xml; charset=utf-8"
    return 200, _TEXT, "text/plain; charset=utf-8"


def processed_answer(kind: str, headers: list[etree._Element], body: Sequence[etree._Element],
                     attachments: mtom.Attachments | None, action: str) -> tuple[int, bytes, str]:
    """(HTTP status, body, content type): the answer of a request that was carried out, broken."""
    if kind == "empty-body":
        return 200, _serialize(build_envelope(headers, [])), _SOAP12
    envelope = _serialize(build_envelope(headers, list(body)))
    content_type, package = mtom.package(envelope, attachments or mtom.Attachments(), action)
    whole = package.to_bytes()
    return 200, whole[: len(whole) // 2], content_type  # the closing boundary never comes


def _serialize(envelope: etree._Element) -> bytes:
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
