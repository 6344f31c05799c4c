"""Every certificate the configuration puts in use: report, expiry metric, readiness.

``certificate_report`` walks the configuration (adapter signing identities, authorities' reader
certificates, the simulator's trust anchors) through the process's ``KeyStore`` (so nothing is
loaded twice and rotated files are picked up) and says for each certificate where it is used,
who it names, who issued it and how long it stays valid. A certificate that cannot be loaded is
reported with its error instead of stopping the report.

The metric ``hub_certificate_expiry_seconds{use, name}`` (use = signing | reader | trust | tls;
name = adapter name, authority id or "simulator") is computed at scrape time; when a label set
occurs twice (e.g. several trust anchors) the soonest expiry is exposed, which is what an alert
needs. No subject, serial or person data goes into labels.

Which keys name certificates is a convention every profile follows, so the report needs no
profile's code: an adapter section's ``signing_key`` / ``signing_cert`` (with
``signing_key_password_env`` / ``signing_key_password_file``), ``options.tls_client_cert`` (with
``options.tls_password_env``) and ``trust_anchors`` (use "trust"), an authority's ``certificate``.
A profile without them contributes nothing (fit-connect signs nothing: only its trust anchors).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from hub.config import HubConfig
from hub.errors import HubError
from hub.keystore import KeyStore

__all__ = [
    "EXPIRY_METRIC",
    "CertificateExpiryCollector",
    "CertificateInUse",
    "certificate_report",
    "check_exit_code",
    "readiness_problems",
    "register_certificate_expiry",
    "render_report",
    "worker_view",
]

EXPIRY_METRIC = "hub_certificate_expiry_seconds"
READINESS_USES = frozenset({"signing", "tls"})  # an expired one of these makes a worker unready


@dataclass(frozen=True)
class CertificateInUse:
    use: str  # signing | reader | trust | tls
    name: str  # adapter name, authority id or "simulator"
    where: str  # the configuration key, e.g. "adapters.alpha.signing_cert"
    path: Path
    subject: str | None = None
    issuer: str | None = None
    serial: str | None = None
    sha256: str | None = None
    not_before: _dt.datetime | None = None
    not_after: _dt.datetime | None = None
    seconds_left: float | None = None
    not_yet_valid: bool = False
    error: str | None = None  # set when the file could not be loaded

    @property
    def expired(self) -> bool:
        return self.seconds_left is not None and self.seconds_left <= 0



def _entry(use: str, name: str, where: str, path: Path, cert: x509.Certificate,
           now: _dt.datetime) -> CertificateInUse:
    return CertificateInUse(
        use=use, name=name, where=where, path=path,
        subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"), sha256=cert.fingerprint(hashes.SHA256()).hex(),
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        seconds_left=(cert.not_valid_after_utc - now).total_seconds(),
        not_yet_valid=cert.not_valid_before_utc > now,
    )


def _collect(use: str, name: str, where: str, path: Path, load: Callable[[], Iterable[x509.Certificate]],
             now: _dt.datetime) -> Iterator[CertificateInUse]:
    try:
        certs = list(load())
    except HubError as exc:
        yield CertificateInUse(use=use, name=name, where=where, path=path, error=str(exc))
        return
    for index, cert in enumerate(certs):
        yield _entry(use, name, where if index == 0 else f"{where}#{index}", path, cert, now)


def _client_certificate(keys: KeyStore, path: Path, password_env: str | None) -> list[x509.Certificate]:
    """The TLS client certificate itself (the first in its file), not the chain behind it."""
    return keys.certificates(path, password_env)[:1]


def _reader_certificate(keys: KeyStore, path: Path) -> list[x509.Certificate]:
    return [keys.certificate(path)]


def _path(value: Any, base: Path | None) -> Path | None:
    """A path key of a profile's section (text as written), absolute against the config's folder."""
    if value is None or value == "":
        return None
    path = Path(str(value))
    return path if path.is_absolute() or base is None else (base / path).resolve()


def worker_view(config: HubConfig, adapter: str) -> HubConfig:
    """The part of the configuration one adapter worker uses: its adapter, its authorities."""
    return config.model_copy(update={
        "adapters": {adapter: config.adapter(adapter)},
        "authorities": tuple(a for a in config.authorities if a.adapter == adapter),
        "simulator": config.simulator.model_copy(update={"trusted_signers": ()}),
    })


def certificate_report(config: HubConfig, keys: KeyStore, *, now: _dt.datetime | None = None,
                       adapter: str | None = None,
                       uses: Collection[str] | None = None) -> list[CertificateInUse]:
    """Every certificate in use by the configuration, in configuration order.

    ``adapter``: only what that adapter's worker uses. ``uses``: only these uses (readiness
    needs ``READINESS_USES`` only, which keeps a probe cheap with hundreds of authorities).
    """
    now = now or _dt.datetime.now(_dt.UTC)
    if adapter is not None:
        config = worker_view(config, adapter)
    wanted = set(uses) if uses is not None else {"signing", "reader", "trust", "tls"}
    report: list[CertificateInUse] = []
    base = config.source.parent if config.source is not None else None
    for name, ac in (config.adapters.items() if "signing" in wanted else ()):
        section = ac.section
        key, cert = _path(section.get("signing_key"), base), _path(section.get("signing_cert"), base)
        if key is None:
            continue
        where = f"adapters.{name}.signing_cert" if cert else f"adapters.{name}.signing_key"
        password_env = section.get("signing_key_password_env")
        password_file = _path(section.get("signing_key_password_file"), base)

        def identity(k: Path = key, c: Path | None = cert, pe: Any = password_env,
                     pf: Path | None = password_file) -> list[x509.Certificate]:
            return [keys.signing_identity(k, c, pe, password_file=pf).certificate]

        report.extend(_collect("signing", name, where, cert or key, identity, now))
    for name, ac in (config.adapters.items() if "tls" in wanted else ()):
        options = ac.section.get("options") or {}
        tls_cert = _path(options.get("tls_client_cert"), base) if isinstance(options, dict) else None
        if tls_cert is not None:  # mutual TLS client certificate (PEM, or PKCS#12 with tls_password_env)
            password_env = options.get("tls_password_env")
            report.extend(_collect("tls", name, f"adapters.{name}.options.tls_client_cert", tls_cert,
                                   partial(_client_certificate, keys, tls_cert, password_env), now))
    for authority in (config.authorities if "reader" in wanted else ()):
        certificate = _path(authority.addressing.get("certificate"), base)
        if certificate is not None:
            report.extend(_collect("reader", authority.id, f"authorities[{authority.id}].certificate",
                                   certificate, partial(_reader_certificate, keys, certificate), now))
    for name, ac in (config.adapters.items() if "trust" in wanted else ()):
        anchors = ac.section.get("trust_anchors") or ()
        for index, value in enumerate(anchors if isinstance(anchors, (list, tuple)) else ()):
            anchor = _path(value, base)
            if anchor is not None:  # e.g. fit-connect: the roots the destinations' key chains must reach
                report.extend(_collect("trust", name, f"adapters.{name}.trust_anchors[{index}]", anchor,
                                       partial(keys.certificates, anchor), now))
    for index, path in enumerate(config.simulator.trusted_signers if "trust" in wanted else ()):
        report.extend(_collect("trust", "simulator", f"simulator.trusted_signers[{index}]", path,
                               partial(keys.certificates, path), now))
    return report


def readiness_problems(report: Iterable[CertificateInUse]) -> list[str]:
    """Why a worker must not report ready: expired / unloadable signing (and TLS) certificates."""
    problems = []
    for c in report:
        if c.use not in READINESS_USES:
            continue
        if c.error:
            problems.append(f"{c.where}: cannot load {c.use} certificate ({c.error})")
        elif c.expired:
            problems.append(f"{c.where}: {c.use} certificate {c.subject} expired at {c.not_after:%Y-%m-%d %H:%M}Z")
        elif c.not_yet_valid:
            problems.append(f"{c.where}: {c.use} certificate {c.subject} not valid before "
                            f"{c.not_before:%Y-%m-%d %H:%M}Z")
    return problems


def _days(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 86400:.1f}"


def render_report(report: list[CertificateInUse], *, warn_days: float = 30.0) -> str:
    """A plain-text table for ``hub certs check`` plus one line per problem (no key material)."""
    rows = [("USE", "NAME", "WHERE", "SUBJECT", "ISSUER", "NOT AFTER (UTC)", "DAYS LEFT", "STATE")]
    for c in report:
        if c.error:
            state = "ERROR"
        elif c.expired:
            state = "EXPIRED"
        elif c.not_yet_valid:
            state = "NOT YET VALID"
        elif c.seconds_left is not None and c.seconds_left < warn_days * 86400:
            state = "EXPIRES SOON"
        else:
            state = "ok"
        rows.append((c.use, c.name, c.where, c.subject or "-", c.issuer or "-",
                     f"{c.not_after:%Y-%m-%d %H:%M}" if c.not_after else "-", _days(c.seconds_left), state))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    for c in report:
        if c.error:
            lines.append(f"error: {c.where} ({c.path}): {c.error}")
    lines.extend(f"not ready: {p}" for p in readiness_problems(report))
    return "\n".join(lines)


def check_exit_code(report: list[CertificateInUse]) -> int:
    """0 when every certificate loads and no signing/TLS certificate has expired, else 1."""
    return 1 if readiness_problems(report) or any(c.error for c in report) else 0


class CertificateExpiryCollector(Collector):
    """``hub_certificate_expiry_seconds`` computed from a fresh report at every scrape."""

    def __init__(self, config: HubConfig, keys: KeyStore,
                 clock: Callable[[], _dt.datetime] | None = None) -> None:
        self._config = config
        self._keys = keys
        self._clock = clock or (lambda: _dt.datetime.now(_dt.UTC))

    def values(self) -> dict[tuple[str, str], float]:
        soonest: dict[tuple[str, str], float] = {}
        for c in certificate_report(self._config, self._keys, now=self._clock()):
            if c.seconds_left is None:
                continue
            key = (c.use, c.name)
            soonest[key] = min(c.seconds_left, soonest.get(key, c.seconds_left))
        return soonest

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            EXPIRY_METRIC, "Seconds until the certificate expires (negative: expired); soonest per label set",
            labels=["use", "name"])
        for (use, name), seconds in sorted(self.values().items()):
            family.add_metric([use, name], seconds)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(EXPIRY_METRIC, "Seconds until the certificate expires", labels=["use", "name"])


def register_certificate_expiry(registry: CollectorRegistry, config: HubConfig, keys: KeyStore, *,
                                adapter: str | None = None) -> CertificateExpiryCollector:
    """Register the expiry gauge on ``registry``; with ``adapter`` only that adapter's signing
    certificate and its authorities' reader certificates (what one worker uses, no simulator)."""
    collector = CertificateExpiryCollector(worker_view(config, adapter) if adapter else config, keys)
    registry.register(collector)
    return collector
