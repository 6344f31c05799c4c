"""The seam between the hub and its delivery profiles (adapters): neutral value types and the
small protocols every profile implements.

An adapter turns a validated application into a delivery over one transport (XTA 2, FIT-Connect,
OSCI 1.2 next). The hub knows none of their wire terms: it hands over a ``Delivery`` made of the
neutral types below, and each adapter maps them (a ``Party`` becomes an XTA Author/Reader, a
``Recipient``'s addressing an XTA reader identity + certificate or a FIT-Connect destination id).
It knows nothing of RabbitMQ either: the hub's worker calls ``deliver`` from a worker thread and
acks, retries or dead-letters according to the outcome.

A profile is a class registered under a name (built-in or the ``hub.adapters`` entry point,
``adapters/registry.py``) that builds itself from its own configuration section
(``from_config``); optional capabilities are protocols the hub discovers by type
(``isinstance(adapter, StatusFollowUp)``), so a new transport is a new package and a config entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from transport.content import Content
from transport.security.keys import SigningIdentity

# --------------------------------------------------------------------------- neutral value types


@dataclass(frozen=True)
class Party:
    """Who sends or receives, in the transport-neutral sense: an identifier (for XTA a DVDV
    ``praefix:kennung``), a display name and a category (e.g. "Ausländerbehörde")."""

    identifier: str
    name: str | None = None
    category: str | None = None


@dataclass(frozen=True)
class MessageKind:
    """The XÖV message type of an application (``[[message_types]]`` in the config): its code
    (e.g. ``xauslaender.antrag.aufenthaltstitel.1101``), the code list it belongs to and the payload
    schema's target namespace. Adapters map it to their wire terms (XTA MessageType, FIT-Connect
    ``contentStructure.data.submissionSchema``)."""

    code: str
    list_uri: str | None = None
    list_version: str | None = None
    payload_schema: str | None = None


@dataclass(frozen=True)
class Recipient:
    """The receiving authority as the directory knows it. ``addressing`` is whatever the
    recipient's adapter made of the authority's adapter-specific keys at start-up
    (``Adapter.addressing``): an XTA reader identity with its encryption certificate, a FIT-Connect
    destination id. The hub passes it through untouched."""

    id: str  # the directory's key: the authority's Behördenkennung (praefix:kennung)
    name: str
    addressing: Any


@dataclass(frozen=True)
class Delivery:
    """One application to deliver: ``message_id`` is the hub's id (the payload's nachrichtenUUID).

    ``sender``: the adapter's configured author (``[adapters.<name>].author``), if any.
    ``service``: the service the application is for (an XTA service URN, a FIT-Connect leika
    service identifier), the envelope's or else the adapter's default. ``business_scenario``: the
    envelope's business-scenario code when the portal named one (XTA reads it, others may not)."""

    message_id: str
    content: Content
    sender: Party | None
    recipient: Recipient
    service: str
    message_type: MessageKind
    test: bool = False
    business_scenario: str | None = None


@dataclass(frozen=True)
class DeliveryReceipt:
    """What the endpoint accepted: the transport's message id (XTA MessageID, FIT-Connect
    submission id).

    ``accepted_on_resend``: the endpoint said that an earlier attempt with this id was accepted
    (XTA "id already used" to a re-send; a FIT-Connect submission already submitted); this is its
    first confirmation (the hub follows it up like any delivery). ``duplicate``: the hub's ledger
    already recorded the application as delivered (a replay or re-publish), so nothing new was
    confirmed now."""

    transport_message_id: str
    duplicate: bool = False
    accepted_on_resend: bool = False


# --------------------------------------------------------------------------- what a profile gets


class IdentitySource(Protocol):
    """Where an adapter gets its signing identity: a key-store handle (reloads renewed files)."""

    def get(self) -> SigningIdentity: ...


class Loaded(Protocol):
    """A cached key or certificate list whose ``get()`` returns the current value (a KeyStore handle)."""

    def get(self) -> Any: ...


class KeySource(Protocol):
    """Where a profile loads keys and certificates once, as reloading handles (``hub.keystore.KeyStore``
    fits). Errors are ``HubError``s (``KeyStoreError``); the caller names the config key."""

    def private_key_handle(self, path: Path, password_env: str | None = None, *,
                           password_file: Path | None = None) -> Loaded: ...
    def certificates_handle(self, path: Path, password_env: str | None = None, *,
                            password_file: Path | None = None) -> Loaded: ...
    def identity_handle(self, key: Path, cert: Path | None = None, password_env: str | None = None, *,
                        password_file: Path | None = None) -> IdentitySource: ...


@dataclass(frozen=True)
class AdapterContext:
    """What the hub gives every profile besides its own configuration section.

    ``base_dir`` resolves relative paths (the config file's folder); ``concurrency`` is the number
    of threads that will call ``deliver`` at once (size connection pools by it); ``timeout`` bounds
    every endpoint call; ``sender`` is the
    adapter's configured author, if any; ``environ`` is where secrets named by ``*_env`` keys are
    read (``os.environ`` in production, a dict in tests)."""

    keys: KeySource
    base_dir: Path | None = None
    concurrency: int = 1
    timeout: float = 30.0  # seconds per endpoint call ([adapters.<name>].timeout)
    sender: Party | None = None
    environ: Mapping[str, str] | None = None


# --------------------------------------------------------------------------- the profile


class Adapter(Protocol):
    """A delivery profile bound to one configured endpoint. Implementations must be thread-safe:
    the worker calls ``prepare``, ``new_transport_id`` and ``deliver`` from several threads at once.

    The order per application: ``prepare`` -> ``new_transport_id`` (the hub records the id in its
    ledger) -> ``deliver`` (again with the same id, ``resend=True``, on every later attempt).
    Every failure is a ``HubError`` whose ``transient`` flag says whether to retry."""

    name: str
    settings_model: ClassVar[type[BaseModel]]  # the profile's keys of [adapters.<name>]
    addressing_model: ClassVar[type[BaseModel]]  # its keys of an [[authorities]] entry

    @classmethod
    def from_config(cls, name: str, section: Mapping[str, Any], context: AdapterContext) -> Adapter:
        """Build the profile from ``[adapters.<name>]`` minus the hub's own keys (``section``),
        validated by ``settings_model``: unknown keys and wrong types raise ``ConfigError`` naming
        ``adapters.<name>.<key>``. The hub validates every section by the same model when it loads
        the configuration, so a bad key fails every command at start, not only the worker's."""
        ...

    def addressing(self, authority_id: str, name: str, section: Mapping[str, Any]) -> Any:
        """Validate and load an authority's adapter-specific keys (``[[authorities]]`` entries minus
        ``id``, ``name``, ``adapter``) at start-up; the result becomes ``Recipient.addressing``.
        Raise ``ConfigError`` naming the key (the caller prefixes the authority)."""
        ...

    def check(self) -> None:
        """Raise a ``HubError`` if the endpoint cannot take deliveries (readiness)."""

    def prepare(self, delivery: Delivery) -> None:
        """Checks that can refuse a delivery before a transport id is allocated (size limit,
        the recipient's service availability); raise a ``HubError``."""

    def new_transport_id(self, delivery: Delivery) -> str:
        """Allocate the transport's message id (XTA createMessageId, FIT-Connect create submission);
        the hub records it before ``deliver`` so that every later attempt re-uses it."""
        ...

    def deliver(self, delivery: Delivery, transport_message_id: str, *, resend: bool = False,
                ready: Callable[[], None] | None = None) -> DeliveryReceipt:
        """Deliver under ``transport_message_id`` or raise a ``HubError``. ``resend``: the id was
        used in an earlier attempt that may have been accepted; the endpoint saying so means success
        (``accepted_on_resend``). ``ready``: called once the content is sealed (signed, encrypted)
        and before anything is sent; if it raises, nothing is sent and the error propagates (the hub
        waits there for the id's record to be durable, which it writes while the adapter seals)."""
        ...

    def close(self) -> None:
        """Release connections."""


# --------------------------------------------------------------------------- optional capabilities


class StatusReport(Protocol):
    """One answer of a status follow-up: ``status`` 0 open, 1 green (accepted), 2 yellow (accepted
    with warnings), 3 red (refused or lost); ``final`` once it will not change; ``detail()`` the
    JSON-ready summary for the status event (codes and reasons only, never payload)."""

    @property
    def status(self) -> int: ...
    @property
    def final(self) -> bool: ...
    def detail(self) -> dict[str, Any]: ...


@runtime_checkable
class StatusFollowUp(Protocol):
    """Capability: the transport reports what became of a delivery later (XTA transport reports,
    the FIT-Connect event log). The worker polls it from its report scheduler and publishes
    ``transport_report`` status events."""

    def transport_report(self, transport_message_id: str) -> StatusReport:
        """The current state of a delivered message; a transient ``HubError`` for endpoint trouble."""
        ...


@dataclass(frozen=True)
class FetchedReply:
    """One message from the portal's own mailbox (a reply of an authority), fetched but not yet
    committed: it stays in the mailbox until ``ReplyMailbox.commit``.

    ``content`` is the decrypted, signature-verified plaintext (message + attachments), or None
    when ``problem`` says why it could not be opened (``SignatureInvalid``, ``DecryptionFailed``,
    ``ProtocolError``, ...): such a reply is parked with that reason, never dropped. ``raw`` is what
    was fetched, as one self-contained document (encrypted content stays encrypted), for
    parking. ``transport_message_id`` is stable however often the reply is fetched."""

    transport_message_id: str
    author: str  # the authority's identifier (praefix:kennung)
    message_type: str  # the message type code, e.g. OZG.Statusmeldung.130104
    content: Content | None
    problem: Exception | None
    raw: bytes
    handle: object = None  # what ``commit`` needs (e.g. the MsgBoxRequestID)


@runtime_checkable
class ReplyMailbox(Protocol):
    """Capability of a mailbox profile (``[mailboxes.<portal>]``, entry point ``hub.mailboxes``):
    read the portal's own mailbox (the return channel). The caller commits each reply only after
    it is safely stored elsewhere."""

    def pending(self, max_items: int) -> list[str]:
        """Transport ids of replies waiting in the mailbox (at most ``max_items``)."""
        ...

    def fetch(self, transport_message_id: str) -> FetchedReply | None:
        """Fetch, decrypt and verify one reply; None if it has left the mailbox meanwhile.
        Raises a transient ``HubError`` only for endpoint trouble (retry later)."""
        ...

    def commit(self, reply: FetchedReply) -> None:
        """Tell the endpoint the reply is fetched (XTA ``close``): it leaves the mailbox."""

    def close(self) -> None:
        """Release connections."""
