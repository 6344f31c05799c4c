"""xta:ContentContainer and xta:GenericContentContainer <-> ``transport.content.Content``.

The container carries every part with its MIME metadata, either base64-encoded inline or, with MTOM,
as an ``xop:Include`` of a binary MIME part (``transport.xta.mtom``); the bytes go through unchanged,
so the receiver gets exactly what the portal published (hashes stay comparable).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Self

from lxml import etree

from hub.errors import ProtocolError
from transport.content import Content, ContentPart
from transport.xta.mtom import Attachments, part_bytes, xop_cid
from transport.xta.ns import NSMAP_XTA, XENC, XTA, q

CONTENT_CONTAINER = q(XTA, "ContentContainer")
GENERIC_CONTENT_CONTAINER = q(XTA, "GenericContentContainer")
MESSAGE = q(XTA, "Message")
ATTACHMENT = q(XTA, "Attachment")
ENCRYPTED_DATA = q(XENC, "EncryptedData")

_WHITESPACE = re.compile(r"\s+")


def _render_part(parent: etree._Element, tag: str, part: ContentPart, attachments: Attachments | None) -> None:
    el = etree.SubElement(parent, tag)
    el.set("contentType", part.content_type)
    if part.filename:
        el.set("filename", part.filename)
    if part.size > 0:  # xs:positiveInteger: an empty part carries no size attribute
        el.set("size", str(part.size))
    if part.description:
        el.set("contentDescription", part.description)
    if attachments is not None:
        attachments.include(el, part.data, content_type=part.content_type or "application/octet-stream")
    else:
        el.text = base64.b64encode(part.data).decode("ascii")


def build_content_container(content: Content, attachments: Attachments | None = None) -> etree._Element:
    """Render the xta:ContentContainer (Message first, then Attachments in order).

    With ``attachments`` every part becomes an ``xop:Include`` of a MIME part holding its raw bytes
    (MTOM; no copy is made), otherwise the bytes are inlined as base64.
    """
    container = etree.Element(CONTENT_CONTAINER, nsmap=NSMAP_XTA)
    _render_part(container, MESSAGE, content.message, attachments)
    for attachment in content.attachments:
        _render_part(container, ATTACHMENT, attachment, attachments)
    return container


@dataclass
class OutgoingContainer:
    """A GenericContentContainer ready to send: the element and (with MTOM) its binary parts."""

    element: etree._Element
    attachments: Attachments = field(default_factory=Attachments)
    content_size: int = 0  # raw bytes of all parts (MsgSize)
    encrypted: bool = False

    @property
    def mtom(self) -> bool:
        return len(self.attachments) > 0

    def close(self) -> None:
        """Release spooled parts (ciphertext files)."""
        self.attachments.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _decode(text: str | None, where: str) -> bytes:
    raw = text or ""
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        pass
    try:  # xs:base64Binary allows whitespace (e.g. lines wrapped at 76 characters)
        return base64.b64decode(_WHITESPACE.sub("", raw), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"ContentContainer: {where} is not valid base64") from exc


def _parse_part(el: etree._Element, where: str, parts: Mapping[str, memoryview] | None) -> ContentPart:
    content_type = el.get("contentType")
    if not content_type:
        raise ProtocolError(f"ContentContainer: {where} has no contentType")
    cid = xop_cid(el)
    if cid is not None and parts is None:
        raise ProtocolError(f"ContentContainer: {where} is an xop:Include outside an MTOM message")
    return ContentPart(
        data=bytes(part_bytes(parts, cid)) if cid is not None and parts is not None else _decode(el.text, where),
        content_type=content_type,
        filename=el.get("filename") or None,
        description=el.get("contentDescription") or None,
    )


def parse_content_container(el: etree._Element, parts: Mapping[str, memoryview] | None = None) -> Content:
    """Read an xta:ContentContainer (or a GenericContentContainer holding one) back into Content.

    ``parts`` are the MIME parts of an MTOM message (``xop:Include`` references are resolved there).

    Raises ``ProtocolError`` when the structure is not a plaintext container (missing Message,
    missing contentType, invalid base64, or encrypted content).
    """
    if el.tag == GENERIC_CONTENT_CONTAINER:
        inner = container_payload(el)
        if inner.tag != CONTENT_CONTAINER:
            raise ProtocolError("GenericContentContainer holds encrypted content, not a ContentContainer")
        el = inner
    if el.tag != CONTENT_CONTAINER:
        raise ProtocolError(f"expected xta:ContentContainer, got {etree.QName(el).localname}")
    children = [c for c in el if isinstance(c.tag, str)]
    if not children or children[0].tag != MESSAGE:
        raise ProtocolError("ContentContainer: the first child must be xta:Message")
    message = _parse_part(children[0], "Message", parts)
    attachments = []
    for i, child in enumerate(children[1:], start=1):
        if child.tag != ATTACHMENT:
            raise ProtocolError(f"ContentContainer: unexpected element {etree.QName(child).localname}")
        attachments.append(_parse_part(child, f"Attachment {i}", parts))
    return Content(message=message, attachments=tuple(attachments))


def generic_container(inner: etree._Element) -> etree._Element:
    """Wrap an xenc:EncryptedData or an xta:ContentContainer in xta:GenericContentContainer.

    The element is moved (not copied) into the new wrapper.
    """
    if inner.tag not in (ENCRYPTED_DATA, CONTENT_CONTAINER):
        raise ValueError("GenericContentContainer holds xenc:EncryptedData or xta:ContentContainer only")
    wrapper = etree.Element(GENERIC_CONTENT_CONTAINER, nsmap=NSMAP_XTA)
    wrapper.append(inner)
    return wrapper


def container_payload(generic: etree._Element) -> etree._Element:
    """The one child of a GenericContentContainer: EncryptedData or ContentContainer."""
    if generic.tag != GENERIC_CONTENT_CONTAINER:
        raise ProtocolError(f"expected xta:GenericContentContainer, got {etree.QName(generic).localname}")
    children = [c for c in generic if isinstance(c.tag, str)]
    if len(children) != 1 or children[0].tag not in (ENCRYPTED_DATA, CONTENT_CONTAINER):
        raise ProtocolError("GenericContentContainer must hold exactly one EncryptedData or ContentContainer")
    return children[0]
