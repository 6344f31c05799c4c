"""How large a portal's message may be, checked at both ends of the broker.

The publisher (``hub publish``, ``publish_envelope``) refuses content above the limit and an XML
message that is not well-formed before anything is sent. The worker trusts none of that and
checks again, each before the expensive step: the AMQP body's size before it is read, the
declared part sizes before any base64 is decoded, the XML with a counting parse (text bounded
by the content limit, not libxml2's 10 MB). How the limits relate (docs/configuration.md, ``[limits]``):

    max_content_bytes   message + attachments, decoded (default 20 MiB; per message type
                        ``message_types[].max_content_bytes``)
      <= the adapter's own limit (xta2: ``max_container_bytes``, 40 MiB, XTA's container
         limit; the signature adds a few KB), or the adapter refuses it (``content_too_large``)
    body limit          4/3 x max_content_bytes (base64) + 1 MiB (JSON): a larger AMQP body is
                        refused unread
      <= RabbitMQ's ``max_message_size`` (128 MiB on 3.x, 16 MiB by default on 4.x), or the
         broker refuses the publish
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from hub.config import HubConfig, LimitsConfig
from hub.errors import ContentTooLarge, XmlRejected
from transport.content import Content
from transport.security.xml import XmlLimits, parse_xml, payload_limits

_DEFAULTS = LimitsConfig()
DEFAULT_MAX_CONTENT_BYTES = _DEFAULTS.max_content_bytes
DEFAULT_MAX_XML_NODES = _DEFAULTS.max_xml_nodes
# JSON around the base64 of the parts: names, types, sizes and hashes, generously.
BODY_OVERHEAD_BYTES = 1024 * 1024


@dataclass(frozen=True)
class SizeLimits:
    """The limits of one hub configuration; ``SizeLimits()`` are the defaults."""

    max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES
    max_xml_nodes: int = DEFAULT_MAX_XML_NODES
    per_message_type: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_config(cls, config: HubConfig) -> SizeLimits:
        overrides = {m.code: m.max_content_bytes for m in config.message_types if m.max_content_bytes is not None}
        return cls(config.limits.max_content_bytes, config.limits.max_xml_nodes, MappingProxyType(overrides))

    def content_limit(self, message_type: str) -> int:
        """Decoded bytes of message + attachments allowed for ``message_type``."""
        return self.per_message_type.get(message_type, self.max_content_bytes)

    def body_limit(self, message_type: str) -> int:
        """The largest AMQP body an envelope within the content limit can need."""
        return 4 * -(-self.content_limit(message_type) // 3) + BODY_OVERHEAD_BYTES

    def xml_limits(self, message_type: str) -> XmlLimits:
        """How the XML message is parsed: nodes counted, text up to the content limit (hardened parser)."""
        return payload_limits(self.content_limit(message_type), self.max_xml_nodes)

    def limit_key(self, message_type: str) -> str:
        """The configuration key the limit of ``message_type`` comes from (for error texts)."""
        if message_type in self.per_message_type:
            return "message_types[].max_content_bytes"
        return "limits.max_content_bytes"


def check_content_size(size: int, parts: int, message_type: str, limits: SizeLimits) -> None:
    """Raise ``ContentTooLarge`` (naming the limit and its key) if ``size`` bytes are too many."""
    limit = limits.content_limit(message_type)
    if size > limit:
        raise ContentTooLarge(
            f"content of {size} bytes ({parts} parts) exceeds the limit of {limit} bytes "
            f"for message type '{message_type}' ({limits.limit_key(message_type)}); not published")


def check_publishable(content: Content, message_type: str, limits: SizeLimits) -> None:
    """The publisher's checks, before anything is sent: the size limit of the message type, then
    a well-formed XML message (encoding as declared, hardened parser). Raises ``ContentTooLarge``
    or ``XmlRejected`` naming the limit or the position, never the content."""
    check_content_size(content.size, len(content.parts), message_type, limits)
    try:
        parse_xml(content.message.data, limits.xml_limits(message_type))
    except XmlRejected as exc:
        raise XmlRejected(f"the XML message is refused by the hardened parser: {exc}; not published") from None
