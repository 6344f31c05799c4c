"""The one small interface every delivery profile implements.

An adapter turns a validated application into a delivery at one kind of endpoint (XTA 2 today,
OSCI 1.2 / FIT-Connect later). It knows nothing of RabbitMQ: the hub's worker calls ``deliver``
from a worker thread and acks, retries or dead-letters according to the outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509

from transport.content import Content
from transport.security.keys import SigningIdentity
from transport.xta.metadata import BusinessScenario, MessageType, Party


@dataclass(frozen=True)
class Delivery:
    """One application to deliver: ``message_id`` is the hub's id (the payload's nachrichtenUUID)."""

    message_id: str
    content: Content
    author: Party
    reader: Party
    reader_certificate: x509.Certificate
    service: str
    message_type: MessageType
    business_scenario: BusinessScenario
    test: bool = False


@dataclass(frozen=True)
class DeliveryReceipt:
    """What the endpoint accepted: the transport's message id (XTA MessageID).

    ``accepted_on_resend``: the endpoint answered "id already used" to a re-send, i.e. an earlier
    attempt of ours whose answer was lost or garbled was accepted; this is its first confirmation
    (the hub follows it up like any delivery). ``duplicate``: the hub's ledger already recorded the
    application as delivered (a replay or re-publish), so nothing new was confirmed now."""

    transport_message_id: str
    duplicate: bool = False
    accepted_on_resend: bool = False


class IdentitySource(Protocol):
    """Where an adapter gets its signing identity: a key-store handle (reloads renewed files)."""

    def get(self) -> SigningIdentity: ...


class Adapter(Protocol):
    """A delivery profile bound to one configured endpoint. Implementations must be thread-safe:
    the worker calls ``deliver`` from several threads at once."""

    name: str

    def check(self) -> None:
        """Raise a ``HubError`` if the endpoint cannot take deliveries (readiness)."""

    def prepare(self, delivery: Delivery) -> None:
        """Checks that can refuse a delivery before a transport id is allocated (size limit,
        the reader's service availability); raise a ``HubError``. Called before ``new_transport_id``."""

    def new_transport_id(self) -> str:
        """Allocate the transport's message id (XTA createMessageId); the hub records it before
        ``deliver`` so that every later attempt re-uses it."""

    def deliver(self, delivery: Delivery, transport_message_id: str, *, resend: bool = False,
                ready: Callable[[], None] | None = None) -> DeliveryReceipt:
        """Deliver under ``transport_message_id`` or raise a ``HubError`` whose ``transient`` flag
        says whether to retry. ``resend``: the id was used in an earlier attempt that may have
        been accepted; an endpoint's "id already used" then means success (``accepted_on_resend``).
        ``ready``: called once the content is sealed (signed, encrypted) and before anything is
        sent; if it raises, nothing is sent and the error propagates (the hub waits there for the
        id's record to be durable, which it writes while the adapter seals)."""

    def close(self) -> None:
        """Release connections."""


@dataclass(frozen=True)
class FetchedReply:
    """One message from the portal's own mailbox (a reply of an authority), fetched but not yet
    committed: it stays in the mailbox until ``ReplyMailbox.commit``.

    ``content`` is the decrypted, signature-verified plaintext (message + attachments), or None
    when ``problem`` says why it could not be opened (``SignatureInvalid``, ``DecryptionFailed``,
    ``ProtocolError``, ...): such a reply is parked with that reason, never dropped. ``raw`` is what
    was fetched, as one self-contained XML document (encrypted content stays encrypted), for
    parking. ``transport_message_id`` is stable however often the reply is fetched."""

    transport_message_id: str
    author: str  # the authority's identifier (praefix:kennung)
    message_type: str  # the MessageType code of the metadata, e.g. OZG.Statusmeldung.130104
    content: Content | None
    problem: Exception | None
    raw: bytes
    handle: object = None  # what ``commit`` needs (e.g. the MsgBoxRequestID)


class ReplyMailbox(Protocol):
    """Optional capability of a profile: read the portal's own mailbox (the return channel).
    The caller commits each reply only after it is safely stored elsewhere."""

    def pending(self, max_items: int) -> list[str]:
        """Transport ids of replies waiting in the mailbox (at most ``max_items``)."""

    def fetch(self, transport_message_id: str) -> FetchedReply | None:
        """Fetch, decrypt and verify one reply; None if it has left the mailbox meanwhile.
        Raises a transient ``HubError`` only for endpoint trouble (retry later)."""

    def commit(self, reply: FetchedReply) -> None:
        """Tell the endpoint the reply is fetched (XTA ``close``): it leaves the mailbox."""

    def close(self) -> None:
        """Release connections."""
