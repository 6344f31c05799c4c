"""Key/certificate loading (PEM, DER, PKCS#12) and the throwaway test PKI."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from hub.errors import KeyStoreError, SecurityError
from transport.security.demopki import CA_NAME, make_test_pki
from transport.security.keys import (
    SigningIdentity,
    load_certificate,
    load_certificates,
    load_private_key,
    load_signing_identity,
)

if TYPE_CHECKING:  # conftest is not importable at run time (tests/unit is not a package)
    from conftest import Pki

PASSWORD = b"s3cr3t-pw"


def _p12(tpki: Pki, path: Path, password: bytes | None) -> Path:
    ident = tpki.portal
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"portal",
            ident.private_key,
            ident.certificate,
            [tpki.ca],
            encryption,
        )
    )
    return path


def test_pem_identity(tpki: Pki) -> None:
    ident = load_signing_identity(*tpki.paths["portal"])
    assert isinstance(ident, SigningIdentity)
    assert isinstance(ident.private_key, rsa.RSAPrivateKey)
    assert ident.certificate.subject.rfc4514_string().startswith("CN=portal")
    assert "private_key" not in repr(ident)


def test_pkcs12_identity_with_password(tpki: Pki, tmp_path: Path) -> None:
    path = _p12(tpki, tmp_path / "portal.p12", PASSWORD)
    ident = load_signing_identity(path, password=PASSWORD)
    # The bundle also carries the CA: the identity's certificate is the one matching the key.
    assert ident.certificate == tpki.portal.certificate
    assert load_certificates(path, PASSWORD)[0] == tpki.portal.certificate


def test_pkcs12_wrong_password_names_file_not_password(tpki: Pki, tmp_path: Path) -> None:
    path = _p12(tpki, tmp_path / "portal.pfx", PASSWORD)
    with pytest.raises(KeyStoreError) as info:
        load_signing_identity(path, password=b"wrong-password")
    assert "portal.pfx" in str(info.value)
    assert "wrong-password" not in str(info.value) and PASSWORD.decode() not in str(info.value)
    with pytest.raises(KeyStoreError, match="no password"):
        load_private_key(path)


def test_encrypted_pem_key(tpki: Pki, tmp_path: Path) -> None:
    path = tmp_path / "enc.key.pem"
    path.write_bytes(
        tpki.portal.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSWORD),
        )
    )
    key = load_private_key(path, PASSWORD)
    expected = tpki.portal.private_key.public_key().public_numbers()
    assert key.public_key().public_numbers() == expected
    with pytest.raises(KeyStoreError, match="no password given"):
        load_private_key(path)
    with pytest.raises(KeyStoreError) as info:
        load_private_key(path, b"bad-guess")
    assert "enc.key.pem" in str(info.value) and "bad-guess" not in str(info.value)


def test_der_key_and_certificate(tpki: Pki, tmp_path: Path) -> None:
    key_path, cert_path = tmp_path / "k.der", tmp_path / "c.der"
    key_path.write_bytes(
        tpki.reader.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(tpki.reader.certificate.public_bytes(serialization.Encoding.DER))
    ident = load_signing_identity(key_path, cert_path)
    assert ident.certificate == tpki.reader.certificate


def test_combined_pem_file(tpki: Pki, tmp_path: Path) -> None:
    key_path, cert_path = tpki.paths["reader"]
    both = tmp_path / "both.pem"
    both.write_bytes(key_path.read_bytes() + cert_path.read_bytes())
    assert load_signing_identity(both).certificate == tpki.reader.certificate


def test_key_certificate_mismatch(tpki: Pki) -> None:
    with pytest.raises(KeyStoreError, match="matches the private key"):
        load_signing_identity(tpki.paths["portal"][0], tpki.paths["reader"][1])


def test_missing_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="nope.pem"):
        load_private_key(tmp_path / "nope.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyStoreError, match="garbage.pem"):
        load_private_key(garbage)
    with pytest.raises(KeyStoreError, match="garbage.pem"):
        load_certificate(garbage)
    assert issubclass(KeyStoreError, SecurityError)


def test_ec_key_supported(tmp_path: Path) -> None:
    path = tmp_path / "ec.pem"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    assert isinstance(load_private_key(path), ec.EllipticCurvePrivateKey)


def test_test_pki_is_a_real_chain(tpki: Pki) -> None:
    assert set(tpki.paths) == {CA_NAME, "portal", "reader", "other"}
    for name in ("portal", "reader", "other"):
        cert = load_certificate(tpki.paths[name][1])
        cert.verify_directly_issued_by(tpki.ca)
        assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == name
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 366
    assert tpki.ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert tpki.paths[CA_NAME][0].stat().st_mode & 0o077 == 0  # key not world-readable


def test_test_pki_is_idempotent_and_repairs(tmp_path: Path) -> None:
    first = make_test_pki(tmp_path, ["a", "b"])
    snapshot = {p: p.read_bytes() for pair in first.values() for p in pair}
    second = make_test_pki(tmp_path, ["a", "b"])
    assert second == first
    assert {p: p.read_bytes() for p in snapshot} == snapshot  # reused, not regenerated

    first["b"][1].write_bytes(b"corrupt")
    third = make_test_pki(tmp_path, ["a", "b", "c"])
    assert third["a"][1].read_bytes() == snapshot[first["a"][1]]
    assert third["b"][1].read_bytes() != b"corrupt"
    load_certificate(third["b"][1]).verify_directly_issued_by(load_certificate(third[CA_NAME][1]))
    assert third["c"][0].is_file()


@pytest.mark.parametrize("bad", ["ca", "../x", "", "a/b"])
def test_test_pki_rejects_bad_names(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        make_test_pki(tmp_path, [bad])
