"""Loading signing keys and certificates (PEM, DER, PKCS#12).

Parsing an RSA key costs tens of milliseconds, so callers load an identity once per process and
keep the objects; these functions are pure (read a file, return objects, no caching). Errors are
``KeyStoreError`` naming the file and the kind of problem, never the password.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm as _CryptoUnsupported
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from hub.errors import KeyStoreError

__all__ = [
    "PrivateKey",
    "SigningIdentity",
    "load_certificate",
    "load_certificates",
    "load_private_key",
    "load_signing_identity",
]

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_PKCS12_SUFFIXES = frozenset({".p12", ".pfx"})
_PEM_MARKER = b"-----BEGIN"


@dataclass(frozen=True)
class SigningIdentity:
    """A private key with the certificate that names it (used for signing and decryption)."""

    private_key: PrivateKey = field(repr=False)
    certificate: x509.Certificate


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or "I/O error"
        raise KeyStoreError(f"cannot read {what} file {path}: {reason}") from None


def _is_pkcs12(path: Path, data: bytes) -> bool:
    return Path(path).suffix.lower() in _PKCS12_SUFFIXES and not data.lstrip().startswith(
        _PEM_MARKER
    )


def _check_key_type(key: object, path: Path) -> PrivateKey:
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise KeyStoreError(f"unsupported key type {type(key).__name__} in {path} (RSA or EC only)")
    return key


def _load_pkcs12(
    path: Path, data: bytes, password: bytes | None
) -> pkcs12.PKCS12KeyAndCertificates:
    try:
        return pkcs12.load_pkcs12(data, password)
    except (ValueError, TypeError):
        hint = "no password given" if password is None else "wrong password or corrupt file"
        raise KeyStoreError(f"cannot open PKCS#12 file {path}: {hint}") from None


def load_private_key(path: Path, password: bytes | None = None) -> PrivateKey:
    """Private key from a PEM/DER key file or the key entry of a PKCS#12 file."""
    data = _read(path, "private key")
    if _is_pkcs12(path, data):
        bundle = _load_pkcs12(path, data, password)
        if bundle.key is None:
            raise KeyStoreError(f"PKCS#12 file {path} holds no private key")
        return _check_key_type(bundle.key, path)
    loader = (
        serialization.load_pem_private_key
        if _PEM_MARKER in data
        else serialization.load_der_private_key
    )
    try:
        key = loader(data, password)
    except TypeError:
        hint = "key is encrypted but no password given" if password is None else (
            "key is not encrypted but a password was given"
        )
        raise KeyStoreError(f"cannot load private key from {path}: {hint}") from None
    except (ValueError, _CryptoUnsupported) as exc:
        hint = "wrong password or not a private key" if password else "not a private key"
        raise KeyStoreError(
            f"cannot load private key from {path}: {hint} ({type(exc).__name__})"
        ) from None
    return _check_key_type(key, path)


def load_certificates(path: Path, password: bytes | None = None) -> list[x509.Certificate]:
    """All certificates in a PEM bundle, a DER file or a PKCS#12 file (its own cert first)."""
    data = _read(path, "certificate")
    if _is_pkcs12(path, data):
        bundle = _load_pkcs12(path, data, password)
        certs = [bundle.cert.certificate] if bundle.cert is not None else []
        certs += [c.certificate for c in bundle.additional_certs]
    else:
        try:
            certs = (
                x509.load_pem_x509_certificates(data)
                if _PEM_MARKER in data
                else [x509.load_der_x509_certificate(data)]
            )
        except ValueError:
            raise KeyStoreError(f"cannot load certificate from {path}: not a certificate") from None
    if not certs:
        raise KeyStoreError(f"no certificate found in {path}")
    return certs


def load_certificate(path: Path) -> x509.Certificate:
    """The first certificate of a PEM/DER file (trust anchors, recipient certificates)."""
    return load_certificates(path)[0]


def _public_numbers_match(key: PrivateKey, cert: x509.Certificate) -> bool:
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return key.public_key().public_bytes(der, pub) == cert.public_key().public_bytes(der, pub)


def load_signing_identity(
    key_path: Path, cert_path: Path | None = None, password: bytes | None = None
) -> SigningIdentity:
    """Key + certificate: PEM key with separate cert, PKCS#12 alone, or one PEM holding both."""
    key_path = Path(key_path)
    key = load_private_key(key_path, password)
    if cert_path is None:
        certs: Sequence[x509.Certificate] = load_certificates(key_path, password)
        source = key_path
    else:
        certs = load_certificates(Path(cert_path))
        source = Path(cert_path)
    # A bundle may carry the chain as well: the identity's certificate is the one matching the key.
    for cert in certs:
        if _public_numbers_match(key, cert):
            return SigningIdentity(private_key=key, certificate=cert)
    raise KeyStoreError(f"no certificate in {source} matches the private key in {key_path}")
