"""Reading an XTA answer: the one place that decides whether what came back is an answer at all.

``parse_reply`` turns an HTTP answer (plain SOAP 1.2 or MTOM) into a ``Reply`` or raises the hub
error it stands for: an XTA fault -> ``XtaFault`` (``faults.FAULT_TABLE`` says whether it is
transient), HTTP 5xx/408/429 without one -> ``EndpointUnavailable``, anything else that is not what
XTA promises -> ``MalformedAnswer``. ``Reply.only``/``Reply.empty`` check the body an operation
answers with, and ``malformed_answers`` turns a parser's ``ProtocolError`` into ``MalformedAnswer``
while an answer is read: nonsense from the far side is the endpoint's fault, never the message's
(pitfall 11), so it is retried and counted by the circuit breaker.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from lxml import etree

from hub.errors import EndpointUnavailable, MalformedAnswer, ProtocolError, XmlRejected
from transport.security.xml import XmlLimits, parse_xml
from transport.xta import mtom
from transport.xta.faults import error_from_fault, is_transient_http_status
from transport.xta.ns import SOAP11, SOAP12, q
from transport.xta.soap import body_children, split_envelope

# Largest answer read (a 40 MB container inline, base64 twice when encrypted, plus envelope).
MAX_RESPONSE_BYTES = 128 * 1024 * 1024
_FAULT = q(SOAP12, "Fault")
_REPLY_LIMITS = XmlLimits(max_bytes=MAX_RESPONSE_BYTES, max_text_length=MAX_RESPONSE_BYTES)


@dataclass(frozen=True)
class Reply:
    """A parsed non-fault answer: header, body children and (MTOM) binary parts by Content-ID."""

    status: int
    header: etree._Element | None
    body: list[etree._Element]
    parts: Mapping[str, memoryview] = field(default_factory=dict)

    def only(self, tag: str, what: str) -> etree._Element:
        """The one body element an operation answers with (``MalformedAnswer`` for anything else)."""
        if len(self.body) != 1 or self.body[0].tag != tag:
            found = etree.QName(self.body[0]).localname[:60] if self.body else "nothing"
            raise MalformedAnswer(f"{what}: answer body must hold exactly one {etree.QName(tag).localname}, "
                                  f"found {found} ({len(self.body)} element(s))")
        return self.body[0]

    def empty(self, what: str) -> None:
        """Operations whose answer is an empty body (sendMessage, checkAccountActive, cancelMessage)."""
        if self.body:
            raise MalformedAnswer(f"{what}: answer body must be empty, found {etree.QName(self.body[0]).localname[:60]}")


@contextmanager
def malformed_answers(operation: str) -> Iterator[None]:
    """Reading an answer: a ``ProtocolError`` a parser raises here is the endpoint's fault, so it
    becomes ``MalformedAnswer`` (transient, counted by the breaker), never a permanent failure."""
    try:
        yield
    except ProtocolError as exc:
        raise MalformedAnswer(f"XTA {operation}: {exc}") from exc


def parse_reply(operation: str, status: int, content_type: str, data: bytes) -> Reply:
    """Parse an HTTP answer (plain SOAP or MTOM) or raise the hub error it stands for.

    Only a SOAP 1.2 envelope (or an empty 202 Accepted, the SOAP 1.2 HTTP binding's one-way answer)
    is an answer; anything else the endpoint sends is ``MalformedAnswer`` (transient), even with
    HTTP 200: an empty body, an HTML or text page, a SOAP 1.1 envelope, a truncated MTOM package.
    """
    parts: Mapping[str, memoryview] = {}
    try:
        if mtom.is_multipart(content_type):
            message = mtom.parse_multipart(data, content_type)
            data, parts = message.root, message.parts
        if not data.strip():
            if status == 202:
                return Reply(status, None, [], parts)
            raise ProtocolError("empty answer")
        root = parse_xml(data, _REPLY_LIMITS)
        if root.tag == q(SOAP11, "Envelope"):
            raise ProtocolError("a SOAP 1.1 envelope (XTA 2 speaks SOAP 1.2)")
        header, body = split_envelope(root)
    except (ProtocolError, XmlRejected) as exc:
        if is_transient_http_status(status):
            raise EndpointUnavailable(f"XTA {operation}: HTTP {status} without SOAP fault") from None
        raise MalformedAnswer(f"XTA {operation}: HTTP {status}, not a SOAP 1.2 answer ({exc})") from None
    fault = body.find(_FAULT)
    if fault is not None:
        raise error_from_fault(fault, http_status=status)
    if status not in (200, 202):
        if is_transient_http_status(status):
            raise EndpointUnavailable(f"XTA {operation}: HTTP {status} without SOAP fault")
        raise MalformedAnswer(f"XTA {operation}: HTTP {status} without SOAP fault")
    return Reply(status, header, body_children(body), parts)
