"""Mutual TLS end to end: a worker delivers over HTTPS to a simulator that requires client
certificates. The right certificate (PKCS#12, password from an environment variable) is accepted;
no certificate or one from a foreign CA is refused in the TLS handshake (transient: retry ladder, then
dead letter ``tls_handshake_failed``); a valid certificate bound to another account gets 9014."""

from __future__ import annotations

import pytest
from cryptography import x509

from hub.status import DEAD_LETTERED, DELIVERED
from tests.integration.helpers import (
    AUTHOR,
    StatusCollector,
    make_config,
    running_worker,
)
from tests.integration.test_xta_support import (
    application,
    dead_letters,
    outcome,
    publish,
    retries,
    sim_config,
)
from tests.support.testtls import P12_PASSWORD, TlsPki, make_tls_pki
from transport.xta.simulator import ServerTls, serve
from transport.xta.tls import certificate_fingerprint

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def tls_pki(tmp_path_factory) -> TlsPki:
    return make_tls_pki(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def https_sim(pki, tls_pki):
    fingerprint = certificate_fingerprint(x509.load_pem_x509_certificate(tls_pki.client_cert.read_bytes()))
    config = sim_config(pki, tls=ServerTls(tls_pki.server_cert, tls_pki.server_key, client_ca=tls_pki.ca_cert,
                                           require_client_cert=True),
                        client_certificates={AUTHOR["identifier"]: fingerprint})
    with serve(config) as running:
        yield running


def _run(broker_url, pki, sim, options, seed):
    config = make_config(broker_url, pki, sim.url, retry_delays=[1], adapter_overrides={"options": options})
    envelope = application("azr:000100", seed)
    status = StatusCollector(broker_url)
    try:
        with running_worker(config, "alpha"):
            publish(config, [envelope])
            final = outcome(status, envelope.message_id)
        return envelope, final, retries(status, envelope.message_id)
    finally:
        status.close()


def test_right_client_certificate_is_accepted(broker_url, pki, tls_pki, https_sim, monkeypatch) -> None:
    monkeypatch.setenv("HUB_TEST_XTA_P12_PASSWORD", P12_PASSWORD)
    options = {"tls_client_cert": str(tls_pki.client_p12), "tls_password_env": "HUB_TEST_XTA_P12_PASSWORD",
               "tls_ca_bundle": str(tls_pki.ca_cert)}
    envelope, final, attempts = _run(broker_url, pki, https_sim, options, 8101)
    assert final.event == DELIVERED and attempts == []
    stored = https_sim.store.get(final.detail["xta_message_id"])
    assert stored.verified and stored.parts[0].data == envelope.content.message.data


@pytest.mark.parametrize("case", ["without_certificate", "foreign_ca_certificate"])
def test_refused_without_or_with_a_wrong_certificate(broker_url, pki, tls_pki, https_sim, case) -> None:
    options = {"tls_ca_bundle": str(tls_pki.ca_cert)}
    if case == "foreign_ca_certificate":
        options.update(tls_client_cert=str(tls_pki.rogue_client_cert), tls_client_key=str(tls_pki.rogue_client_key))
    before = len(https_sim.store)
    envelope, final, attempts = _run(broker_url, pki, https_sim, options, 8110 + len(case))
    assert final.event == DEAD_LETTERED and attempts == [1]  # transient: retried, then given up
    headers = dead_letters(broker_url, {envelope.message_id})[envelope.message_id]
    assert headers["x-hub-reason"] == "tls_handshake_failed"
    assert headers["x-hub-error-class"] == "EndpointUnavailable" and headers["x-hub-attempts"] == 2
    assert len(https_sim.store) == before


def test_valid_certificate_of_another_account_is_refused_for_good(broker_url, pki, tls_pki, https_sim) -> None:
    options = {"tls_client_cert": str(tls_pki.other_client_cert), "tls_client_key": str(tls_pki.other_client_key),
               "tls_ca_bundle": str(tls_pki.ca_cert)}
    envelope, final, attempts = _run(broker_url, pki, https_sim, options, 8120)
    assert final.event == DEAD_LETTERED and attempts == []
    headers = dead_letters(broker_url, {envelope.message_id})[envelope.message_id]
    assert headers["x-hub-reason"] == "xta_9014" and headers["x-hub-xta-code"] == "9014"
