"""Test PKI and keys for the FIT-Connect tests, made once per session (4096-bit keys cost ~1 s each).

A root and an intermediate CA (the trust anchor is the root), the destination's encryption key
(RSA 4096, certificate from the intermediate), a signing key for SETs (delivery service and
destination), a 2048-bit key, an unrelated root ("mallory") and an expired encryption certificate.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from adapters.base import AdapterContext, Delivery, MessageKind, Recipient
from adapters.fitconnect import FitConnectAdapter, FitConnectAddress
from tests.unit.fitconnect.fake_api import FakeApi, serve
from transport.content import Content, ContentPart

NOW = dt.datetime.now(dt.UTC)


def _b64url_int(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _key(bits: int, cache: Path, name: str) -> rsa.RSAPrivateKey:
    path = cache / f"{name}.pem"
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return key


def _cert(subject: str, key: rsa.RSAPrivateKey, issuer: x509.Certificate | None, issuer_key: rsa.RSAPrivateKey,
          *, ca: bool, not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
          usage: str | None = None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer.subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before or NOW - dt.timedelta(days=1))
               .not_valid_after(not_after or NOW + dt.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if usage is not None:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=usage == "sig", content_commitment=usage == "sig", key_encipherment=usage == "enc",
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class Pki:
    root: x509.Certificate
    root_pem: Path
    intermediate: x509.Certificate
    enc_key: rsa.RSAPrivateKey
    enc_cert: x509.Certificate
    sig_key: rsa.RSAPrivateKey
    sig_cert: x509.Certificate
    small_key: rsa.RSAPrivateKey
    small_cert: x509.Certificate
    mallory_root: x509.Certificate
    mallory_cert: x509.Certificate  # enc_key certified by mallory
    expired_cert: x509.Certificate  # enc_key, validity over
    enc_key_pem: Path
    sig_key_pem: Path


def jwk(key: rsa.RSAPrivateKey | rsa.RSAPublicKey, chain: list[x509.Certificate], *, kid: str,
        alg: str | None = "RSA-OAEP-256", ops: tuple[str, ...] = ("wrapKey",)) -> dict[str, Any]:
    """A public JWK as the API serves it, with an x5c chain."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    numbers = public.public_numbers()
    out: dict[str, Any] = {"kty": "RSA", "kid": kid, "key_ops": list(ops), "n": _b64url_int(numbers.n),
                           "e": _b64url_int(numbers.e),
                           "x5c": [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain]}
    if alg is not None:
        out["alg"] = alg
    return out


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    cache = tmp_path_factory.mktemp("fitconnect-pki")
    root_key = _key(2048, cache, "root")
    root = _cert("Test Verwaltungs-PKI Root", root_key, None, root_key, ca=True)
    inter_key = _key(2048, cache, "intermediate")
    inter = _cert("Test Verwaltungs-PKI CA 1", inter_key, root, root_key, ca=True)
    enc_key = _key(4096, cache, "destination-enc")
    sig_key = _key(4096, cache, "signer")
    small_key = _key(2048, cache, "small")
    mallory_key = _key(2048, cache, "mallory")
    mallory_root = _cert("Mallory Root", mallory_key, None, mallory_key, ca=True)
    root_pem = cache / "anchors.pem"
    root_pem.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    enc_pem = cache / "destination-enc.pem"
    sig_pem = cache / "signer.pem"
    return Pki(
        root=root, root_pem=root_pem, intermediate=inter,
        enc_key=enc_key, enc_cert=_cert("Zustellpunkt enc", enc_key, inter, inter_key, ca=False, usage="enc"),
        sig_key=sig_key, sig_cert=_cert("Zustellpunkt sig", sig_key, inter, inter_key, ca=False, usage="sig"),
        small_key=small_key, small_cert=_cert("small", small_key, inter, inter_key, ca=False, usage="enc"),
        mallory_root=mallory_root,
        mallory_cert=_cert("Zustellpunkt enc", enc_key, mallory_root, mallory_key, ca=False, usage="enc"),
        expired_cert=_cert("Zustellpunkt enc", enc_key, inter, inter_key, ca=False, usage="enc",
                           not_before=NOW - dt.timedelta(days=400), not_after=NOW - dt.timedelta(days=1)),
        enc_key_pem=enc_pem, sig_key_pem=sig_pem,
    )


# --------------------------------------------------------------------------- a fake API + adapter

DEST = "7881dba9-4055-4854-8b6d-11ea5b7f3047"
SERVICE = "urn:de:fim:leika:leistung:99010003001006"
ENC_KID = "c66e4423-e28d-4a1f-911d-818f9ab60221"
DEST_SIG_KID = "d0e1f2a3-sig-destination"
SERVICE_KID = "service-key-1"


def destination_doc(status: str = "active", service: str = SERVICE) -> dict[str, Any]:
    return {"destinationId": DEST, "status": status, "encryptionKid": ENC_KID, "metadataVersions": ["1.0.0"],
            "services": [{"identifier": service, "regions": ["DE09330411"], "submissionSchemas": [
                {"schemaUri": "http://www.osci.de/xauslaender/2611", "mimeType": "application/xml"}]}]}


@pytest.fixture
def api(pki: Pki) -> Iterator[FakeApi]:
    fake = FakeApi(service_kid=SERVICE_KID, service_key_pem=pki.sig_key_pem.read_bytes())
    fake.destinations[DEST] = destination_doc()
    fake.keys[(DEST, ENC_KID)] = jwk(pki.enc_key, [pki.enc_cert, pki.intermediate], kid=ENC_KID)
    fake.keys[(DEST, DEST_SIG_KID)] = jwk(pki.sig_key, [pki.sig_cert, pki.intermediate], kid=DEST_SIG_KID,
                                          alg="PS512", ops=("verify",))
    fake.jwks.append(jwk(pki.sig_key, [pki.sig_cert], kid=SERVICE_KID, alg="PS512", ops=("verify",)))
    with serve(fake):
        yield fake


def adapter_section(api: FakeApi, pki: Pki, **extra: Any) -> dict[str, Any]:
    return {"submission_api": api.url, "token_url": f"{api.url}/token", "client_id": "portal-client",
            "client_secret_env": "FC_SECRET", "trust_anchors": [str(pki.root_pem)],
            "service_name": "Aufenthaltstitel", **extra}


class _NoKeys:
    def private_key_handle(self, *a: Any, **k: Any) -> Any:
        raise AssertionError("fit-connect loads no keys through the key source")

    certificates_handle = identity_handle = private_key_handle


def context(**kw: Any) -> AdapterContext:
    return AdapterContext(keys=_NoKeys(), timeout=10.0, concurrency=2,
                          environ=kw.pop("environ", {"FC_SECRET": "s3cret-value"}), **kw)


@pytest.fixture
def adapter(api: FakeApi, pki: Pki) -> Iterator[FitConnectAdapter]:
    built = FitConnectAdapter.from_config("fc", adapter_section(api, pki), context())
    yield built
    built.close()


def delivery(message: bytes = b"<antrag>ok</antrag>", attachments: tuple[bytes, ...] = (b"%PDF-1.7 x", b"second"),
             message_id: str = "11111111-2222-4333-8444-555555555555", service: str = SERVICE) -> Delivery:
    parts = tuple(ContentPart(data, "application/pdf", filename=f"anlage{i}.pdf")
                  for i, data in enumerate(attachments))
    return Delivery(
        message_id=message_id,
        content=Content(ContentPart(message, "application/xml; charset=utf-8"), parts),
        sender=None,
        recipient=Recipient("azr:000100", "ABH Test", FitConnectAddress(DEST)),
        service=service,
        message_type=MessageKind("xauslaender.antrag.1101", payload_schema="http://www.osci.de/xauslaender/2611"))
