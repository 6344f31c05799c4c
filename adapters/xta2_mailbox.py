"""The return channel of profile "xta2": the portal's own XTA account (its MsgBox), read for the
authorities' replies, implementing ``adapters.base.ReplyMailbox``.

Reading order per XTA 2.1.1: getStatusList (``pending``) -> getMessage (``fetch``) -> close
(``commit``); a reply stays in the mailbox, and is handed out again, until it is closed. ``fetch``
opens the reply the way the XTA reader of an authority opens an application: decrypt the
GenericContentContainer with the portal's key (AES-GCM + RSA-OAEP; MTOM or inline ciphertext),
parse the ContentContainer, verify the detached signature against the pinned signer certificates,
and hand out the content without the signature part.

What is wrong with a *reply* never raises: a signature that does not verify or whose signer is not
trusted, content that cannot be decrypted for the portal's key, a refused algorithm, plaintext
content (``require_encryption``), or a decrypted container that breaks the protocol come back as
``FetchedReply(content=None, problem=<the error>)`` so the caller parks the reply with its reason.
What is wrong with the *endpoint* raises: connection errors, timeouts and nonsensical answers
(``EndpointUnavailable``/``MalformedAnswer``, transient) and XTA faults (``XtaFault``: 9030-9032
transient, the rest e.g. a locked account permanent). Every option is documented in docs/xta.md.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509

from adapters.base import FetchedReply
from adapters.registry import KeySource, Loaded, MailboxSettings
from adapters.xta2 import XtaConnectionOptions
from hub.errors import (
    ConfigError,
    MalformedAnswer,
    ProtocolError,
    SecurityError,
    XmlRejected,
    XtaFault,
)
from transport.content import Content
from transport.security.encryption import decrypt_xml
from transport.security.signature import verify_content
from transport.security.xml import XmlLimits, parse_xml, serialize
from transport.xta.client import XtaClient, XtaEndpoint
from transport.xta.container import (
    ENCRYPTED_DATA,
    container_payload,
    parse_content_container,
)
from transport.xta.e2e import cipher_octets, decrypt_octets_for
from transport.xta.metadata import Party
from transport.xta.msgbox import FetchedMessage, MsgBoxClient
from transport.xta.mtom import inline_xop

log = logging.getLogger(__name__)

# errorCode 9070 (InvalidMessageID): "MessageID für den Account nicht bekannt" - the reply left the
# mailbox between getStatusList and getMessage (fetched and closed by another poller)
INVALID_MESSAGE_ID = "9070"
_MIB = 1024 * 1024
# The decrypted ContentContainer: up to 40 MiB of content as base64 (x4/3), with room to spare.
_PLAINTEXT_LIMITS = XmlLimits(max_bytes=81 * _MIB, max_text_length=81 * _MIB)
_SHOWN = 100  # characters of far-side text (ids, identifiers) that go into a log line or an error text


def shown(text: object, limit: int = _SHOWN) -> str:
    """Far-side text (a MessageID, an author identifier) fit for a log line or an error text:
    at most ``limit`` characters, anything not printable (newlines, controls) as '?'."""
    value = text if isinstance(text, str) else repr(text)
    clipped = "".join(c if c.isprintable() else "?" for c in value[:limit])
    return clipped + ("..." if len(value) > limit else "")


class Xta2MailboxOptions(XtaConnectionOptions):
    """``[mailboxes.<portal>.options]`` of profile "xta2" (strict types, unknown keys refused)."""

    what: ClassVar[str] = "xta2 mailbox option(s)"
    require_encryption: bool = True


class _Fixed:
    """A value that never changes (tests, tools); the hub passes key-store handles that reload."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def get(self) -> Any:
        return self._value


class _Certificates:
    """The trusted signers: one key-store handle per configured file, concatenated on each use."""

    def __init__(self, handles: Sequence[Loaded]) -> None:
        self._handles = tuple(handles)

    def get(self) -> list[x509.Certificate]:
        return [cert for handle in self._handles for cert in handle.get()]


class Xta2Mailbox:
    """One portal's XTA mailbox (reader = the portal's account). Not meant to be shared by threads
    that fetch the same reply; the client itself is thread-safe."""

    def __init__(self, portal: str, *, endpoint: XtaEndpoint, reader: Party, decryption_key: Any,
                 trusted: Sequence[x509.Certificate] | Loaded, options: Mapping[str, Any] | None = None,
                 base_dir: Path | None = None) -> None:
        """``decryption_key``: the portal's private key, or a handle whose ``get()`` returns it;
        ``trusted``: the signer certificates replies must be signed with (or a handle of them)."""
        self.portal = portal
        self.reader = reader
        self._options = Xta2MailboxOptions.from_mapping(options or {}, base_dir, key=f"mailboxes.{portal}.options")
        tls = self._options.tls()
        if tls is not None and endpoint.tls is None:
            endpoint = replace(endpoint, tls=tls)
        self._key: Loaded = decryption_key if hasattr(decryption_key, "get") else _Fixed(decryption_key)
        self._trusted: Loaded = _Fixed(list(trusted)) if isinstance(trusted, Sequence) else trusted
        self._client = XtaClient(endpoint, wsdl=self._options.wsdl)
        self._msgbox = MsgBoxClient(self._client)

    @classmethod
    def from_config(cls, portal: str, mailbox: MailboxSettings, keys: KeySource,
                    base_dir: Path | None = None) -> Xta2Mailbox:
        """Build from ``[mailboxes.<portal>]``: key and certificates are loaded now (a bad file fails
        start-up with a ConfigError naming the key) and reloaded by the key store when renewed."""
        if not mailbox.trusted_signers:
            raise ConfigError(f"mailboxes.{portal}.trusted_signers: no certificate configured, every reply "
                              "would be parked as signature_invalid")
        try:
            key = keys.private_key_handle(mailbox.decryption_key, mailbox.decryption_key_password_env)
        except ConfigError:
            raise
        except SecurityError as exc:  # KeyStoreError
            raise ConfigError(f"mailboxes.{portal}.decryption_key: {exc}") from None
        try:
            trusted = _Certificates([keys.certificates_handle(p) for p in mailbox.trusted_signers])
        except ConfigError:
            raise
        except SecurityError as exc:
            raise ConfigError(f"mailboxes.{portal}.trusted_signers: {exc}") from None
        account = mailbox.account
        return cls(portal, endpoint=XtaEndpoint(mailbox.endpoint, timeout=mailbox.timeout),
                   reader=Party(account.identifier, account.name, account.category), decryption_key=key,
                   trusted=trusted, options=mailbox.options, base_dir=base_dir)

    @property
    def options(self) -> Xta2MailboxOptions:
        return self._options

    @property
    def client(self) -> XtaClient:
        return self._client

    # ------------------------------------------------------------------ ReplyMailbox

    def pending(self, max_items: int) -> list[str]:
        """getStatusList: the MessageIDs of up to ``max_items`` replies waiting in the mailbox. The
        listing's iterator is left to expire on the server: ``close`` is for fetched messages."""
        listing = self._msgbox.get_status_list(self.reader, max_items=max_items)
        return [entry.message_id for entry in listing.entries][:max_items]

    def fetch(self, transport_message_id: str) -> FetchedReply | None:
        """getMessage, then decrypt and verify; None when the reply is no longer in the mailbox."""
        try:
            fetched = self._msgbox.get_message(self.reader, transport_message_id)
        except XtaFault as fault:
            if fault.code == INVALID_MESSAGE_ID:
                return None
            raise
        if fetched is None:
            return None
        metadata = fetched.metadata
        if metadata.message_id != transport_message_id:
            raise MalformedAnswer(f"XTA getMessage: asked for {shown(transport_message_id)}, "
                                  f"handed out {shown(metadata.message_id)}")
        raw = _raw(fetched)
        content: Content | None = None
        problem: Exception | None = None
        try:
            content = self._open(fetched)
        except (SecurityError, ProtocolError, XmlRejected) as exc:
            problem = exc
            log.warning("reply %s from %s in mailbox %s cannot be opened: %s (%s)", shown(transport_message_id),
                        shown(metadata.author.identifier), self.portal, type(exc).__name__, shown(exc.reason))
        return FetchedReply(transport_message_id=transport_message_id, author=metadata.author.identifier,
                            message_type=metadata.message_type.code, content=content, problem=problem, raw=raw,
                            handle=fetched.request_id)

    def commit(self, reply: FetchedReply) -> None:
        """close: the reply (only this one) leaves the mailbox. A failure here only means that it
        will be handed out again (at-least-once; the portal drops it by its stable message id)."""
        if not isinstance(reply.handle, str) or not reply.handle:
            raise ValueError("commit needs the FetchedReply returned by fetch (handle = MsgBoxRequestID)")
        self._msgbox.close(self.reader, reply.handle, last_received=[reply.transport_message_id])

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ opening a reply

    def _open(self, fetched: FetchedMessage) -> Content:
        """Decrypt (if encrypted), parse and verify; raises SecurityError/ProtocolError/XmlRejected."""
        payload = container_payload(fetched.container)
        parts = fetched.parts or None
        if payload.tag == ENCRYPTED_DATA:
            key = self._key.get()
            cipher = cipher_octets(payload, parts)
            plaintext = decrypt_xml(payload, key) if cipher is None else decrypt_octets_for(payload, cipher, key)
            content = parse_content_container(parse_xml(plaintext, _PLAINTEXT_LIMITS))
        elif self._options.require_encryption:
            raise SecurityError("reply content is not encrypted (option require_encryption)",
                                reason="content_not_encrypted")
        else:
            content = parse_content_container(payload, parts)
        return verify_content(content, self._trusted.get()).content


def _raw(fetched: FetchedMessage) -> bytes:
    """The GenericContentContainer as one XML document, XOP parts inlined as base64 (encrypted stays
    encrypted): what is parked when the reply cannot be opened. A reference to a MIME part the answer
    does not hold is the endpoint's fault (``MalformedAnswer``, transient)."""
    container = copy.deepcopy(fetched.container)
    try:
        inline_xop(container, fetched.parts)
    except ProtocolError as exc:
        raise MalformedAnswer(f"XTA getMessage: {shown(str(exc), 2 * _SHOWN)}") from exc
    return serialize(container)
