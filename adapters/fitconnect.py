"""Delivery profile "fit-connect": FIT-Connect Submission API 1.1.3, sender side.

Per delivery: refuse parts above ``max_attachment_bytes`` and a service that is no LeiKa id -> the
destination (``GET /v1/destinations/{id}``, cached ``destination_ttl``: active, offering the
delivery's service and metadata 1.0.0) and its encryption key (validated against
``trust_anchors``, cached ``key_cache_ttl``) -> create the submission announcing one attachment per
content part beyond the message (``new_transport_id``; attachment ids derived from the message id,
so a resumed attempt re-uses them) -> encrypt the metadata and the data (the XÖV message) ->
``ready()`` -> encrypt and upload one attachment at a time -> submit. On a re-send, and when the
service answers an upload or the submit with 409/422, the case's event log says whether an
attempt got through already. The hub polls ``transport_report`` (the verified event log) until the
submission is accepted or rejected.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from cryptography import x509
from pydantic import BaseModel, Field, field_validator, model_validator

from adapters.base import AdapterContext, Delivery, DeliveryReceipt
from adapters.settings import StrictSettings, parse_settings
from hub.errors import (
    ConfigError,
    ContentTooLarge,
    DirectoryError,
    TransportError,
    TransportIdInvalid,
)
from transport.fitconnect.client import FitConnectClient
from transport.fitconnect.errors import (
    DestinationNotReady,
    DestinationUnavailable,
    FitConnectRefused,
)
from transport.fitconnect.events import SetKeys, SubmissionStatus, read_status
from transport.fitconnect.jose import ValidatedKey, encrypt_jwe, validate_encryption_key
from transport.fitconnect.metadata import (
    MetadataInvalid,
    build_metadata,
    mime_type,
    validate_metadata,
)
from transport.fitconnect.models import Destination

# attachment ids: uuid5(ATTACHMENT_NAMESPACE, "<message id>/<part index>")
ATTACHMENT_NAMESPACE = uuid.UUID("7d0f9a52-3c51-4b8e-9c1e-5f0b8f3b2a61")
DEFAULT_MAX_ATTACHMENT_BYTES = 64 * 1024 * 1024
METADATA_VERSION = "1.0.0"
LEIKA = re.compile(r"^urn:de:fim:leika:leistung:\d{14}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# re-reads of the event log after a 409/422 (seconds before each): the service may log the submit
# of a racing attempt a moment after it refuses ours
CONFLICT_REREADS = (0.0, 1.0, 2.0)


class FitConnectSettings(StrictSettings):
    """``[adapters.<name>]`` of a fit-connect profile (minus the hub's own keys), strict types.
    The client secret is named, never written here: an environment variable or a file."""

    submission_api: str = Field(pattern=r"^https?://\S+$")
    token_url: str = Field(pattern=r"^https?://\S+$")
    client_id: str = Field(min_length=1)
    client_secret_env: str | None = Field(None, min_length=1)
    client_secret_file: Path | None = None
    trust_anchors: tuple[Path, ...] = Field(min_length=1)
    key_cache_ttl: float = Field(3600.0, ge=0)
    destination_ttl: float = Field(60.0, ge=0)
    service_name: str | None = Field(None, min_length=1)
    payload_schema: str | None = Field(None, min_length=1)
    token_refresh_margin: float = Field(60.0, ge=0)
    tls_ca_bundle: Path | None = None
    max_attachment_bytes: int = Field(DEFAULT_MAX_ATTACHMENT_BYTES, gt=0)

    @field_validator("client_secret_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        # never echo the value: someone may have pasted the secret itself here
        if value is not None and not ENV_NAME.match(value):
            raise ValueError("must be the name of an environment variable (letters, digits, _), "
                             "not the secret itself")
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> Self:
        if (self.client_secret_env is None) == (self.client_secret_file is None):
            raise ValueError("set exactly one of client_secret_env and client_secret_file")
        return self


class FitConnectAddressing(StrictSettings):
    """An authority's fit-connect keys in ``[[authorities]]``: its destination (a UUID)."""

    destination_id: str

    @field_validator("destination_id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        return str(uuid.UUID(value))


@dataclass(frozen=True)
class FitConnectAddress:
    """A recipient's FIT-Connect addressing: its destination (Zustellpunkt)."""

    destination_id: str


@dataclass
class _Cached:
    value: Any
    expires: float


def parse_transport_id(transport_message_id: str) -> tuple[str, str, str]:
    """``"<submissionId>:<caseId>:<destinationId>"`` -> (submission id, case id, destination id)."""
    parts = transport_message_id.split(":")
    try:  # exactly three UUIDs: a wrong count fails the unpacking
        submission_id, case_id, destination_id = (str(uuid.UUID(p)) for p in parts)
    except ValueError:
        raise TransportError("not a FIT-Connect transport id (submissionId:caseId:destinationId)",
                             reason="fitconnect_transport_id") from None
    return submission_id, case_id, destination_id


def attachment_ids(delivery: Delivery) -> list[str]:
    """The ids of the content parts beyond the message, the same for every attempt."""
    return [str(uuid.uuid5(ATTACHMENT_NAMESPACE, f"{delivery.message_id}/{index}"))
            for index in range(1, len(delivery.content.parts))]


class FitConnectAdapter:
    """Delivers to FIT-Connect destinations through one delivery service; thread-safe."""

    settings_model: ClassVar[type[BaseModel]] = FitConnectSettings
    addressing_model: ClassVar[type[BaseModel]] = FitConnectAddressing

    def __init__(self, name: str, settings: FitConnectSettings, *, client: FitConnectClient,
                 trust_anchors: tuple[x509.Certificate, ...], clock: Callable[[], float] = time.monotonic,
                 conflict_rereads: Sequence[float] = CONFLICT_REREADS,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.name = name
        self._conflict_rereads = tuple(conflict_rereads)
        self._sleep = sleep
        self._settings = settings
        self._client = client
        self._anchors = trust_anchors
        self._clock = clock
        self._lock = threading.Lock()
        self._destinations: dict[str, _Cached] = {}
        self._keys: dict[tuple[str, str], _Cached] = {}
        self._set_keys = SetKeys(client, trust_anchors, ttl=settings.key_cache_ttl, clock=clock)

    @classmethod
    def from_config(cls, name: str, section: Mapping[str, Any], context: AdapterContext) -> FitConnectAdapter:
        """The profile from its ``[adapters.<name>]`` keys: the client secret read now (never
        logged), the trust anchors loaded, one HTTP pool sized by the context's concurrency."""
        prefix = f"adapters.{name}"
        settings = parse_settings(FitConnectSettings, section, prefix)
        base = context.base_dir or Path(".")

        def resolve(path: Path) -> Path:
            return path if path.is_absolute() else base / path

        secret = cls._secret(settings, prefix, context, resolve)
        anchors: list[x509.Certificate] = []
        for path in settings.trust_anchors:
            try:
                anchors.extend(x509.load_pem_x509_certificates(resolve(path).read_bytes()))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{prefix}.trust_anchors: {path} cannot be loaded ({type(exc).__name__})") from None
        bundle = resolve(settings.tls_ca_bundle) if settings.tls_ca_bundle else None
        client = FitConnectClient(settings.submission_api, settings.token_url, settings.client_id, secret,
                                  timeout=context.timeout, pool_size=context.concurrency + 1,
                                  token_refresh_margin=settings.token_refresh_margin,
                                  ca_bundle=str(bundle) if bundle else None)
        return cls(name, settings, client=client, trust_anchors=tuple(anchors))

    @staticmethod
    def _secret(settings: FitConnectSettings, prefix: str, context: AdapterContext,
                resolve: Callable[[Path], Path]) -> str:
        if settings.client_secret_env is not None:
            environ = context.environ if context.environ is not None else os.environ
            secret = environ.get(settings.client_secret_env, "").strip()
            if not secret:
                raise ConfigError(f"{prefix}.client_secret_env: environment variable "
                                  f"{settings.client_secret_env} is not set")
            return secret
        assert settings.client_secret_file is not None
        try:
            secret = resolve(settings.client_secret_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{prefix}.client_secret_file: cannot be read ({type(exc).__name__})") from None
        if not secret:
            raise ConfigError(f"{prefix}.client_secret_file: the file is empty")
        return secret

    @property
    def settings(self) -> FitConnectSettings:
        return self._settings

    @property
    def client(self) -> FitConnectClient:
        return self._client

    def addressing(self, authority_id: str, name: str, section: Mapping[str, Any]) -> FitConnectAddress:
        """The destination id (a UUID; nothing is fetched at start: the destination is looked up
        per delivery, so one that is down does not stop the hub)."""
        return FitConnectAddress(parse_settings(FitConnectAddressing, section,
                                                f"authorities[{authority_id}]").destination_id)

    # ------------------------------------------------------------------ management port

    def check(self) -> None:
        """Readiness: a token, and the delivery service answers ``/v1/info``."""
        self._client.token()
        self._client.info()

    def prepare(self, delivery: Delivery) -> None:
        """Before a submission is created: sizes, the destination (active, offering the service) and
        its key (validated) — so a refusal spends no submission."""
        self.check_size(delivery)
        self.target(delivery)

    def check_size(self, delivery: Delivery) -> None:
        limit = self._settings.max_attachment_bytes
        for index, part in enumerate(delivery.content.parts):
            if part.size > limit:
                raise ContentTooLarge(f"content part {index} of {part.size} bytes exceeds the limit of {limit} "
                                      f"bytes of adapter '{self.name}' (max_attachment_bytes); not sent")

    def target(self, delivery: Delivery) -> tuple[Destination, ValidatedKey]:
        """The recipient's destination and validated encryption key (both cached). A destination
        that is not active yet or for now is transient; one that is gone, lacks the service or
        metadata 1.0.0 is permanent."""
        address = delivery.recipient.addressing
        if not isinstance(address, FitConnectAddress):
            raise DirectoryError(f"recipient {delivery.recipient.id} has no FIT-Connect destination",
                                 reason="fitconnect_addressing")
        if not LEIKA.match(delivery.service or ""):
            raise FitConnectRefused(f"service {delivery.service!r} is no LeiKa identifier "
                                    f"(urn:de:fim:leika:leistung:<14 digits>): set `service` of adapter "
                                    f"'{self.name}'", reason="fitconnect_service_invalid")
        destination = self._destination(address.destination_id)
        if destination.status in ("created", "inactive"):
            raise DestinationNotReady(f"destination {address.destination_id} is {destination.status}, not active")
        if destination.status != "active":
            raise DestinationUnavailable(f"destination {address.destination_id} is {destination.status}",
                                         reason="fitconnect_destination_decommissioned")
        if destination.metadata_versions and METADATA_VERSION not in destination.metadata_versions:
            raise DestinationUnavailable(f"destination {address.destination_id} does not take metadata "
                                         f"{METADATA_VERSION}", reason="fitconnect_metadata_version")
        if destination.services and not destination.offers(delivery.service):
            raise DestinationUnavailable(f"destination {address.destination_id} does not offer service "
                                         f"{delivery.service}", reason="fitconnect_service_unavailable")
        return destination, self._key(address.destination_id, destination.encryption_kid)

    def _destination(self, destination_id: str) -> Destination:
        now = self._clock()
        with self._lock:
            cached = self._destinations.get(destination_id)
        if cached is not None and cached.expires > now:
            destination: Destination = cached.value
            return destination
        destination = self._client.get_destination(destination_id)
        with self._lock:
            self._destinations[destination_id] = _Cached(destination, now + self._settings.destination_ttl)
        return destination

    def _key(self, destination_id: str, kid: str) -> ValidatedKey:
        now = self._clock()
        with self._lock:
            cached = self._keys.get((destination_id, kid))
        if cached is not None and cached.expires > now and cached.value.not_after > _dt.datetime.now(_dt.UTC):
            key: ValidatedKey = cached.value
            return key
        key = validate_encryption_key(self._client.get_key(destination_id, kid), self._anchors)
        with self._lock:
            self._keys[(destination_id, kid)] = _Cached(key, now + self._settings.key_cache_ttl)
        return key

    # ------------------------------------------------------------------ send port

    def new_transport_id(self, delivery: Delivery) -> str:
        """Create the submission (announcing the attachments);
        ``"<submissionId>:<caseId>:<destinationId>"`` (the destination: whose key may sign the
        receiver's events of this submission)."""
        destination, _ = self.target(delivery)
        service_type = {"name": self._settings.service_name or delivery.message_type.code,
                        "identifier": delivery.service}
        created = self._client.create_submission({
            "destinationId": destination.destination_id, "announcedAttachments": attachment_ids(delivery),
            "serviceType": service_type})
        return f"{created.submission_id}:{created.case_id}:{destination.destination_id}"

    def deliver(self, delivery: Delivery, transport_message_id: str, *, resend: bool = False,
                ready: Callable[[], None] | None = None) -> DeliveryReceipt:
        """Metadata and data sealed -> ``ready()`` -> (on a re-send: already submitted? then
        confirmed, nothing sent) -> each attachment sealed and uploaded in turn (one JWE held at a
        time) -> submit. A 409/422 to an upload or the submit may be a racing attempt that got
        through: the event log decides."""
        submission_id, case_id, destination_id = parse_transport_id(transport_message_id)
        self.check_size(delivery)
        destination, key = self.target(delivery)
        if destination.destination_id != destination_id:  # the authority moved: the submission is for the old one
            raise TransportIdInvalid(f"submission {submission_id} was created for destination {destination_id}, "
                                     f"the recipient is now at {destination.destination_id}")
        ids = attachment_ids(delivery)
        metadata = encrypt_jwe(json.dumps(self.metadata(delivery, ids)).encode(), key, cty="application/json")
        data = encrypt_jwe(delivery.content.message.data, key, cty=mime_type(delivery.content.message.content_type))
        if ready is not None:
            ready()  # nothing is sent before it returns
        accepted = DeliveryReceipt(transport_message_id=transport_message_id, accepted_on_resend=True)
        if resend and self._submitted(submission_id, case_id, destination_id):
            return accepted
        try:
            for attachment_id, part in zip(ids, delivery.content.attachments, strict=True):
                self._client.upload_attachment(submission_id, attachment_id,
                                               encrypt_jwe(part.data, key, cty=mime_type(part.content_type)))
            self._client.submit(submission_id, metadata, data)
        except FitConnectRefused as refused:
            if refused.status not in (409, 422):
                raise
            for delay in self._conflict_rereads:
                if delay > 0:
                    self._sleep(delay)
                if self._submitted(submission_id, case_id, destination_id):
                    return accepted
            raise
        return DeliveryReceipt(transport_message_id=transport_message_id)

    def _submitted(self, submission_id: str, case_id: str, destination_id: str) -> bool:
        """Whether an attempt got this submission submitted; ``TransportIdInvalid`` if the service
        dropped it unsubmitted (deleted, or its case unknown: a 404)."""
        status = self._status(submission_id, case_id, destination_id)
        if status.gone:
            raise TransportIdInvalid(f"submission {submission_id} was deleted before it was submitted")
        return status.submitted

    def metadata(self, delivery: Delivery, ids: list[str]) -> dict[str, Any]:
        """The metadata document of a delivery, checked against the model before it is encrypted."""
        schema = self._settings.payload_schema or delivery.message_type.payload_schema
        if not schema:
            raise MetadataInvalid(f"message type {delivery.message_type.code} has no payload schema "
                                  f"(set payload_schema of adapter '{self.name}')", reason="fitconnect_no_schema")
        document = build_metadata(delivery.content, ids, schema_uri=schema, service=delivery.service,
                                  service_name=self._settings.service_name, sender_reference=delivery.message_id)
        validate_metadata(document)
        return document

    def transport_report(self, transport_message_id: str) -> SubmissionStatus:
        """The submission's status from its case's verified event log (poll until ``final``)."""
        return self._status(*parse_transport_id(transport_message_id))

    def _status(self, submission_id: str, case_id: str, destination_id: str) -> SubmissionStatus:
        return read_status(self._client, self._set_keys, submission_id, case_id, destination_id)

    def close(self) -> None:
        self._client.close()
