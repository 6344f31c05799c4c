"""The simulator's throwaway PKI, kept in ``state_dir`` so restarts serve the same keys.

    trust-anchor.pem / ca.key.pem            the CA senders configure as their trust anchor
    untrusted-ca.pem / untrusted-ca.key.pem  a second CA, only for ``key_flaw="untrusted"``
    delivery-service.{key,cert}.pem          signs the delivery service's SETs (/.well-known/jwks.json)
    destinations/<id>/{encryption,signature}[-2048].{key,cert}.pem

Files are reused when they load, the certificate matches its key, chains to its CA and is still
valid; otherwise they are generated anew (RSA 4096 takes seconds: tests share one state_dir per
session). Key ids are UUIDs derived from the public key, so they survive restarts without a file.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from transport.fitconnect.simulator.settings import DestinationSpec, KeyFlaw

STRONG_BITS, SHORT_BITS = 4096, 2048
_VALIDITY = dt.timedelta(days=730)


@dataclass(frozen=True)
class KeyPair:
    """A private key with its certificate and the chain above it (leaf first, as in ``x5c``)."""

    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key_path: Path

    @property
    def kid(self) -> str:
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        return str(uuid.UUID(bytes=hashlib.sha256(der).digest()[:16]))

    def public_jwk(self, alg: str, key_ops: list[str], *, x5c: bool = True) -> dict[str, Any]:
        """The public JWK as the Submission API serves it (``JWK`` schema of the spec)."""
        numbers = self.key.public_key().public_numbers()
        jwk: dict[str, Any] = {"kty": "RSA", "key_ops": key_ops, "alg": alg, "kid": self.kid,
                               "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}
        if x5c:
            jwk["x5c"] = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode("ascii")
                          for c in (self.cert, *self.chain)]
        return jwk


@dataclass(frozen=True)
class DestinationKeys:
    """A destination's encryption and signature keys and how its encryption key is served."""

    encryption: KeyPair
    signature: KeyPair
    flaw: KeyFlaw | None = None

    def encryption_jwk(self) -> dict[str, Any]:
        alg = "RSA-OAEP" if self.flaw == "alg" else "RSA-OAEP-256"
        return self.encryption.public_jwk(alg, ["wrapKey"], x5c=self.flaw != "no_x5c")

    def signature_jwk(self) -> dict[str, Any]:
        return self.signature.public_jwk("PS512", ["verify"])


class SimulatorPki:
    """Loads or creates every key the simulator needs (once, at start-up)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.ca = self._ca("trust-anchor.pem", "ca.key.pem", "FIT-Connect simulator CA")
        self._untrusted: KeyPair | None = None
        self.delivery_service = self._leaf(state_dir / "delivery-service", self.ca, STRONG_BITS,
                                           "FIT-Connect simulator delivery service", signing=True)

    @property
    def trust_anchor(self) -> Path:
        return self.state_dir / "trust-anchor.pem"

    def destination(self, spec: DestinationSpec) -> DestinationKeys:
        folder = self.state_dir / "destinations" / spec.id
        folder.mkdir(parents=True, exist_ok=True)
        issuer = self.ca
        if spec.key_flaw == "untrusted":
            if self._untrusted is None:
                self._untrusted = self._ca("untrusted-ca.pem", "untrusted-ca.key.pem", "Untrusted CA")
            issuer = self._untrusted
        bits = SHORT_BITS if spec.key_flaw == "short" else STRONG_BITS
        suffix = {"short": "-2048", "untrusted": "-untrusted"}.get(spec.key_flaw or "", "")
        encryption = self._leaf(folder / f"encryption{suffix}", issuer, bits,
                                f"destination {spec.id} encryption", signing=False)
        signature = self._leaf(folder / "signature", self.ca, STRONG_BITS,
                               f"destination {spec.id} signature", signing=True)
        return DestinationKeys(encryption, signature, spec.key_flaw)

    # ------------------------------------------------------------------ files

    def _ca(self, cert_name: str, key_name: str, common_name: str) -> KeyPair:
        cert_path, key_path = self.state_dir / cert_name, self.state_dir / key_name
        loaded = _load(key_path, cert_path)
        if loaded is not None and _valid(loaded[1], loaded[0], loaded[1]) and loaded[0].key_size >= STRONG_BITS:
            return KeyPair(loaded[0], loaded[1], (), key_path)
        key = rsa.generate_private_key(public_exponent=65537, key_size=STRONG_BITS)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + _VALIDITY)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
                .sign(key, hashes.SHA512()))
        _write(key_path, cert_path, key, cert)
        return KeyPair(key, cert, (), key_path)

    def _leaf(self, stem: Path, issuer: KeyPair, bits: int, common_name: str, *, signing: bool) -> KeyPair:
        key_path, cert_path = stem.with_name(stem.name + ".key.pem"), stem.with_name(stem.name + ".cert.pem")
        loaded = _load(key_path, cert_path)
        if loaded is not None and loaded[0].key_size == bits and _valid(loaded[1], loaded[0], issuer.cert):
            return KeyPair(loaded[0], loaded[1], (issuer.cert,), key_path)
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        now = dt.datetime.now(dt.UTC)
        usage = (x509.KeyUsage(True, True, False, False, False, False, False, False, False) if signing
                 else x509.KeyUsage(False, False, True, False, False, False, False, False, False))
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                .issuer_name(issuer.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + _VALIDITY)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(usage, critical=True)
                .sign(issuer.key, hashes.SHA512()))
        _write(key_path, cert_path, key, cert)
        return KeyPair(key, cert, (issuer.cert,), key_path)


def _load(key_path: Path, cert_path: Path) -> tuple[rsa.RSAPrivateKey, x509.Certificate] | None:
    try:
        # the simulator wrote these files itself: the RSA consistency check (~0.1 s per 4096-bit key)
        # is skipped; the certificate must still match the key's public half (``_valid``)
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None,
                                                 unsafe_skip_rsa_key_validation=True)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError, TypeError):
        return None
    return (key, cert) if isinstance(key, rsa.RSAPrivateKey) else None


def _valid(cert: x509.Certificate, key: rsa.RSAPrivateKey, issuer: x509.Certificate) -> bool:
    """The certificate belongs to the key, is signed by the issuer and valid for another day."""
    if cert.public_key() != key.public_key():
        return False
    issuer_key = issuer.public_key()
    if not isinstance(issuer_key, rsa.RSAPublicKey) or cert.signature_hash_algorithm is None:
        return False
    try:
        issuer_key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                          cert.signature_hash_algorithm)
    except InvalidSignature:
        return False
    now = dt.datetime.now(dt.UTC)
    return cert.not_valid_before_utc <= now and now + dt.timedelta(days=1) < cert.not_valid_after_utc


def _write(key_path: Path, cert_path: Path, key: rsa.RSAPrivateKey, cert: x509.Certificate) -> None:
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
