"""SOAP 1.2 envelope pieces of XTA 2.1.1: Author header, WS-Addressing headers, envelope helpers.

MessageMetaData rendering/parsing lives in ``transport.xta.mmd`` (re-exported here), faults in
``transport.xta.faults``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from lxml import etree

from hub.errors import ProtocolError
from transport.xta import mmd
from transport.xta.metadata import Party
from transport.xta.ns import NSMAP_ENVELOPE, OSCIMETA, SOAP12, WSA, WSA_ANONYMOUS, q

MESSAGE_METADATA = mmd.MESSAGE_METADATA
AUTHOR = mmd.AUTHOR
READER = mmd.READER
IDENTIFIER = mmd.IDENTIFIER
ENVELOPE = q(SOAP12, "Envelope")
HEADER = q(SOAP12, "Header")
BODY = q(SOAP12, "Body")
WSA_MESSAGE_ID = q(WSA, "MessageID")

# MessageMetaData and parties live in ``transport.xta.mmd``; re-exported here for callers of soap.
render_party = mmd.render_party
parse_party = mmd.parse_party
render_message_metadata = mmd.render_message_metadata
parse_message_metadata = mmd.parse_message_metadata


def render_author_header(author: Party) -> etree._Element:
    """The oscimeta:Author header of the management and MsgBox operations."""
    return mmd.render_party(AUTHOR, author, nsmap={"oscimeta": OSCIMETA})


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
