"""Delivery profile "xta2": XTA 2 Version 3 (Webservice 2.1.1) with end-to-end signed and
encrypted content, as the Fachverfahren of the Ausländerbehörden (ADVIS, AUSO, OK.VISA, ...)
receive it through their XTA server.

Per delivery: refuse content above ``max_container_bytes`` (permanent, before any call) ->
lookupService for (reader, service), cached for ``lookup_ttl`` -> sign every content part (detached
XML-DSig) -> xta:ContentContainer -> encrypt for the reader (AES-256-GCM + RSA-OAEP) -> sendMessage (or
sendMessageSync) with the MessageMetaData header; content as MTOM parts unless ``mtom = false``. The
MessageID comes from createMessageId (``new_transport_id``) and is kept across retries; 9024 on a
re-send means the first attempt was accepted. After delivery the hub polls ``transport_report``.
Every option is documented in docs/xta.md.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from cryptography import x509
from pydantic import AfterValidator, Field, ValidationError, field_validator

from adapters.base import AdapterContext, Delivery, DeliveryReceipt, IdentitySource, Loaded
from adapters.settings import StrictSettings, parse_settings
from hub.errors import (
    ConfigError,
    ContentTooLarge,
    DirectoryError,
    HubError,
    SecurityError,
    XtaFault,
)
from hub.stages import timed
from transport.content import Content
from transport.security.encryption import encrypt_xml
from transport.security.keys import SigningIdentity
from transport.security.signature import sign_content
from transport.security.xml import serialize
from transport.xta import wire
from transport.xta.answers import malformed_answers
from transport.xta.client import XtaClient, XtaEndpoint
from transport.xta.container import (
    OutgoingContainer,
    build_content_container,
    generic_container,
)
from transport.xta.e2e import SPOOL_THRESHOLD, encrypt_container
from transport.xta.metadata import (
    RECEIPT_KINDS,
    STATUS_NAMES,
    BusinessScenario,
    DeliveryAttributes,
    LookupResult,
    MessageMetaData,
    MessageType,
    Party,
    ReportRecord,
)
from transport.xta.mtom import Attachments
from transport.xta.tls import TlsSettings

log = logging.getLogger(__name__)

# errorCode 9024 (ParameterIsNotValid): "MessageID already used"
MESSAGE_ID_ALREADY_USED = "9024"
# XTA-Webservice 2.1.1: "Die Gesamtgröße des Containers darf 40 MB nicht überschreiten."
DEFAULT_MAX_CONTAINER_BYTES = 40 * 1024 * 1024


class XtaConnectionOptions(StrictSettings):
    """The options every XTA client of a profile shares: mutual TLS and a local WSDL. Subclasses
    add their own (strict types, unknown keys refused); ``what`` names them in errors."""

    what: ClassVar[str] = "xta2 option(s)"
    tls_client_cert: Path | None = None
    tls_client_key: Path | None = None
    tls_password_env: str | None = None
    tls_ca_bundle: Path | None = None
    wsdl: Path | None = None

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any], base_dir: Path | None = None, *,
                     key: str = "options") -> Self:
        """Validate ``options`` (errors name ``key``.option, one line); relative paths are resolved
        against ``base_dir`` (the config's folder)."""
        try:
            parsed = cls.model_validate(dict(options))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join((key, *(str(p) for p in e['loc'])))}: {e['msg']}"
                                 for e in exc.errors())
            raise ConfigError(f"invalid {cls.what}: {problems}") from None
        if base_dir is None:
            return parsed
        paths = {k: (base_dir / v if v is not None and not v.is_absolute() else v)
                 for k in ("tls_client_cert", "tls_client_key", "tls_ca_bundle", "wsdl")
                 for v in [getattr(parsed, k)]}
        return parsed.model_copy(update=paths)

    def tls(self) -> TlsSettings | None:
        if self.tls_client_cert is None and self.tls_ca_bundle is None:
            return None
        return TlsSettings(client_cert=self.tls_client_cert, client_key=self.tls_client_key,
                           password_env=self.tls_password_env, ca_bundle=self.tls_ca_bundle)


class Xta2Options(XtaConnectionOptions):
    """Profile options (``adapters.<name>.options`` in the config); see docs/xta.md. Strict types:
    ``mtom = "yes"`` or ``lookup_ttl = "10"`` is an error naming the option."""

    encrypt: bool = True
    sign: bool = True
    max_container_bytes: int = Field(DEFAULT_MAX_CONTAINER_BYTES, gt=0)
    mtom: bool = True
    spool_threshold_bytes: int = Field(SPOOL_THRESHOLD, ge=0)
    send_mode: Literal["async", "sync"] = "async"
    test_message: bool | None = None
    service_quality: str | None = Field(None, min_length=1)
    receipt_requests: tuple[str, ...] = ()
    receipt_to: str | None = None
    business_scenario_list_uri: str | None = None
    business_scenario_list_version: str | None = None
    business_scenario_undefined: bool = False
    message_type_list_uri: str | None = None
    message_type_list_version: str | None = None
    payload_schema: str | None = None
    obsolete_after_days: int | None = Field(None, gt=0)
    x509_token_container: bool = False
    lookup_service: bool = True
    lookup_ttl: float = Field(3600.0, ge=0)
    lookup_negative_ttl: float = Field(60.0, ge=0)
    lookup_certificate_codes: tuple[str, ...] = ("ENCRYPTION_CERTIFICATE",)
    reader_certificate: Literal["directory", "lookup", "match"] = "directory"
    signature_method: str | None = None  # e.g. ...xmldsig-more#rsa-sha256 (default), #sha256-rsa-MGF1, #ecdsa-sha256
    @field_validator("receipt_requests")
    @classmethod
    def _receipt_kinds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(value) - set(RECEIPT_KINDS)
        if unknown:
            raise ValueError(f"unknown receipt request(s) {sorted(unknown)}; known: {', '.join(RECEIPT_KINDS)}")
        return value


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


class Xta2Settings(StrictSettings):
    """The profile's keys of ``[adapters.<name>]`` (besides the hub's own: profile, timeout,
    concurrency, author, service, retries, breaker, report polling); see docs/xta.md."""

    endpoint: Annotated[str, AfterValidator(_http_url)]
    signing_key: Path
    signing_cert: Path | None = None
    signing_key_password_env: str | None = None
    signing_key_password_file: Path | None = None
    business_scenario: str = "XAUSLAENDER_DATA"
    business_scenario_list_uri: str = "urn:de:dataport:codeliste:business.scenario"
    business_scenario_list_version: str = "1"
    options: dict[str, Any] = Field(default_factory=dict)


class Xta2Addressing(StrictSettings):
    """An authority's xta2 keys in ``[[authorities]]``: its encryption certificate (PEM) and how it is
    named as the XTA Reader (identifier: the authority's id)."""

    certificate: Path
    reader_name: str | None = None
    reader_category: str = "Ausländerbehörde"


@dataclass(frozen=True)
class XtaReader:
    """``Recipient.addressing`` of an xta2 authority: the Reader party and its encryption
    certificate, read through a key-store handle so a renewed file is picked up."""

    party: Party
    certificate_handle: Loaded

    @property
    def certificate(self) -> x509.Certificate:
        first: x509.Certificate = self.certificate_handle.get()[0]
        return first


@dataclass(frozen=True)
class _Certificate:
    """A certificate that never changes (tests, tools)."""

    value: x509.Certificate

    def get(self) -> list[x509.Certificate]:
        return [self.value]


def xta_reader(party: Party, certificate: x509.Certificate) -> XtaReader:
    """Addressing for a fixed certificate (tests, tools); the hub loads it from the directory."""
    return XtaReader(party, _Certificate(certificate))


def _resolve(base: Path | None, path: Path | None) -> Path | None:
    if path is None or base is None or path.is_absolute():
        return path
    return (base / path).resolve()


def xta2_settings(section: Mapping[str, Any], base_dir: Path | None, key: str) -> Xta2Settings:
    """An adapter section's xta2 keys, validated (errors name ``key``.<key>), paths made absolute
    against ``base_dir``; for tools that read the config without building the adapter (demo, simulator)."""
    settings = parse_settings(Xta2Settings, section, key)
    return settings.model_copy(update={k: _resolve(base_dir, getattr(settings, k))
                                       for k in ("signing_key", "signing_cert", "signing_key_password_file")})


def xta2_addressing(section: Mapping[str, Any], base_dir: Path | None, key: str) -> Xta2Addressing:
    """An authority's xta2 keys, validated, the certificate path made absolute (see ``xta2_settings``)."""
    addressing = parse_settings(Xta2Addressing, section, key)
    return addressing.model_copy(update={"certificate": _resolve(base_dir, addressing.certificate)})


@dataclass(frozen=True)
class _Fixed:
    """An identity that never changes (tests, tools); the hub passes a reloading key-store handle."""

    identity: SigningIdentity

    def get(self) -> SigningIdentity:
        return self.identity


@dataclass(frozen=True)
class TransportReportResult:
    """The XTA transport report of one delivered message (no payload): status 0 open, 1 green,
    2 yellow, 3 red, and the report's error/warning/info records."""

    transport_message_id: str
    status: int
    errors: tuple[ReportRecord, ...] = ()
    warnings: tuple[ReportRecord, ...] = ()
    infos: tuple[ReportRecord, ...] = ()
    report_time: str = ""
    server_identity: str = ""

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.status, f"unknown({self.status})")

    @property
    def final(self) -> bool:
        return self.status != 0

    def detail(self) -> dict[str, Any]:
        """JSON-ready summary for a status event (codes and reasons only)."""
        def records(items: tuple[ReportRecord, ...]) -> list[dict[str, str]]:
            return [{"code": r.code, "list": r.list_uri, "reason": r.reason, "at": r.timestamp} for r in items]

        return {"xta_message_id": self.transport_message_id, "status": self.status, "status_name": self.status_name,
                "report_time": self.report_time, "errors": records(self.errors),
                "warnings": records(self.warnings)}


@dataclass(frozen=True)
class Xta2Receipt(DeliveryReceipt):
    """A delivery receipt; with ``send_mode = "sync"`` it carries the reader's synchronous answer."""

    sync_metadata: MessageMetaData | None = None
    sync_content: Content | None = field(default=None, repr=False)  # None if absent or encrypted for us


@dataclass
class _Lookup:
    result: LookupResult | None
    certificate: x509.Certificate | None
    expires: float


class Xta2Adapter:
    """Delivers through one XTA 2 endpoint; thread-safe (the client keeps a session per thread)."""

    settings_model: ClassVar[type[Xta2Settings]] = Xta2Settings
    addressing_model: ClassVar[type[Xta2Addressing]] = Xta2Addressing
    requires_sender: ClassVar[bool] = True  # every message names its XTA Author (the configured author)

    def __init__(self, name: str, *, endpoint: XtaEndpoint, author: Party, identity: SigningIdentity | IdentitySource,
                 options: Mapping[str, Any] | None = None, base_dir: Path | None = None,
                 business_scenario: BusinessScenario | None = None, keys: Any = None) -> None:
        self.name = name
        self._scenario = business_scenario or BusinessScenario("XAUSLAENDER_DATA",
                                                               "urn:de:dataport:codeliste:business.scenario", "1")
        self._keys = keys
        self._base_dir = base_dir
        self._author = author
        self._identity: IdentitySource = identity if hasattr(identity, "get") else _Fixed(identity)
        self._options = Xta2Options.from_mapping(options or {}, base_dir, key=f"adapters.{name}.options")
        tls = self._options.tls()
        if tls is not None and endpoint.tls is None:
            endpoint = replace(endpoint, tls=tls)
        self._client = XtaClient(endpoint, wsdl=self._options.wsdl)
        self._lookups: dict[tuple[str, str], _Lookup] = {}
        self._lookups_lock = threading.Lock()

    @classmethod
    def from_config(cls, name: str, section: Mapping[str, Any], context: AdapterContext) -> Self:
        """The profile from its ``[adapters.<name>]`` keys (``Xta2Settings``) and the hub's context;
        the signing identity is a key-store handle (renewed files are picked up without a restart)."""
        settings = parse_settings(Xta2Settings, section, f"adapters.{name}")
        if context.sender is None:
            raise ConfigError(f"invalid configuration: adapters.{name}.author: required by profile xta2 "
                              "(the XTA Author of every message)")
        base = context.base_dir
        try:
            identity = context.keys.identity_handle(
                _resolve(base, settings.signing_key) or settings.signing_key,
                _resolve(base, settings.signing_cert), settings.signing_key_password_env,
                password_file=_resolve(base, settings.signing_key_password_file))
        except ConfigError:
            raise
        except HubError as exc:  # KeyStoreError and friends: name the config key
            raise ConfigError(f"adapters.{name}.signing_key: {exc}") from None
        sender = context.sender
        return cls(
            name,
            # keep-alive pool: one connection per delivery/poll thread, plus the readiness check
            endpoint=XtaEndpoint(settings.endpoint, timeout=context.timeout, pool_size=context.concurrency + 1),
            author=Party(identifier=sender.identifier, name=sender.name, category=sender.category),
            identity=identity,
            options=settings.options,
            base_dir=base,
            business_scenario=BusinessScenario(settings.business_scenario, settings.business_scenario_list_uri,
                                               settings.business_scenario_list_version),
            keys=context.keys,
        )

    def addressing(self, authority_id: str, name: str, section: Mapping[str, Any]) -> XtaReader:
        """The Reader and its encryption certificate (loaded now, reloaded when the file is renewed)."""
        values = parse_settings(Xta2Addressing, section, f"authorities[{authority_id}]")
        if self._keys is None:
            raise ConfigError(f"adapter '{self.name}' was built without a key source; cannot load "
                              f"authorities[{authority_id}].certificate")
        path = _resolve(self._base_dir, values.certificate) or values.certificate
        try:
            handle = self._keys.certificates_handle(path)
            handle.get()
        except ConfigError:
            raise
        except HubError as exc:
            raise ConfigError(f"authorities[{authority_id}].certificate: {exc}") from None
        party = Party(identifier=authority_id, name=values.reader_name or name, category=values.reader_category)
        return XtaReader(party, handle)

    @property
    def options(self) -> Xta2Options:
        return self._options

    @property
    def client(self) -> XtaClient:
        return self._client

    # ------------------------------------------------------------------ management port

    def check(self) -> None:
        """Readiness: the author's XTA account must be active (raises otherwise)."""
        if not self._client.check_account_active(self._author):
            raise XtaFault(f"XTA account {self._author.identifier} is not active",
                           exception_type="PermissionDeniedException", code=None)

    def prepare(self, delivery: Delivery) -> None:
        """Before createMessageId: refuse oversized content, and lookupService (cached) so an
        unavailable service fails before an id is spent — the XTA sending order."""
        self.check_size(delivery.content)
        self.lookup(delivery)

    def new_transport_id(self, delivery: Delivery | None = None) -> str:
        """createMessageId (the delivery is not needed for XTA)."""
        return self._client.create_message_id(self._author)

    def lookup(self, delivery: Delivery) -> x509.Certificate:
        """lookupService for the delivery's (reader, service), cached; the certificate to encrypt for.

        Raises ``DirectoryError`` (permanent) when the server says the reader does not offer the
        service, ``SecurityError`` when ``reader_certificate = "match"`` and the server returns another
        encryption certificate than the directory holds.
        """
        opts = self._options
        reader = _reader(delivery)
        if not opts.lookup_service:
            return reader.certificate
        key = (reader.party.identifier, delivery.service)
        now = time.monotonic()
        with self._lookups_lock:
            cached = self._lookups.get(key)
        if cached is None or cached.expires <= now:
            results = self._client.lookup_service(self._author, [(reader.party, delivery.service)])
            result = results[0] if results else None  # lookup_service returns at most one per query
            cert = wire.certificate_parameter(result, opts.lookup_certificate_codes) if result else None
            ttl = opts.lookup_negative_ttl if result is not None and result.available is False else opts.lookup_ttl
            cached = _Lookup(result, cert, now + ttl)
            with self._lookups_lock:
                self._lookups[key] = cached
        if cached.result is not None and cached.result.available is False:
            raise DirectoryError(f"XTA lookupService: reader {reader.party.identifier} does not offer service "
                                 f"{delivery.service}", reason="xta_service_unavailable")
        directory_certificate = reader.certificate
        if cached.certificate is None or cached.certificate == directory_certificate:
            return directory_certificate
        if opts.reader_certificate == "match":
            raise SecurityError(f"XTA lookupService returned another encryption certificate for "
                                f"{reader.party.identifier} than the directory holds", reason="reader_certificate_mismatch")
        if opts.reader_certificate == "lookup":
            return cached.certificate
        log.warning("XTA lookupService returned another encryption certificate for %s than the directory; "
                    "using the directory's (option reader_certificate)", reader.party.identifier)
        return directory_certificate

    def transport_report(self, transport_message_id: str) -> TransportReportResult:
        """The XTA transport report of a sent message (poll until ``final``)."""
        report = self._client.get_transport_report(self._author, transport_message_id)
        return TransportReportResult(transport_message_id, report.status, report.errors, report.warnings,
                                     report.infos, report.report_time, report.server_identity)

    def wait_for_report(self, transport_message_id: str, *, timeout: float, interval: float = 5.0,
                        sleep: Any = time.sleep) -> TransportReportResult:
        """Poll ``transport_report`` until it is final (status 1-3) or ``timeout`` seconds passed; returns
        the last report (status 0 if still open). For tools and tests: a worker must not wait inside a
        handler (pitfall 5) and should poll from its own scheduler instead."""
        deadline = time.monotonic() + timeout
        while True:
            report = self.transport_report(transport_message_id)
            if report.final or time.monotonic() + interval > deadline:
                return report
            sleep(interval)

    def cancel(self, transport_message_id: str) -> None:
        """cancelMessage: withdraw a transport order whose NotBefore has not yet passed."""
        self._client.cancel_message(self._author, transport_message_id)

    # ------------------------------------------------------------------ send port

    def check_size(self, content: Content) -> None:
        """Refuse content above the profile's ``max_container_bytes`` (permanent, before any call)."""
        limit = self._options.max_container_bytes
        if content.size > limit:
            raise ContentTooLarge(
                f"container of {content.size} bytes ({len(content.parts)} parts) exceeds the limit of {limit} "
                f"bytes of adapter '{self.name}' (option max_container_bytes); not sent")

    def prepare_container(self, delivery: Delivery, certificate: x509.Certificate | None = None) -> OutgoingContainer:
        """Sign, containerise and encrypt the content: the GenericContentContainer to send (MTOM parts
        unless ``mtom = false``). Close the result when done (it may hold a spooled ciphertext)."""
        self.check_size(delivery.content)
        return self._container(delivery, certificate)

    def _container(self, delivery: Delivery, certificate: x509.Certificate | None) -> OutgoingContainer:
        """``prepare_container`` once the caller has checked the unsigned content's size."""
        opts = self._options
        content: Content = delivery.content
        if opts.sign:
            with timed("sign"):
                content = sign_content(content, self._identity.get(), method=opts.signature_method)
            self.check_size(content)  # the signature part counts too
        recipient = certificate or _reader(delivery).certificate
        attachments = Attachments() if opts.mtom else None
        if opts.encrypt and attachments is not None:
            with timed("encrypt"):
                element = generic_container(encrypt_container(content, recipient, attachments,
                                                              spool_threshold=opts.spool_threshold_bytes))
        elif opts.encrypt:
            with timed("encrypt"):
                element = generic_container(encrypt_xml(serialize(build_content_container(content)), recipient))
        else:
            element = generic_container(build_content_container(content, attachments))
        return OutgoingContainer(element, attachments or Attachments(), content.size, encrypted=opts.encrypt)

    def metadata(self, delivery: Delivery, message_id: str, size: int) -> MessageMetaData:
        """The MessageMetaData header with the profile's send options applied."""
        o = self._options
        bs = self._scenario
        code = delivery.business_scenario or bs.code  # the portal may name another scenario of the same list
        scenario = BusinessScenario(code, o.business_scenario_list_uri or bs.list_uri,
                                    o.business_scenario_list_version or bs.list_version,
                                    defined=bs.defined and not o.business_scenario_undefined)
        mt = delivery.message_type
        message_type = MessageType(mt.code, o.message_type_list_uri or mt.list_uri or "",
                                   o.message_type_list_version or mt.list_version or "",
                                   o.payload_schema or mt.payload_schema or "")
        obsolete = (_dt.date.today() + _dt.timedelta(days=o.obsolete_after_days)) if o.obsolete_after_days else None
        attributes = DeliveryAttributes(obsolete_after=obsolete, service_quality=o.service_quality,
                                        receipt_requests=o.receipt_requests, receipt_to=o.receipt_to)
        return MessageMetaData(
            author=self._author, reader=_reader(delivery).party, message_id=message_id, service=delivery.service,
            business_scenario=scenario, message_type=message_type, size=size or None,
            test=delivery.test if o.test_message is None else o.test_message, delivery_attributes=attributes)

    def deliver(self, delivery: Delivery, transport_message_id: str, *, resend: bool = False,
                ready: Callable[[], None] | None = None) -> DeliveryReceipt:
        self.check_size(delivery.content)  # before lookupService may call out; not again below
        certificate = self.lookup(delivery)
        with self._container(delivery, certificate) as container:
            if ready is not None:
                ready()  # e.g. the id's ledger record is durable; nothing is sent before it returns
            metadata = self.metadata(delivery, transport_message_id, container.content_size)
            tokens = [self._identity.get().certificate, certificate] if self._options.x509_token_container else []
            try:
                if self._options.send_mode == "sync":
                    with timed("send"):
                        answer = self._client.send_message_sync(metadata, container, certificates=tokens)
                    return self._sync_receipt(transport_message_id, answer)
                with timed("send"):
                    self._client.send_message(metadata, container, certificates=tokens)
            except XtaFault as fault:
                if resend and fault.code == MESSAGE_ID_ALREADY_USED:  # an earlier attempt was accepted
                    return Xta2Receipt(transport_message_id=transport_message_id, accepted_on_resend=True)
                raise
        return Xta2Receipt(transport_message_id=transport_message_id)

    @staticmethod
    def _sync_receipt(message_id: str, answer: Any) -> Xta2Receipt:
        from transport.xta.container import (
            CONTENT_CONTAINER,
            container_payload,
            parse_content_container,
        )

        content = None
        with malformed_answers("sendMessageSync"):  # the reader's answer makes no sense: the endpoint's fault
            if container_payload(answer.container).tag == CONTENT_CONTAINER:
                content = parse_content_container(answer.container, answer.parts or None)
        return Xta2Receipt(transport_message_id=message_id, sync_metadata=answer.metadata, sync_content=content)

    def close(self) -> None:
        self._client.close()


def _reader(delivery: Delivery) -> XtaReader:
    """The delivery's xta2 addressing; anything else is the hub's mistake (the directory routes by adapter)."""
    addressing = delivery.recipient.addressing
    if not isinstance(addressing, XtaReader):
        raise ConfigError(f"authority {delivery.recipient.id} has no xta2 addressing (routed to the wrong adapter?)")
    return addressing
