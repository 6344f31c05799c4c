"""The demo PKI: one throwaway CA and one key/certificate pair per name.

Shipped in the package on purpose, for ``hub demo``, ``scripts/stack-secrets.py`` (the compose
stack) and the benchmarks, which need keys on a machine without a PKI; the tests use it as well.
Never use these keys in production: they are throwaway, unencrypted on disk and issued by a CA that
nobody else trusts. Files are reused when they are still valid (idempotent), so test sessions and
demo runs do not pay for RSA key generation twice.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from hub.errors import KeyStoreError
from transport.security.keys import PrivateKey, load_certificate, load_private_key

__all__ = ["CA_NAME", "make_test_pki"]

CA_NAME = "ca"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_VALID_DAYS = 365
# Reissue when less than this remains, so a reused certificate never expires mid-session.
_MIN_REMAINING = _dt.timedelta(days=7)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write via a temp file + rename so concurrent readers never see half a key."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _paths(directory: Path, name: str) -> tuple[Path, Path]:
    return directory / f"{name}.key.pem", directory / f"{name}.cert.pem"


def _reusable(
    key_path: Path, cert_path: Path, name: str, issuer: x509.Certificate | None, key_size: int
) -> bool:
    """True when the pair exists, matches, names ``name``, is issued by ``issuer`` and is fresh."""
    if not (key_path.is_file() and cert_path.is_file()):
        return False
    try:
        key = load_private_key(key_path)
        cert = load_certificate(cert_path)
    except KeyStoreError:
        return False
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != key_size:
        return False
    cert_key = cert.public_key()
    if not isinstance(cert_key, rsa.RSAPublicKey):
        return False
    if key.public_key().public_numbers() != cert_key.public_numbers():
        return False
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns or cns[0].value != name:
        return False
    now = _dt.datetime.now(_dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc - _MIN_REMAINING:
        return False
    try:
        cert.verify_directly_issued_by(issuer if issuer is not None else cert)
    except (InvalidSignature, ValueError, TypeError):  # bad signature, names or key type
        return False
    return True


def _issue(
    name: str,
    key: rsa.RSAPrivateKey,
    issuer_key: PrivateKey,
    issuer: x509.Certificate | None,
) -> x509.Certificate:
    now = _dt.datetime.now(_dt.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "xoev-hub test PKI"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    is_ca = issuer is None
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(days=1))
        .not_valid_after(now + _dt.timedelta(days=_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=not is_ca,
                key_encipherment=not is_ca,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if not is_ca:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write_pair(
    key_path: Path, cert_path: Path, key: rsa.RSAPrivateKey, cert: x509.Certificate
) -> None:
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomic(key_path, pem_key, 0o600)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def make_test_pki(
    directory: Path, names: Sequence[str], key_size: int = 2048
) -> dict[str, tuple[Path, Path]]:
    """Create (or reuse) a CA and one CA-signed RSA pair per name; map name -> (key, cert).

    The CA itself is included under ``CA_NAME`` ("ca"): ``ca.key.pem`` / ``ca.cert.pem``.
    """
    directory = Path(directory)
    for name in names:
        if not _NAME.match(name) or name == CA_NAME:
            raise ValueError(f"invalid test PKI name {name!r}")
    directory.mkdir(parents=True, exist_ok=True)

    ca_key_path, ca_cert_path = _paths(directory, CA_NAME)
    ca_fresh = not _reusable(ca_key_path, ca_cert_path, "xoev-hub test CA", None, key_size)
    ca_key: PrivateKey
    if ca_fresh:
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
        ca_cert = _issue("xoev-hub test CA", ca_key, ca_key, None)
        _write_pair(ca_key_path, ca_cert_path, ca_key, ca_cert)
    else:
        ca_key = load_private_key(ca_key_path)
        ca_cert = load_certificate(ca_cert_path)

    result: dict[str, tuple[Path, Path]] = {CA_NAME: (ca_key_path, ca_cert_path)}
    for name in dict.fromkeys(names):  # de-duplicate, keep order
        key_path, cert_path = _paths(directory, name)
        if ca_fresh or not _reusable(key_path, cert_path, name, ca_cert, key_size):
            key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
            cert = _issue(name, key, ca_key, ca_cert)
            _write_pair(key_path, cert_path, key, cert)
        result[name] = (key_path, cert_path)
    return result
