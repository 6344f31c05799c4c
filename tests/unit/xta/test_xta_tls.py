"""Mutual TLS: client certificate from PEM or PKCS#12 (password from an environment variable), server
verified against a configured CA bundle; the simulator serves HTTPS and requires client certificates."""

from __future__ import annotations

import pytest
from cryptography import x509
from xta_testdata import AUTHOR

from hub.errors import ConfigError, EndpointUnavailable, XtaFault
from tests.support.testtls import P12_PASSWORD, TlsPki, make_tls_pki
from transport.xta.client import XtaClient, XtaEndpoint
from transport.xta.simulator import ServerTls, SimulatorConfig, serve
from transport.xta.tls import TlsSettings, certificate_fingerprint


@pytest.fixture(scope="module")
def tls_pki(tmp_path_factory) -> TlsPki:
    return make_tls_pki(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def https(tls_pki):
    fingerprint = certificate_fingerprint(x509.load_pem_x509_certificate(tls_pki.client_cert.read_bytes()))
    config = SimulatorConfig(tls=ServerTls(tls_pki.server_cert, tls_pki.server_key, client_ca=tls_pki.ca_cert,
                                           require_client_cert=True),
                             client_certificates={AUTHOR.identifier: fingerprint})
    with serve(config) as running:
        yield running


def _client(url: str, tls: TlsSettings) -> XtaClient:
    return XtaClient(XtaEndpoint(url, timeout=5, tls=tls))


def test_pem_client_certificate_is_accepted(https, tls_pki) -> None:
    assert https.url.startswith("https://")
    client = _client(https.url, TlsSettings(tls_pki.client_cert, tls_pki.client_key, ca_bundle=tls_pki.ca_cert))
    assert client.check_account_active(AUTHOR)
    assert client.create_message_id(AUTHOR)


def test_pkcs12_with_password_from_the_environment(https, tls_pki, monkeypatch) -> None:
    monkeypatch.setenv("XTA_TEST_P12_PASSWORD", P12_PASSWORD)
    client = _client(https.url, TlsSettings(tls_pki.client_p12, password_env="XTA_TEST_P12_PASSWORD",
                                            ca_bundle=tls_pki.ca_cert))
    assert client.create_message_id(AUTHOR)


@pytest.mark.parametrize("case", ["no_client_cert", "rogue_client_cert"])
def test_refused_without_or_with_a_foreign_client_certificate(https, tls_pki, case) -> None:
    tls = TlsSettings(ca_bundle=tls_pki.ca_cert) if case == "no_client_cert" else TlsSettings(
        tls_pki.rogue_client_cert, tls_pki.rogue_client_key, ca_bundle=tls_pki.ca_cert)
    before = https.store.stats()["calls"].get("createMessageId", 0)
    with pytest.raises(EndpointUnavailable, match="TLS handshake failed") as info:
        _client(https.url, tls).create_message_id(AUTHOR)
    assert info.value.reason == "tls_handshake_failed" and info.value.transient
    assert https.store.stats()["calls"].get("createMessageId", 0) == before  # nothing reached the SOAP layer


def test_valid_certificate_of_another_account_is_9014(https, tls_pki) -> None:
    client = _client(https.url, TlsSettings(tls_pki.other_client_cert, tls_pki.other_client_key,
                                            ca_bundle=tls_pki.ca_cert))
    with pytest.raises(XtaFault) as info:
        client.create_message_id(AUTHOR)
    assert (info.value.exception_type, info.value.code) == ("PermissionDeniedException", "9014")


def test_server_is_verified_against_the_configured_bundle(https, tls_pki) -> None:
    client = _client(https.url, TlsSettings(tls_pki.client_cert, tls_pki.client_key,
                                            ca_bundle=tls_pki.rogue_ca_cert))
    with pytest.raises(EndpointUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        client.create_message_id(AUTHOR)
    system_only = _client(https.url, TlsSettings(tls_pki.client_cert, tls_pki.client_key))
    with pytest.raises(EndpointUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        system_only.create_message_id(AUTHOR)


def test_configuration_errors(tls_pki, monkeypatch) -> None:
    monkeypatch.delenv("XTA_MISSING_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="XTA_MISSING_PASSWORD"):
        _client("https://127.0.0.1:1/xta", TlsSettings(tls_pki.client_p12, password_env="XTA_MISSING_PASSWORD"))
    monkeypatch.setenv("XTA_WRONG_PASSWORD", "wrong")
    with pytest.raises(ConfigError, match="PKCS#12"):
        _client("https://127.0.0.1:1/xta", TlsSettings(tls_pki.client_p12, password_env="XTA_WRONG_PASSWORD"))
    with pytest.raises(ConfigError, match="https"):
        _client("http://127.0.0.1:1/xta", TlsSettings(tls_pki.client_cert, tls_pki.client_key))
    with pytest.raises(ConfigError, match="CA bundle"):
        _client("https://127.0.0.1:1/xta", TlsSettings(ca_bundle=tls_pki.ca_cert.parent / "missing.pem"))


def test_plain_http_client_cannot_talk_to_the_https_simulator(https) -> None:
    with pytest.raises(EndpointUnavailable):
        XtaClient(XtaEndpoint(https.url.replace("https://", "http://"), timeout=5)).create_message_id(AUTHOR)
