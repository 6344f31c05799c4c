from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from adapters.xta2 import Xta2Adapter
from hub.certs import READINESS_USES, certificate_report, readiness_problems
from hub.config import parse_config
from hub.keystore import KeyStore
from tests.support.deliveries import xta_delivery
from transport.content import Content, ContentPart
from transport.security.keys import load_certificate, load_signing_identity
from transport.security.signature import SIGNATURE_FILENAME
from transport.xta.client import XtaEndpoint
from transport.xta.container import parse_content_container
from transport.xta.metadata import MessageType, Party

RSA_PSS = "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1"


def _expired_cert(path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old tls client")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=400)).not_valid_after(now - dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _config(pki, tls_cert: Path):
    key, cert = pki["portal"]
    return parse_config({
        "adapters": {"a": {"endpoint": "https://127.0.0.1:1/xta", "signing_key": str(key), "signing_cert": str(cert),
                           "author": {"identifier": "alp:1"}, "options": {"tls_client_cert": str(tls_cert)}}},
        "authorities": [{"id": "azr:000100", "name": "ABH", "adapter": "a", "certificate": str(pki["azr-000100"][1])}],
    }, base=Path("/"), environ={})


def test_tls_client_certificate_is_reported_and_an_expired_one_fails_readiness(pki, tmp_path: Path) -> None:
    good = _config(pki, pki["portal"][1])
    report = certificate_report(good, KeyStore(), adapter="a", uses=READINESS_USES)
    assert {(c.use, c.where) for c in report} >= {("tls", "adapters.a.options.tls_client_cert")}
    assert readiness_problems(report) == []
    expired = _config(pki, _expired_cert(tmp_path / "old.pem"))
    problems = readiness_problems(certificate_report(expired, KeyStore(), adapter="a", uses=READINESS_USES))
    assert len(problems) == 1 and "tls_client_cert" in problems[0]


def test_signature_method_is_a_profile_option(pki) -> None:
    identity = load_signing_identity(*pki["portal"])
    adapter = Xta2Adapter("a", endpoint=XtaEndpoint("http://127.0.0.1:1/xta"), author=Party("alp:1"),
                          identity=identity, options={"signature_method": RSA_PSS, "encrypt": False, "mtom": False})
    delivery = xta_delivery(Content(ContentPart(b"<a/>", "application/xml", "a.xml")), message_id="m",
                            author=Party("alp:1"), reader=Party("azr:000100"),
                            certificate=load_certificate(pki["azr-000100"][1]), service="s",
                            message_type=MessageType("t", "urn:l", "1", "urn:p"), business_scenario="b")
    with adapter.prepare_container(delivery) as container:
        content = parse_content_container(container.element)
    adapter.close()
    [signature] = [p for p in content.attachments if p.filename == SIGNATURE_FILENAME]
    assert f'Algorithm="{RSA_PSS}"'.encode() in signature.data
