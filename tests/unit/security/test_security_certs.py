"""Certificates in use: report, expiry metric (low-cardinality labels), readiness, CLI rendering."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hub.certs import (
    EXPIRY_METRIC,
    certificate_report,
    check_exit_code,
    readiness_problems,
    register_certificate_expiry,
    render_report,
)
from hub.config import HubConfig, parse_config
from hub.keystore import KeyStore
from transport.security.keys import load_private_key

if TYPE_CHECKING:  # conftest is not importable at run time
    from conftest import Pki

AUTHOR = {"identifier": "alp:000001", "name": "Testportal"}


def config_for(tpki: Pki, *, alpha_cert: Path | None = None, reader_cert: Path | None = None,
               trusted: list[Path] | None = None) -> HubConfig:
    key, cert = tpki.paths["portal"]
    adapter: dict[str, Any] = {"endpoint": "http://127.0.0.1:1/xta", "author": AUTHOR}
    raw = {
        "adapters": {"alpha": {**adapter, "signing_key": str(key), "signing_cert": str(alpha_cert or cert)},
                     "beta": {**adapter, "signing_key": str(tpki.paths["other"][0]),
                              "signing_cert": str(tpki.paths["other"][1])}},
        "authorities": [
            {"id": "azr:000100", "name": "ABH 100", "adapter": "alpha",
             "certificate": str(reader_cert or tpki.paths["reader"][1])},
            {"id": "azr:000300", "name": "ABH 300", "adapter": "beta", "certificate": str(tpki.paths["reader"][1])}],
        "simulator": {"trusted_signers": [str(p) for p in (trusted or [tpki.paths["ca"][1]])]},
    }
    return parse_config(raw, base=Path("/"), environ={})


def issue(tpki: Pki, directory: Path, name: str, *, days_from: int, days_to: int) -> Path:
    """A certificate for the portal's key (so key and cert still match) with chosen validity."""
    now = dt.datetime.now(dt.UTC)
    key = tpki.portal.private_key
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)]))
            .issuer_name(tpki.ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + dt.timedelta(days=days_from)).not_valid_after(now + dt.timedelta(days=days_to))
            .sign(load_private_key(tpki.paths["ca"][0]), hashes.SHA256()))
    path = directory / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_report_lists_every_certificate_with_where_it_is_used(tpki: Pki) -> None:
    report = certificate_report(config_for(tpki), KeyStore())
    assert [(c.use, c.name, c.where) for c in report] == [
        ("signing", "alpha", "adapters.alpha.signing_cert"),
        ("signing", "beta", "adapters.beta.signing_cert"),
        ("reader", "azr:000100", "authorities[azr:000100].certificate"),
        ("reader", "azr:000300", "authorities[azr:000300].certificate"),
        ("trust", "simulator", "simulator.trusted_signers[0]"),
    ]
    alpha = report[0]
    assert alpha.subject == tpki.portal.certificate.subject.rfc4514_string()
    assert alpha.issuer == tpki.ca.subject.rfc4514_string()
    assert alpha.not_after == tpki.portal.certificate.not_valid_after_utc
    assert 300 * 86400 < alpha.seconds_left < 366 * 86400
    assert readiness_problems(report) == [] and check_exit_code(report) == 0


def test_expired_signing_certificate_fails_readiness(tpki: Pki, tmp_path: Path) -> None:
    expired = issue(tpki, tmp_path, "expired-portal", days_from=-30, days_to=-1)
    report = certificate_report(config_for(tpki, alpha_cert=expired), KeyStore())
    [problem] = readiness_problems(report)
    assert problem.startswith("adapters.alpha.signing_cert: signing certificate CN=expired-portal expired at ")
    assert check_exit_code(report) == 1
    text = render_report(report)
    assert "EXPIRED" in text and "not ready: adapters.alpha.signing_cert" in text


def test_expired_reader_certificate_is_reported_but_does_not_fail_readiness(tpki: Pki, tmp_path: Path) -> None:
    expired = issue(tpki, tmp_path, "expired-reader", days_from=-30, days_to=-1)
    report = certificate_report(config_for(tpki, reader_cert=expired), KeyStore())
    assert [c.expired for c in report if c.use == "reader"] == [True, False]
    assert readiness_problems(report) == []


def test_unloadable_certificate_is_an_error_entry(tpki: Pki, tmp_path: Path) -> None:
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnope\n")
    report = certificate_report(config_for(tpki, trusted=[tpki.paths["ca"][1], broken]), KeyStore())
    [entry] = [c for c in report if c.where == "simulator.trusted_signers[1]"]
    assert entry.error and "broken.pem" in entry.error and entry.subject is None
    assert check_exit_code(report) == 1
    assert "error: simulator.trusted_signers[1]" in render_report(report)


def test_soon_expiring_is_flagged(tpki: Pki, tmp_path: Path) -> None:
    soon = issue(tpki, tmp_path, "soon", days_from=-1, days_to=10)
    text = render_report(certificate_report(config_for(tpki, alpha_cert=soon), KeyStore()), warn_days=30)
    assert "EXPIRES SOON" in text


def metric_samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    [family] = [f for f in text_string_to_metric_families(generate_latest(registry).decode())
                if f.name == EXPIRY_METRIC]
    return {(s.labels["use"], s.labels["name"]): s.value for s in family.samples}


def test_expiry_gauge_has_low_cardinality_labels(tpki: Pki) -> None:
    registry = CollectorRegistry()
    register_certificate_expiry(registry, config_for(tpki, trusted=[tpki.paths["ca"][1]] * 2), KeyStore())
    samples = metric_samples(registry)
    assert set(samples) == {("signing", "alpha"), ("signing", "beta"), ("reader", "azr:000100"),
                            ("reader", "azr:000300"), ("trust", "simulator")}
    exposition = generate_latest(registry).decode()
    for line in exposition.splitlines():
        if line.startswith(EXPIRY_METRIC):
            assert line.split("{")[1].split("}")[0].count("=") == 2  # use and name, nothing else
    assert "CN=" not in exposition and "portal" not in exposition


def test_expiry_gauge_per_worker_and_after_rotation(tpki: Pki, tmp_path: Path) -> None:
    cert = tmp_path / "alpha.pem"
    shutil.copyfile(tpki.paths["portal"][1], cert)
    registry = CollectorRegistry()
    keys = KeyStore(check_interval=0)
    register_certificate_expiry(registry, config_for(tpki, alpha_cert=cert), keys, adapter="alpha")
    before = metric_samples(registry)
    assert set(before) == {("signing", "alpha"), ("reader", "azr:000100")}
    renewed = issue(tpki, tmp_path, "renewed", days_from=-1, days_to=800)
    os.replace(renewed, cert)
    after = metric_samples(registry)
    assert after[("signing", "alpha")] > before[("signing", "alpha")] + 300 * 86400


def test_render_report_has_no_key_material(tpki: Pki) -> None:
    text = render_report(certificate_report(config_for(tpki), KeyStore()))
    assert "PRIVATE KEY" not in text and "BEGIN" not in text
    assert text.splitlines()[0].split()[:3] == ["USE", "NAME", "WHERE"]



def test_worker_readiness_view_is_cheap_and_scoped(tpki: Pki, tmp_path: Path) -> None:
    expired = issue(tpki, tmp_path, "expired-portal", days_from=-30, days_to=-1)
    config = config_for(tpki, alpha_cert=expired)
    alpha = certificate_report(config, KeyStore(), adapter="alpha", uses={"signing"})
    assert [c.where for c in alpha] == ["adapters.alpha.signing_cert"]
    assert readiness_problems(alpha)
    assert readiness_problems(certificate_report(config, KeyStore(), adapter="beta", uses={"signing"})) == []
    assert [c.where for c in certificate_report(config, KeyStore(), adapter="beta")] == [
        "adapters.beta.signing_cert", "authorities[azr:000300].certificate"]


def test_a_fit_connect_adapters_trust_anchors_are_watched(tpki: Pki, tmp_path: Path) -> None:
    """fit-connect signs nothing; what it depends on are the roots its destinations' key chains must
    reach: an expiring anchor is on the expiry metric like any trust anchor."""
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    raw = {
        "adapters": {"fit": {"profile": "fit-connect", "submission_api": "http://127.0.0.1:1",
                             "token_url": "http://127.0.0.1:1/token", "client_id": "c",
                             "client_secret_file": str(secret), "trust_anchors": [str(tpki.paths["ca"][1])]}},
        "authorities": [{"id": "azr:000500", "name": "ABH 500", "adapter": "fit",
                         "destination_id": "6b1ad3a6-5f1e-4a53-9c36-2b6e0f4d7a10"}],
    }
    report = certificate_report(parse_config(raw, base=Path("/"), environ={}), KeyStore())
    assert [(c.use, c.name, c.where) for c in report] == [("trust", "fit", "adapters.fit.trust_anchors[0]")]
    assert report[0].subject == tpki.ca.subject.rfc4514_string() and report[0].error is None
