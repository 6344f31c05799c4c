"""Pydantic models of what the Submission API 1.1.3 answers and what the sender reads from it.

Field names follow Python; the wire names (camelCase) are aliases. Unknown fields are ignored: a
newer service may add some. Values that the adapter must judge itself (a key's ``alg``, its ``x5c``)
are kept lenient here so that ``jose.validate_encryption_key`` can refuse them with a clear reason
instead of a parse error.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

EVENT_PREFIX = "https://schema.fitko.de/fit-connect/events/"
DestinationStatus = Literal["created", "active", "inactive", "decommissioned"]


class WireModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields ignored, frozen."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class Problem(WireModel):
    """An RFC 7807 problem (``application/problem+json`` answers, ``reject-submission`` events)."""

    type: str = "about:blank"
    title: str | None = None
    status: int | None = None
    detail: str | None = None
    instance: str | None = None


class ServiceType(WireModel):
    identifier: str
    name: str | None = None
    description: str | None = None


class SubmissionSchema(WireModel):
    schema_uri: str
    mime_type: str


class DestinationService(WireModel):
    identifier: str
    regions: tuple[str, ...] = ()
    submission_schemas: tuple[SubmissionSchema, ...] = ()


class ContactInformation(WireModel):
    legal_name: str
    address: str
    phone: str
    email: str
    unit: str | None = None


class Destination(WireModel):
    """``GET /v1/destinations/{id}`` (PublicDestination, or PrivateDestination with contact data)."""

    destination_id: str
    status: DestinationStatus
    encryption_kid: str
    services: tuple[DestinationService, ...] = Field(min_length=1)
    metadata_versions: tuple[str, ...] = Field(min_length=1)
    reply_channels: dict[str, Any] | None = None
    contact_information: ContactInformation | None = None

    def offers(self, service: str) -> bool:
        return any(s.identifier == service for s in self.services)


class JWK(BaseModel):
    """A public JSON Web Key as the API serves it (RFC 7517 names, so no camelCase aliases)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    kty: str
    kid: str = Field(min_length=1)
    n: str
    e: str
    alg: str | None = None
    key_ops: tuple[str, ...] = ()
    x5c: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, mode="json")


class JWKS(BaseModel):
    """``GET /.well-known/jwks.json``: the delivery service's SET signing keys."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    keys: tuple[JWK, ...]


class SubmissionCreated(WireModel):
    """``POST /v1/submissions`` -> 201."""

    destination_id: str
    submission_id: str = Field(min_length=32, max_length=36)
    case_id: str = Field(min_length=32, max_length=36)


class SubmissionReduced(WireModel):
    """``PUT /v1/submissions/{id}`` -> 202."""

    destination_id: str
    submission_id: str
    case_id: str
    attachments: tuple[str, ...] = ()
    service_type: ServiceType | None = None


class EventLog(WireModel):
    """``GET /v1/cases/{caseId}/events``: SETs, oldest first, at most 500 per page."""

    count: int | None = None
    offset: int | None = None
    total_count: int | None = None
    event_log: tuple[str, ...]


class Version(WireModel):
    major: int
    minor: int
    patch: int


class Info(WireModel):
    """``GET /v1/info``."""

    version: Version


class SetPayload(BaseModel):
    """The payload of a FIT-Connect Security Event Token (RFC 8417): exactly one event."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    schema_uri: str | None = Field(None, alias="$schema")
    jti: str
    iss: str
    iat: int
    sub: str
    txn: str | None = None
    events: dict[str, dict[str, Any]]

    @field_validator("events")
    @classmethod
    def _one_event(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if len(value) != 1:
            raise ValueError(f"a SET carries exactly one event, not {len(value)}")
        return value

    @property
    def event_uri(self) -> str:
        return next(iter(self.events))

    @property
    def event(self) -> str:
        """The event's short name (``submit-submission``), or its full URI if not a FIT-Connect one."""
        uri = self.event_uri
        return uri.removeprefix(EVENT_PREFIX)

    @property
    def problems(self) -> tuple[Problem, ...]:
        raw = self.events[self.event_uri].get("problems") or ()
        return tuple(Problem.model_validate(p) for p in raw if isinstance(p, dict))
