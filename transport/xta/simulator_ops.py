"""The XTA operations the simulator implements, on parsed SOAP headers/bodies.

Fault-code choices (list ``urn:de:xta:webservice:codeliste:fehlernummer``, restricted to the
exceptions XTA.wsdl declares for each operation):

- unknown author (``accounts`` set, author not in it, or no Author at all): PermissionDenied 9012.
- sendMessage without MessageMetaData header or without GenericContentContainer: ParameterIsNotValid
  9020; MessageMetaData or container structurally broken: 9022; MessageID not a URI: 9021.
- MessageID not issued by this server for this author: ParameterIsNotValid 9022 (invalid parameter
  combination). The code list's own "MessageID unknown for the account" (9070) belongs to
  InvalidMessageIDException, which XTA.wsdl does not declare for sendMessage, so a conforming
  sendMessage cannot raise it.
- MessageID already used by an accepted message: ParameterIsNotValid 9024 (the hub reads it as
  "already delivered"). The same ID still being processed by a concurrent call: XTAWSTechnicalProblem
  9030 (transient), because answering 9024 before the first call succeeded could lose the message.
- container above ``max_container_bytes``: ParameterIsNotValid 9023.
- end-to-end security of the content fails (cannot decrypt with the reader's key, refused algorithm,
  decrypted data is not a ContentContainer, signature missing/invalid/untrusted):
  MessageSchemaViolation 9052 "message violates the service profile" -- the service profile is what
  prescribes encryption for the reader and the author's signature; 9050/9051 are about the
  Fachnachricht's schema/encoding, which the simulator does not check.
- a part containing the EICAR test signature: MessageVirusDetection 9060 (to test that path).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lxml import etree

from hub.errors import ProtocolError, SecurityError, XmlRejected
from transport.content import Content
from transport.xta.container import (
    CONTENT_CONTAINER,
    ENCRYPTED_DATA,
    GENERIC_CONTENT_CONTAINER,
    container_payload,
    parse_content_container,
)
from transport.xta.metadata import MessageMetaData, Party
from transport.xta.ns import WSA, XENC, q
from transport.xta.simulator_store import IN_FLIGHT, USED, MessageIdRegistry, MessageStore, StoredMessage, StoredPart
from transport.xta.soap import AUTHOR, MESSAGE_METADATA, body_children, parse_message_metadata, parse_party

EICAR_MARKER = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"
ENCRYPTED_CONTENT_TYPE = "application/xenc+xml"


class SimulatedFault(Exception):
    """Raised by an operation: the simulator answers with this XTA fault."""

    def __init__(self, code: str, reason: str, *, exception_type: str | None = None,
                 subcode: tuple[str, str] | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.exception_type = exception_type
        self.subcode = subcode


def parse_request_xml(data: bytes) -> etree._Element:
    """Parse with the project's hardened parser (no DTDs, no entities, size limits)."""
    from transport.security.xml import parse_xml  # written in parallel; imported on first use

    return parse_xml(data)


@dataclass(frozen=True)
class OperationPolicy:
    """The parts of ``SimulatorConfig`` the operations need."""

    reader_keys: Mapping[str, Any]
    trusted_signers: Sequence[Any]
    accounts: frozenset[str] | None
    max_container_bytes: int


class XtaOperations:
    """checkAccountActive, createMessageId, sendMessage against a registry and a store."""

    def __init__(self, policy: OperationPolicy, registry: MessageIdRegistry, store: MessageStore) -> None:
        self.policy = policy
        self.registry = registry
        self.store = store

    # ------------------------------------------------------------------ management port

    def check_account_active(self, header: etree._Element | None, body: etree._Element) -> list[etree._Element]:
        self._authorize(self._author_header(header))
        return []

    def create_message_id(self, header: etree._Element | None, body: etree._Element) -> list[etree._Element]:
        author = self._authorize(self._author_header(header))
        el = etree.Element(q(WSA, "MessageID"), nsmap={"wsa": WSA})
        el.text = self.registry.create(author.identifier if author else "")
        return [el]

    def _author_header(self, header: etree._Element | None) -> Party | None:
        el = header.find(AUTHOR) if header is not None else None
        if el is None:
            return None
        try:
            return parse_party(el)
        except ProtocolError as exc:
            raise SimulatedFault("9022", f"Author header: {exc}") from None

    def _authorize(self, author: Party | None) -> Party | None:
        accounts = self.policy.accounts
        if accounts is not None and (author is None or author.identifier not in accounts):
            raise SimulatedFault("9012", "Account nicht vorhanden"
                                 + (f": {author.identifier}" if author else " (kein Author angegeben)"))
        return author

    # ------------------------------------------------------------------ send port

    def send_message(self, header: etree._Element | None, body: etree._Element) -> list[etree._Element]:
        mmd_el = header.find(MESSAGE_METADATA) if header is not None else None
        if mmd_el is None:
            raise SimulatedFault("9020", "MessageMetaData header missing")
        try:
            md = parse_message_metadata(mmd_el)
        except ProtocolError as exc:
            raise SimulatedFault("9022", str(exc)) from None
        self._authorize(md.author)
        if ":" not in md.message_id or any(ch.isspace() for ch in md.message_id):
            raise SimulatedFault("9021", "MessageID is not a URI")
        containers = body_children(body)
        if not containers:
            raise SimulatedFault("9020", "Body holds no GenericContentContainer")
        if len(containers) != 1 or containers[0].tag != GENERIC_CONTENT_CONTAINER:
            raise SimulatedFault("9022", "Body must hold exactly one xta:GenericContentContainer")
        refused = self.registry.reserve(md.message_id, md.author.identifier)
        if refused == USED:
            raise SimulatedFault("9024", "MessageID ist bereits vergeben (message already accepted)")
        if refused == IN_FLIGHT:
            raise SimulatedFault("9030", "a message with this MessageID is being processed; retry later")
        if refused is not None:
            raise SimulatedFault("9022", "MessageID was not issued by this server for this author")
        try:
            self.store.add(self._accept(md, containers[0]))
        except BaseException:
            self.registry.release(md.message_id)
            raise
        self.registry.commit(md.message_id)
        return []

    def _accept(self, md: MessageMetaData, generic: etree._Element) -> StoredMessage:
        try:
            payload = container_payload(generic)
        except ProtocolError as exc:
            raise SimulatedFault("9022", str(exc)) from None
        encrypted, verified, signer = False, False, None
        if payload.tag == ENCRYPTED_DATA:
            self._check_size(_cipher_size(payload))
            key = self.policy.reader_keys.get(md.reader.identifier)
            if key is None:  # no key for this reader: keep the ciphertext as received
                blob = etree.tostring(payload, encoding="utf-8")
                parts = (StoredPart(data=blob, content_type=ENCRYPTED_CONTENT_TYPE, filename="content.xenc.xml"),)
                return self._stored(md, parts, encrypted=True)
            content = self._decrypt(payload, key)
        else:
            assert payload.tag == CONTENT_CONTAINER
            try:
                content = parse_content_container(payload)
            except ProtocolError as exc:
                raise SimulatedFault("9022", str(exc)) from None
        self._check_size(content.size)
        if self.policy.trusted_signers:
            content, signer = self._verify(content)
            verified = True
        if any(EICAR_MARKER in part.data for part in content.parts):
            raise SimulatedFault("9060", "Es wurde schadhafter Code ermittelt (EICAR test signature)")
        parts = tuple(StoredPart(data=p.data, content_type=p.content_type, filename=p.filename,
                                 description=p.description) for p in content.parts)
        return self._stored(md, parts, encrypted=encrypted, verified=verified, signer=signer)

    def _check_size(self, size: int) -> None:
        if size > self.policy.max_container_bytes:
            raise SimulatedFault("9023", f"container of {size} bytes exceeds the limit of "
                                         f"{self.policy.max_container_bytes} bytes")

    def _decrypt(self, encrypted: etree._Element, key: Any) -> Content:
        from transport.security.encryption import decrypt_xml

        try:
            plaintext = decrypt_xml(encrypted, key)
        except SecurityError as exc:
            raise SimulatedFault("9052", f"content cannot be decrypted for the reader ({exc.reason})") from None
        try:
            inner = parse_request_xml(plaintext)
            return parse_content_container(inner)
        except (XmlRejected, ProtocolError) as exc:
            raise SimulatedFault("9052", f"decrypted content is not an xta:ContentContainer ({exc})") from None

    def _verify(self, content: Content) -> tuple[Content, str]:
        from transport.security.signature import verify_content

        try:
            verified = verify_content(content, list(self.policy.trusted_signers))
        except SecurityError as exc:
            raise SimulatedFault("9052", f"content signature not accepted ({exc.reason})") from None
        return verified.content, verified.signer.subject.rfc4514_string()

    @staticmethod
    def _stored(md: MessageMetaData, parts: tuple[StoredPart, ...], *, encrypted: bool = False,
                verified: bool = False, signer: str | None = None) -> StoredMessage:
        return StoredMessage(
            message_id=md.message_id, reader=md.reader.identifier, author=md.author.identifier,
            service=md.service, message_type=md.message_type.code,
            business_scenario=md.business_scenario.code, parts=parts, test=md.test,
            encrypted=encrypted, verified=verified, signer=signer,
        )


def _cipher_size(encrypted: etree._Element) -> int:
    value = encrypted.find(f"{{{XENC}}}CipherData/{{{XENC}}}CipherValue")
    if value is None:
        raise SimulatedFault("9022", "EncryptedData without CipherData/CipherValue (references unsupported)")
    try:
        return len(base64.b64decode("".join((value.text or "").split()), validate=True))
    except (binascii.Error, ValueError):
        raise SimulatedFault("9022", "EncryptedData CipherValue is not valid base64") from None
