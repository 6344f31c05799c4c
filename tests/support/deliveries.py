"""The neutral ``Delivery`` (adapters/base.py) as the xta2 tests build it: an XTA reader party and
its encryption certificate become the recipient's xta2 addressing (``xta_reader``), an XTA
``MessageType`` the neutral ``MessageKind``, the XTA author the neutral sender. Tests keep speaking
XTA terms; only this module knows how the hub's seam spells them."""

from __future__ import annotations

from cryptography import x509

from adapters.base import Delivery, MessageKind, Recipient
from adapters.base import Party as NeutralParty
from adapters.xta2 import xta_reader
from transport.content import Content
from transport.xta.metadata import MessageType, Party


def message_kind(message_type: MessageType) -> MessageKind:
    """The XTA message type as the hub's neutral message kind (same code, list and schema)."""
    return MessageKind(message_type.code, message_type.list_uri, message_type.list_version,
                       message_type.payload_schema)


def neutral_party(party: Party) -> NeutralParty:
    """An XTA party as the seam's ``Party`` (the XTA ``type`` attribute is the adapter's business)."""
    return NeutralParty(party.identifier, party.name, party.category)


def xta_delivery(content: Content, *, reader: Party, certificate: x509.Certificate, service: str,
                 message_type: MessageType, message_id: str = "m-1", author: Party | None = None,
                 business_scenario: str | None = None, test: bool = False) -> Delivery:
    """A delivery for ``reader`` encrypted for ``certificate``, as the hub would hand it to xta2."""
    return Delivery(
        message_id=message_id, content=content,
        sender=None if author is None else neutral_party(author),
        recipient=Recipient(reader.identifier, reader.name or reader.identifier, xta_reader(reader, certificate)),
        service=service, message_type=message_kind(message_type), test=test, business_scenario=business_scenario)
