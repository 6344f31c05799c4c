"""How the FIT-Connect simulator behaves: destinations, credentials, checks, keys and faults.

Frozen dataclasses with defaults that give a working delivery service: ``FitConnectSimulatorSettings
(state_dir=...)`` serves one active destination offering one service. Faults set here are the
starting point; they change at runtime through ``Faults`` (Python) or ``/_simulator/faults``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

KeyFlaw = Literal["short", "alg", "no_x5c", "untrusted"]
KEY_FLAWS: tuple[str, ...] = ("short", "alg", "no_x5c", "untrusted")
DESTINATION_STATUSES = ("created", "active", "inactive", "decommissioned")
OUTAGE_MODES = ("503", "drop")
DEFAULT_SERVICE = "urn:de:fim:leika:leistung:99010003001006"
DEFAULT_SCHEMA_URI = "https://schema.fitko.de/fim/s00000121_1.0.0.schema.json"


@dataclass(frozen=True)
class SubmissionSchemaSpec:
    """A schema a service accepts for its data (``DestinationService.submissionSchemas``)."""

    schema_uri: str = DEFAULT_SCHEMA_URI
    mime_type: str = "application/json"  # or application/xml


@dataclass(frozen=True)
class ServiceSpec:
    """A service a destination offers: a LeiKa URN, the regions (ARS with "DE") and schemas."""

    identifier: str = DEFAULT_SERVICE
    regions: tuple[str, ...] = ("DE09",)
    submission_schemas: tuple[SubmissionSchemaSpec, ...] = (SubmissionSchemaSpec(),)


@dataclass(frozen=True)
class DestinationSpec:
    """A destination (Zustellpunkt); ``key_flaw`` serves a deliberately bad encryption key."""

    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: str = "active"
    services: tuple[ServiceSpec, ...] = (ServiceSpec(),)
    key_flaw: KeyFlaw | None = None
    metadata_versions: tuple[str, ...] = ("1.0.0",)

    def __post_init__(self) -> None:
        uuid.UUID(self.id)  # ValueError for anything that is not a UUID
        if self.status not in DESTINATION_STATUSES:
            raise ValueError(f"destination status must be one of {DESTINATION_STATUSES}")
        if self.key_flaw is not None and self.key_flaw not in KEY_FLAWS:
            raise ValueError(f"key_flaw must be one of {KEY_FLAWS}")
        if not self.services:
            raise ValueError("a destination offers at least one service")


@dataclass(frozen=True)
class Outage:
    """``start`` seconds after it is set, for ``duration`` seconds, every API call fails: ``mode``
    "503" (problem+json with Retry-After) or "drop" (connection closed without an answer)."""

    start: float
    duration: float
    mode: str = "503"

    def __post_init__(self) -> None:
        if self.start < 0 or self.duration <= 0:
            raise ValueError("outage start must be >= 0 and duration > 0 seconds")
        if self.mode not in OUTAGE_MODES:
            raise ValueError(f"outage mode must be one of {OUTAGE_MODES}")


@dataclass(frozen=True)
class FaultSettings:
    """Standing fault injection at start-up; ``seed`` makes the random choices repeatable."""

    rate_429: float = 0.0
    retry_after: int = 1  # seconds, sent with every 429 and outage 503
    rate_5xx: float = 0.0
    status_5xx: int = 500
    latency: float = 0.0  # seconds added to every API answer
    outage: Outage | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("rate_429", "rate_5xx"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if not 500 <= self.status_5xx <= 599:
            raise ValueError("status_5xx must be a 5xx status")
        if self.latency < 0 or self.retry_after < 0:
            raise ValueError("latency and retry_after must be >= 0")


@dataclass(frozen=True)
class FitConnectSimulatorSettings:
    """Everything the simulator needs; ``state_dir`` keeps the throwaway PKI between runs."""

    state_dir: Path
    destinations: tuple[DestinationSpec, ...] = (DestinationSpec(),)
    client_id: str = "fit-connect-simulator-client"
    client_secret: str = "fit-connect-simulator-secret"
    token_lifetime: float = 1800.0  # seconds (FIT-Connect: at most 30 min)
    openapi: Path | None = None  # submission-api-1.1.3.yaml: check every request and response
    metadata_schema: Path | None = None  # metadata.schema.json 1.0.0: check every metadata document
    auto_accept: bool = False  # act as the receiver: accept each submission right after submit
    faults: FaultSettings = FaultSettings()
    host: str = "127.0.0.1"
    port: int = 0
    # seconds (monotonic): token expiry and outage windows; tests pass a clock they step
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)

    def __post_init__(self) -> None:
        ids = [d.id for d in self.destinations]
        if len(set(ids)) != len(ids):
            raise ValueError("destination ids must be unique")
        if self.token_lifetime <= 0:
            raise ValueError("token_lifetime must be > 0 seconds")
        if not self.client_id or not self.client_secret:
            raise ValueError("client_id and client_secret must not be empty")
