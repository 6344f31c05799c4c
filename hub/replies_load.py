"""Loading a portal's XTA mailbox with authorities' replies (tests, the demo, manual checks).

An authority's Fachverfahren answers an application by *sending* an XTA message to the portal's
own account: createMessageId -> sendMessage with author = the authority, reader = the portal,
content signed with the authority's key and encrypted for the portal's certificate. That is what
``send_replies`` does, with the hub's own ``Xta2Adapter`` (so the replies have exactly the shape
the hub's deliveries have). The XTA server then lists and hands out each reply in the portal's
mailbox once its transport report is final green/yellow (the simulator: ``report_delay`` after
acceptance; a reader that does not offer the service in ``services`` ends red and never sees it).

Bad replies for the parking paths: ``ReplyToSend.signer`` signs one reply with another key (e.g. a
key whose certificate the portal does not trust: *forged*), ``ReplyToSend.encrypt_for`` encrypts it
for another certificate (*undecryptable* for the portal), ``encrypt=False`` sends it in plaintext.
A simulator that holds no key for the portal stores such content as it is; one that does needs
``accept_unverified`` (else it refuses it with 9052, as a reader's server would).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from adapters.base import Delivery, MessageKind, Recipient
from adapters.xta2 import Xta2Adapter, xta_reader
from hub.samples import make_ozg_reply
from transport.content import Content, ContentPart
from transport.security.keys import SigningIdentity
from transport.xta.client import XtaEndpoint
from transport.xta.metadata import BusinessScenario, Party
from transport.xta.tls import TlsSettings

SERVICE = "xauslaender1211OZGPORTALABH"
BUSINESS_SCENARIO = BusinessScenario("XAUSLAENDER_DATA")
MESSAGE_TYPE_LIST_URI = "urn:xoev-de:xauslaender:codeliste:nachrichtentyp"
MESSAGE_TYPE_LIST_VERSION = "26.11"
PAYLOAD_SCHEMA = "http://www.osci.de/xauslaender2611"


@dataclass(frozen=True)
class ReplyToSend:
    """One reply: its message type code (MessageMetaData Qualifier/MessageType), the XML message and
    attachments. ``signer``/``encrypt_for`` override the sender's key / the portal's certificate for
    this reply only (forged / undecryptable replies); ``encrypt=False`` sends it in plaintext."""

    message_type: str
    message: bytes = field(repr=False)
    attachments: tuple[ContentPart, ...] = field(default=(), repr=False)
    filename: str = "nachricht.xml"
    reply_uuid: str | None = None  # the nachrichtenUUID, when known (for the caller's bookkeeping)
    signer: SigningIdentity | None = field(default=None, repr=False)
    encrypt_for: x509.Certificate | None = field(default=None, repr=False)
    encrypt: bool = True

    @property
    def content(self) -> Content:
        return Content(ContentPart(self.message, "application/xml", self.filename), self.attachments)


def sample_reply(message_type: str, *, portal_party: Party, authority_party: Party, antragsidentifikation: str,
                 seed: int, signer: SigningIdentity | None = None, encrypt_for: x509.Certificate | None = None,
                 encrypt: bool = True) -> ReplyToSend:
    """A schema-valid sample reply (``hub.samples.make_ozg_reply``) ready for ``send_replies``."""
    xml, reply_uuid = make_ozg_reply(message_type, reader=portal_party, author=authority_party,
                                     antragsidentifikation=antragsidentifikation, seed=seed)
    return ReplyToSend(message_type, xml, reply_uuid=reply_uuid, signer=signer, encrypt_for=encrypt_for,
                       encrypt=encrypt)


def send_replies(endpoint_url: str, replies: Iterable[ReplyToSend], *, authority_identity: SigningIdentity,
                 authority_party: Party, portal_party: Party, portal_certificate: x509.Certificate,
                 service: str = SERVICE, business_scenario: BusinessScenario = BUSINESS_SCENARIO,
                 timeout: float = 30.0, tls: TlsSettings | None = None, mtom: bool = True,
                 test: bool = True) -> list[str]:
    """Send each reply from ``authority_party`` to ``portal_party``'s mailbox; the XTA MessageIDs in order.

    Signed with ``authority_identity`` (detached XML-DSig, as the hub signs), encrypted for
    ``portal_certificate`` (AES-256-GCM + RSA-OAEP), MTOM unless ``mtom=False``. No lookupService:
    the certificate given is the one used. Raises the adapter's ``HubError`` when a send fails.
    """
    senders: dict[tuple[bytes, bool], Xta2Adapter] = {}
    endpoint = XtaEndpoint(endpoint_url, timeout=timeout, tls=tls)

    def sender(identity: SigningIdentity, encrypt: bool) -> Xta2Adapter:
        key = (identity.certificate.fingerprint(hashes.SHA256()), encrypt)
        if key not in senders:
            options = {"lookup_service": False, "mtom": mtom, "encrypt": encrypt}
            senders[key] = Xta2Adapter(f"reply-sender-{len(senders)}", endpoint=endpoint, author=authority_party,
                                       identity=identity, options=options, business_scenario=business_scenario)
        return senders[key]

    ids: list[str] = []
    try:
        for reply in replies:
            adapter = sender(reply.signer or authority_identity, reply.encrypt)
            reader = xta_reader(portal_party, reply.encrypt_for or portal_certificate)
            delivery = Delivery(
                message_id=reply.reply_uuid or str(uuid.uuid4()), content=reply.content, sender=None,
                recipient=Recipient(portal_party.identifier, portal_party.name or portal_party.identifier, reader),
                service=service,
                message_type=MessageKind(reply.message_type, MESSAGE_TYPE_LIST_URI, MESSAGE_TYPE_LIST_VERSION,
                                         PAYLOAD_SCHEMA),
                test=test)
            transport_id = adapter.new_transport_id(delivery)
            adapter.deliver(delivery, transport_id)
            ids.append(transport_id)
    finally:
        for adapter in senders.values():
            adapter.close()
    return ids
