"""How the XTA simulator behaves: accounts, readers, reports, limits, TLS and fault injection.

Every field has a default that accepts everything from everyone, so ``SimulatorConfig()`` is a
working XTA server. ``ChaosConfig`` describes standing fault injection (an error code at a rate,
dropped connections, added latency, outage windows); ``InjectedFault`` is a one-off failure for the
next N matching calls (tests, ``POST /_sim/inject``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

ACCOUNT_LOCKED, ACCOUNT_EXPIRED = "locked", "expired"
# answers that make no sense (transport.xta.simulator.garbage): a broken deploy or a gateway in front
GARBAGE_KINDS = ("empty-body", "wrong-body", "html", "text", "empty", "soap11", "truncated-mtom")
OUTAGE_MODES = ("503", "drop", *GARBAGE_KINDS)  # plus any XTA error code, e.g. "9030"


@dataclass(frozen=True)
class FaultRate:
    """Answer a share ``rate`` (0..1) of calls (of ``operation``, or all) with an XTA fault ``code``
    or, with ``http_status``, a plain HTTP error without SOAP fault."""

    rate: float
    code: str | None = None
    http_status: int | None = None
    operation: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if (self.code is None) == (self.http_status is None):
            raise ValueError("a fault rate needs exactly one of code or http_status")
        if self.code is not None and not (isinstance(self.code, str) and self.code.isdigit()):
            raise ValueError("code must be a string like '9030'")


@dataclass(frozen=True)
class Outage:
    """From ``start`` seconds after the simulator started, for ``duration`` seconds, every SOAP call
    fails: ``mode`` "503" (HTTP 503), "drop" (connection closed without answer), an XTA code, or one
    of ``GARBAGE_KINDS`` (a nonsensical answer of that kind, e.g. "html", "empty-body")."""

    start: float
    duration: float
    mode: str = "503"

    def __post_init__(self) -> None:
        if self.start < 0 or self.duration <= 0:
            raise ValueError("outage start must be >= 0 and duration > 0 seconds")
        if self.mode not in OUTAGE_MODES and not self.mode.isdigit():
            raise ValueError(f"outage mode must be one of {OUTAGE_MODES} or an XTA error code")


@dataclass(frozen=True)
class ChaosConfig:
    """Standing fault injection; ``seed`` makes the random choices repeatable."""

    fault_rates: tuple[FaultRate, ...] = ()
    drop_rate: float = 0.0  # share of SOAP calls whose connection is closed without an answer
    outages: tuple[Outage, ...] = ()
    latency: float = 0.0  # seconds added to every SOAP answer (on top of SimulatorConfig.latency)
    latency_jitter: float = 0.0  # plus a uniform random 0..jitter seconds
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.drop_rate <= 1.0:
            raise ValueError("drop_rate must be between 0 and 1")
        if self.latency < 0 or self.latency_jitter < 0:
            raise ValueError("latency must be >= 0")

    @classmethod
    def from_mapping(cls, spec: Mapping[str, Any]) -> ChaosConfig:
        """From JSON (``POST /_sim/chaos``): fault_rates/outages as lists of objects."""
        spec = dict(spec)
        rates = tuple(FaultRate(**r) for r in spec.pop("fault_rates", ()))
        outages = tuple(Outage(**o) for o in spec.pop("outages", ()))
        return cls(fault_rates=rates, outages=outages, **spec)


@dataclass
class InjectedFault:
    """A failure the next ``count`` matching SOAP calls get instead of being processed.

    ``drop`` closes the connection without an answer; with ``after_processing`` the call is processed
    first (e.g. the message is accepted) and then the answer is lost, as when a server or network
    fails between commit and reply. ``latency`` delays the answer of the matching calls.
    """

    operation: str | None = None  # "sendMessage" etc.; None = any operation
    http_status: int | None = None  # plain HTTP error without SOAP fault (e.g. 503)
    code: str | None = None  # XTA fault with this errorCode (e.g. "9030")
    garbage: bool | str = False  # a nonsensical answer: one of GARBAGE_KINDS (True: "text", not XML)
    drop: bool = False
    after_processing: bool = False
    latency: float = 0.0
    count: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or self.count < 1:
            raise ValueError("count must be a positive integer")
        if self.http_status is not None and not (isinstance(self.http_status, int) and 100 <= self.http_status < 600):
            raise ValueError("http_status must be an HTTP status code")
        if self.code is not None and not isinstance(self.code, str):
            raise ValueError("code must be a string like '9030'")
        if not isinstance(self.latency, (int, float)) or self.latency < 0:
            raise ValueError("latency must be a number of seconds >= 0")
        if self.after_processing and not self.drop:
            raise ValueError("after_processing only applies to drop")
        if not isinstance(self.garbage, bool) and self.garbage not in GARBAGE_KINDS:
            raise ValueError(f"garbage must be true or one of {GARBAGE_KINDS}")

    @property
    def garbage_kind(self) -> str | None:
        """The kind of nonsensical answer (``garbage = True`` is "text"), None for none."""
        if isinstance(self.garbage, str):
            return self.garbage
        return "text" if self.garbage else None


@dataclass(frozen=True)
class ServerTls:
    """HTTPS for the simulator; with ``client_ca`` client certificates are checked (required with
    ``require_client_cert``), and the presented one is matched against ``client_certificates``."""

    cert: Path
    key: Path
    client_ca: Path | None = None
    require_client_cert: bool = False


@dataclass(frozen=True)
class SimulatorConfig:
    """How the simulated XTA server behaves; the defaults accept everything from everyone."""

    reader_keys: Mapping[str, Any] = field(default_factory=dict)  # reader id -> RSA private key
    trusted_signers: Sequence[x509.Certificate] = ()
    # True: content that cannot be decrypted with the reader's key, or whose signature is not
    # accepted, is stored as received (verified=False) instead of refused with 9052 - as a real XTA
    # server, which never opens end-to-end content, hands it to the reader (forged/undecryptable tests)
    accept_unverified: bool = False
    accounts: frozenset[str] | None = None  # author ids allowed; None = any (else 9012)
    latency: float = 0.0  # seconds added to every SOAP response
    store_dir: Path | None = None
    max_container_bytes: int = 40 * 1024 * 1024  # 9023 above it
    server_identity: str = "xta-simulator"
    # accounts and certificates (PermissionDenied 9010-9014)
    account_states: Mapping[str, str] = field(default_factory=dict)  # author -> "locked" 9011 / "expired" 9010
    booked_services: Mapping[str, frozenset[str]] | None = None  # author -> services booked (else 9013)
    client_certificates: Mapping[str, str] = field(default_factory=dict)  # author -> SHA-256 of its TLS cert (9014)
    readers: frozenset[str] | None = None  # MsgBox accounts; None = any reader may fetch its mailbox
    # directory (lookupService) and delivery
    services: Mapping[str, frozenset[str]] | None = None  # reader -> services offered; None = all
    reader_certificates: Mapping[str, x509.Certificate] = field(default_factory=dict)  # returned by lookupService
    sync_services: frozenset[str] | None = None  # None: both modes; else only these sync (9080/9081)
    # transport reports
    report_delay: float = 0.0  # seconds a report stays 0 (open) after acceptance
    report_status: Mapping[str, int] = field(default_factory=dict)  # reader -> final status (default 1 green)
    # MsgBox
    mtom_responses: bool = True  # content-bearing answers (getMessage, sendMessageSync) as MTOM
    status_list_page: int = 100  # entries per getStatusList page unless maxListItems is smaller
    # fault injection and transport
    chaos: ChaosConfig = ChaosConfig()
    tls: ServerTls | None = None
    # seconds since the epoch: anchors report delays and outage windows; tests pass a clock they step
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)
