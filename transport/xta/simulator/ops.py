"""The ManagementPort and SendXtaPort operations of the simulator, on parsed SOAP headers/bodies.

Fault-code choices (list ``urn:de:xta:webservice:codeliste:fehlernummer``, restricted to the
exceptions XTA.wsdl declares for each operation):

- accounts: unknown author (``accounts`` set, author not in it, or no Author at all) 9012; account
  ``locked`` 9011, ``expired`` (authentication/certificate expired) 9010; service not booked by the
  author (``booked_services``) 9013; TLS client certificate not the one bound to the author
  (``client_certificates``) or none presented 9014. All PermissionDenied.
- sendMessage(Sync) without MessageMetaData header or without GenericContentContainer: ParameterIsNotValid
  9020; MessageMetaData or container structurally broken: 9022; MessageID not a URI: 9021.
- MessageID not issued by this server for this author: 9022 (invalid parameter combination). The code
  list's "MessageID unknown for the account" (9070) belongs to InvalidMessageIDException, which XTA.wsdl
  declares for getTransportReport and the MsgBox, not for sendMessage/cancelMessage.
- MessageID already used by an accepted message: 9024 (the hub reads it as "already delivered"). The same
  ID still being processed by a concurrent call: XTAWSTechnicalProblem 9030 (transient), because
  answering 9024 before the first call succeeded could lose the message.
- container above ``max_container_bytes``: 9023. The limit applies to the content (sum of the raw part
  bytes, as MsgSize); ciphertext that cannot be decrypted is checked against the limit's base64 size.
- end-to-end security fails (cannot decrypt with the reader's key, refused algorithm, decrypted data is
  not a ContentContainer, signature missing/invalid/untrusted): MessageSchemaViolation 9052 "violates
  the service profile"; with ``accept_unverified`` the message is stored as received instead
  (``verified`` false: still encrypted when it could not be decrypted).
- a part containing the EICAR test signature: MessageVirusDetection 9060.
- sendMessage for a service in ``sync_services``: SyncAsync 9081; sendMessageSync for another: 9080.
- cancelMessage: unknown MessageID 9022; no NotBefore 9101; NotBefore passed 9100 (CancelDenied).
- getTransportReport for a MessageID the author never sent: InvalidMessageID 9070.
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from lxml import etree

from hub.errors import ProtocolError, SecurityError, XmlRejected
from transport.content import Content, ContentPart
from transport.xta import wire
from transport.xta.container import (
    CONTENT_CONTAINER,
    ENCRYPTED_DATA,
    GENERIC_CONTENT_CONTAINER,
    build_content_container,
    container_payload,
    generic_container,
    parse_content_container,
)
from transport.xta.e2e import cipher_octets, decrypt_octets_for
from transport.xta.metadata import (
    LookupResult,
    MessageMetaData,
    MessageType,
    Party,
    ServiceParameter,
)
from transport.xta.mmd import (
    AUTHOR,
    MESSAGE_METADATA,
    parse_message_metadata,
    parse_party,
    render_message_metadata,
)
from transport.xta.mtom import Attachments
from transport.xta.ns import XENC, q
from transport.xta.simulator.config import (
    ACCOUNT_EXPIRED,
    ACCOUNT_LOCKED,
    SimulatorConfig,
)
from transport.xta.simulator.reports import build_report, current_status, initial_state
from transport.xta.simulator.store import (
    IN_FLIGHT,
    USED,
    MessageIdRegistry,
    MessageStore,
    StoredMessage,
    StoredPart,
    WireContent,
)

EICAR_MARKER = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"
ENCRYPTED_CONTENT_TYPE = "application/xenc+xml"
CERTIFICATE_PARAMETER = "ENCRYPTION_CERTIFICATE"
SERVICE_PARAMETER_LIST_URI = "urn:de:xta:codeliste:service.parameter.type"
_B64_SLACK = 64 * 1024


class SimulatedFault(Exception):
    """Raised by an operation: the simulator answers with this XTA fault."""

    def __init__(self, code: str, reason: str, *, exception_type: str | None = None,
                 subcode: tuple[str, str] | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.exception_type = exception_type
        self.subcode = subcode


def parse_request_xml(data: bytes, limits: Any = None) -> etree._Element:
    """Parse with the project's hardened parser (no DTDs, no entities, size limits)."""
    from transport.security.xml import DEFAULT_LIMITS, parse_xml

    return parse_xml(data, limits or DEFAULT_LIMITS)


@dataclass(frozen=True)
class Request:
    """One parsed SOAP request as the operations see it."""

    operation: str
    header: etree._Element | None
    body: list[etree._Element]
    parts: Mapping[str, memoryview] = field(default_factory=dict)
    mtom: bool = False
    client_certificate: str | None = None  # SHA-256 fingerprint of the TLS client certificate
    wants_mtom: bool = False  # content-bearing answers as MTOM


@dataclass
class Answer:
    """Header and body elements of a non-fault answer, and the binary parts of an MTOM answer."""

    headers: list[etree._Element] = field(default_factory=list)
    body: list[etree._Element] = field(default_factory=list)
    attachments: Attachments | None = None


class XtaOperations:
    """The operations of the management and send ports against a registry and a store."""

    def __init__(self, config: SimulatorConfig, registry: MessageIdRegistry, store: MessageStore) -> None:
        self.config = config
        self.registry = registry
        self.store = store

    # ------------------------------------------------------------------ accounts

    def author_of(self, request: Request) -> Party | None:
        el = request.header.find(AUTHOR) if request.header is not None else None
        if el is None:
            return None
        try:
            return parse_party(el)
        except ProtocolError as exc:
            raise SimulatedFault("9022", f"Author header: {exc}") from None

    def authorize(self, author: Party | None, request: Request, *, service: str | None = None,
                  accounts: frozenset[str] | None | Literal[True] = True) -> Party | None:
        """PermissionDenied 9010-9014 for the caller (``author``) of ``request``; ``accounts`` replaces
        the configured account set (None: any account), ``True`` keeps it."""
        c = self.config
        known = c.accounts if accounts is True else accounts
        if known is not None and (author is None or author.identifier not in known):
            raise SimulatedFault("9012", "Account nicht vorhanden"
                                 + (f": {author.identifier}" if author else " (kein Author angegeben)"))
        if author is None:
            return None
        state = c.account_states.get(author.identifier)
        if state == ACCOUNT_LOCKED:
            raise SimulatedFault("9011", f"Account ist gesperrt: {author.identifier}")
        if state == ACCOUNT_EXPIRED:
            raise SimulatedFault("9010", f"Authentisierung/Zertifikat ist abgelaufen: {author.identifier}")
        bound = c.client_certificates.get(author.identifier)
        if bound is not None and bound.lower() != (request.client_certificate or "").lower():
            raise SimulatedFault("9014", "Authentisierung/Zertifikat passt nicht zur Absenderkennung "
                                         f"{author.identifier}")
        if (service is not None and c.booked_services is not None
                and service not in c.booked_services.get(author.identifier, frozenset())):
            raise SimulatedFault("9013", f"Dienst ist nicht gebucht: {service}")
        return author

    # ------------------------------------------------------------------ management port

    def check_account_active(self, request: Request) -> Answer:
        self._empty_body(request)
        self.authorize(self.author_of(request), request)
        return Answer()

    def create_message_id(self, request: Request) -> Answer:
        self._empty_body(request)
        author = self.authorize(self.author_of(request), request)
        return Answer(body=[wire.render_message_id(self.registry.create(author.identifier if author else ""))])

    def lookup_service(self, request: Request) -> Answer:
        author = self.author_of(request)
        self.authorize(author, request)
        if len(request.body) != 1:
            raise SimulatedFault("9020", "lookupService expects one LookupServiceRequest")
        try:
            queries = wire.parse_lookup_request(request.body[0])
        except ProtocolError as exc:
            raise SimulatedFault("9022", str(exc)) from None
        results = []
        for reader, service in queries:
            if any(ch.isspace() for ch in service):
                raise SimulatedFault("9021", f"ServiceType is not a URI: {service[:80]}")
            if self.config.booked_services is not None and author is not None:
                self.authorize(author, request, service=service)
            offered = self.config.services.get(reader.identifier) if self.config.services is not None else None
            available = True if self.config.services is None else (None if offered is None else service in offered)
            params: tuple[ServiceParameter, ...] = ()
            cert = self.config.reader_certificates.get(reader.identifier)
            if cert is not None and available is not False:
                from cryptography.hazmat.primitives import serialization

                params = (ServiceParameter(CERTIFICATE_PARAMETER, SERVICE_PARAMETER_LIST_URI, "1",
                                           cert.public_bytes(serialization.Encoding.DER)),)
            results.append(LookupResult(reader, service, available, params))
        return Answer(body=[wire.render_lookup_response(results)])

    def _own_message(self, request: Request, fault_code: str) -> tuple[StoredMessage, str]:
        author = self.authorize(self.author_of(request), request)
        try:
            message_id = wire.parse_message_id(request.body)
        except ProtocolError as exc:
            raise SimulatedFault("9020", str(exc)) from None
        message = self.store.get(message_id)
        if message is None or (author is not None and message.author != author.identifier):
            raise SimulatedFault(fault_code, f"MessageID für den Account nicht bekannt: {message_id}")
        return message, message_id

    def get_transport_report(self, request: Request) -> Answer:
        message, message_id = self._own_message(request, "9070")
        state = self.store.state(message_id)
        assert state is not None
        return Answer(body=[wire.render_transport_report(build_report(self.config, message, state, self.config.clock()))])

    def cancel_message(self, request: Request) -> Answer:
        message, message_id = self._own_message(request, "9022")
        state = self.store.state(message_id)
        assert state is not None and message.metadata is not None
        not_before = message.metadata.delivery_attributes.not_before
        if not_before is None:
            raise SimulatedFault("9101", "Der Schalter NotBefore wurde nicht gesetzt")
        if state.cancelled_at is not None:
            return Answer()  # idempotent
        if current_status(state, self.config.clock()) != 0 or state.fetched_at is not None:
            raise SimulatedFault("9100", "Der durch den Schalter NotBefore gesetzte Termin ist verstrichen")
        self.store.update_state(message_id, cancelled_at=self.config.clock())
        return Answer()

    @staticmethod
    def _empty_body(request: Request) -> None:
        if request.body:
            raise SimulatedFault("9022", f"{request.operation} expects an empty Body")

    # ------------------------------------------------------------------ send port

    def send_message(self, request: Request) -> Answer:
        self._send(request, sync=False)
        return Answer()

    def send_message_sync(self, request: Request) -> Answer:
        md = self._send(request, sync=True)
        reply = self._sync_reply(md)
        attachments = Attachments() if request.wants_mtom else None
        container = generic_container(build_content_container(reply, attachments))
        reply_md = MessageMetaData(
            author=md.reader, reader=md.author, message_id=self.registry.create(md.reader.identifier),
            service=md.service, business_scenario=md.business_scenario,
            message_type=MessageType(md.message_type.code + ".Quittung", md.message_type.list_uri,
                                     md.message_type.list_version, "urn:xoev-hub:xta-simulator:quittung"),
            size=reply.size, test=md.test, in_reply_to=(md.message_id,))
        return Answer(headers=[render_message_metadata(reply_md)], body=[container], attachments=attachments)

    @staticmethod
    def _sync_reply(md: MessageMetaData) -> Content:
        text = (f'<?xml version="1.0" encoding="UTF-8"?><quittung xmlns="urn:xoev-hub:xta-simulator">'
                f"<messageID>{md.message_id}</messageID><empfangen>true</empfangen></quittung>")
        return Content(ContentPart(text.encode(), "application/xml", "quittung.xml"))

    def _send(self, request: Request, *, sync: bool) -> MessageMetaData:
        mmd_el = request.header.find(MESSAGE_METADATA) if request.header is not None else None
        if mmd_el is None:
            raise SimulatedFault("9020", "MessageMetaData header missing")
        try:
            md = parse_message_metadata(mmd_el)
        except ProtocolError as exc:
            raise SimulatedFault("9022", str(exc)) from None
        self.authorize(md.author, request, service=md.service)
        sync_services = self.config.sync_services
        if sync_services is not None and sync and md.service not in sync_services:
            raise SimulatedFault("9080", f"Der Dienst wird nur asynchron angeboten: {md.service}")
        if sync_services is not None and not sync and md.service in sync_services:
            raise SimulatedFault("9081", f"Der Dienst wird nur synchron angeboten: {md.service}")
        if ":" not in md.message_id or any(ch.isspace() for ch in md.message_id):
            raise SimulatedFault("9021", "MessageID is not a URI")
        if not request.body:
            raise SimulatedFault("9020", "Body holds no GenericContentContainer")
        if len(request.body) != 1 or request.body[0].tag != GENERIC_CONTENT_CONTAINER:
            raise SimulatedFault("9022", "Body must hold exactly one xta:GenericContentContainer")
        refused = self.registry.reserve(md.message_id, md.author.identifier)
        if refused == USED:
            raise SimulatedFault("9024", "MessageID ist bereits vergeben (message already accepted)")
        if refused == IN_FLIGHT:
            raise SimulatedFault("9030", "a message with this MessageID is being processed; retry later")
        if refused is not None:
            raise SimulatedFault("9022", "MessageID was not issued by this server for this author")
        try:
            self.store.add(self._accept(md, request.body[0], request), initial_state(self.config, md, self.config.clock()))
        except BaseException:
            self.registry.release(md.message_id)
            raise
        self.registry.commit(md.message_id)
        return md

    # ------------------------------------------------------------------ content

    def _accept(self, md: MessageMetaData, generic: etree._Element, request: Request) -> StoredMessage:
        try:
            payload = container_payload(generic)
        except ProtocolError as exc:
            raise SimulatedFault("9022", str(exc)) from None
        verified, signer = False, None
        if payload.tag == ENCRYPTED_DATA:
            cipher = self._cipher(payload, request)
            self._check_size(len(cipher), encrypted=True)
            wire_content = WireContent(encrypted_template=_template(payload), cipher=bytes(cipher))
            key = self.config.reader_keys.get(md.reader.identifier)
            decrypted = self._decrypt(payload, cipher, key) if key is not None else None
            if decrypted is None:  # no key for this reader (or accept_unverified): keep the ciphertext
                blob = _reconstituted(payload, cipher)
                parts = (StoredPart(data=blob, content_type=ENCRYPTED_CONTENT_TYPE, filename="content.xenc.xml"),)
                return self._stored(md, parts, wire_content, request, encrypted=True)
            content = decrypted
        else:
            assert payload.tag == CONTENT_CONTAINER
            try:
                content = parse_content_container(payload, request.parts if request.mtom else None)
            except ProtocolError as exc:
                raise SimulatedFault("9022", str(exc)) from None
            wire_content = WireContent(parts=_stored_parts(content))
        self._check_size(content.size)
        if self.config.trusted_signers:
            try:
                content, signer = self._verify(content)
                verified = True
            except SimulatedFault:
                if not self.config.accept_unverified:
                    raise
        if any(EICAR_MARKER in part.data for part in content.parts):
            raise SimulatedFault("9060", "Es wurde schadhafter Code ermittelt (EICAR test signature)")
        return self._stored(md, _stored_parts(content), wire_content, request, verified=verified, signer=signer)

    def _cipher(self, payload: etree._Element, request: Request) -> memoryview:
        try:
            raw = cipher_octets(payload, request.parts if request.mtom else None)
        except ProtocolError as exc:
            raise SimulatedFault("9022", str(exc)) from None
        if raw is not None:
            return raw
        value = payload.find(f"{{{XENC}}}CipherData/{{{XENC}}}CipherValue")
        if value is None:  # cipher_octets found a CipherValue; kept for the type checker
            raise SimulatedFault("9022", "EncryptedData without CipherValue")
        try:
            return memoryview(binascii.a2b_base64(value.text or ""))
        except (binascii.Error, ValueError):
            raise SimulatedFault("9022", "EncryptedData CipherValue is not valid base64") from None

    def _check_size(self, size: int, *, encrypted: bool = False) -> None:
        limit = self.config.max_container_bytes
        if encrypted:  # ciphertext of a base64 container: allow the base64 growth of a container at the limit
            limit = limit * 4 // 3 + _B64_SLACK
        if size > limit:
            raise SimulatedFault("9023", f"container of {size} bytes exceeds the limit of "
                                         f"{self.config.max_container_bytes} bytes")

    def _decrypt(self, encrypted: etree._Element, cipher: memoryview, key: Any) -> Content | None:
        """The decrypted content; 9052 when that fails (None with ``accept_unverified``)."""
        try:
            plaintext = decrypt_octets_for(encrypted, cipher, key)
        except SecurityError as exc:
            if self.config.accept_unverified:
                return None
            raise SimulatedFault("9052", f"content cannot be decrypted for the reader ({exc.reason})") from None
        limit = 2 * self.config.max_container_bytes + (1 << 20)
        from transport.security.xml import XmlLimits

        try:
            inner = parse_request_xml(plaintext, XmlLimits(max_bytes=limit, max_text_length=limit))
            return parse_content_container(inner)
        except (XmlRejected, ProtocolError) as exc:
            if self.config.accept_unverified:
                return None
            raise SimulatedFault("9052", f"decrypted content is not an xta:ContentContainer ({exc})") from None

    def _verify(self, content: Content) -> tuple[Content, str]:
        from transport.security.signature import verify_content

        try:
            verified = verify_content(content, list(self.config.trusted_signers))
        except SecurityError as exc:
            raise SimulatedFault("9052", f"content signature not accepted ({exc.reason})") from None
        return verified.content, verified.signer.subject.rfc4514_string()

    @staticmethod
    def _stored(md: MessageMetaData, parts: tuple[StoredPart, ...], wire_content: WireContent, request: Request, *,
                encrypted: bool = False, verified: bool = False, signer: str | None = None) -> StoredMessage:
        return StoredMessage(
            message_id=md.message_id, reader=md.reader.identifier, author=md.author.identifier,
            service=md.service, message_type=md.message_type.code,
            business_scenario=md.business_scenario.code, parts=parts, test=md.test,
            encrypted=encrypted, verified=verified, signer=signer, metadata=md, wire=wire_content,
            mtom=request.mtom)


def _stored_parts(content: Content) -> tuple[StoredPart, ...]:
    return tuple(StoredPart(data=p.data, content_type=p.content_type, filename=p.filename,
                            description=p.description) for p in content.parts)


def _template(encrypted: etree._Element) -> bytes:
    """EncryptedData with an empty CipherValue (CipherReference replaced): the redelivery template."""
    template = copy.deepcopy(encrypted)
    cipher_data = template.find(f"{{{XENC}}}CipherData")
    assert cipher_data is not None  # cipher_octets accepted this EncryptedData
    for child in list(cipher_data):
        cipher_data.remove(child)
    etree.SubElement(cipher_data, q(XENC, "CipherValue"))
    return etree.tostring(template, encoding="utf-8")


def _reconstituted(encrypted: etree._Element, cipher: memoryview) -> bytes:
    """The EncryptedData with the ciphertext inline (what a non-MTOM sender would have sent)."""
    element = etree.fromstring(_template(encrypted))
    value = element.find(f"{{{XENC}}}CipherData/{{{XENC}}}CipherValue")
    assert value is not None  # _template made it
    value.text = base64.b64encode(cipher).decode("ascii")
    return etree.tostring(element, encoding="utf-8")
