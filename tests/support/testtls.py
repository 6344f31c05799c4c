"""Throwaway TLS PKI for the mutual-TLS tests; it lives under tests/ so the installed package does not
ship it. Never use these keys in production.

``make_tls_pki(directory)`` writes a CA, a server certificate for ``localhost``/``127.0.0.1`` (the
simulator's), client certificates issued by that CA (PEM pair and a password-protected PKCS#12), a
second client of the same CA (a valid certificate of *another* account), and a rogue CA with its own
client (a certificate the server must refuse).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

P12_PASSWORD = "test-p12-password"


@dataclass(frozen=True)
class TlsPki:
    """Paths of the generated files (PEM unless noted)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_p12: Path  # PKCS#12 of the client, password P12_PASSWORD
    other_client_cert: Path
    other_client_key: Path
    rogue_ca_cert: Path
    rogue_client_cert: Path
    rogue_client_key: Path


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "xoev-hub TLS test PKI"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(cn: str, key: rsa.RSAPrivateKey, issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None, *,
          server: bool = False, client: bool = False) -> x509.Certificate:
    now = _dt.datetime.now(_dt.UTC)
    issuer_name = issuer[0].subject if issuer else _name(cn)
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - _dt.timedelta(days=1)).not_valid_after(now + _dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if issuer is None:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), True)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _write(directory: Path, name: str, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{name}.cert.pem", directory / f"{name}.key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def make_tls_pki(directory: Path) -> TlsPki:
    """Generate the whole set into ``directory`` (created if missing)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca = _cert("xoev-hub TLS test CA", ca_key, None)
    ca_cert, _ = _write(directory, "tls-ca", ca, ca_key)
    server_key = _key()
    server_cert, server_key_path = _write(directory, "tls-server", _cert("localhost", server_key, (ca, ca_key),
                                                                         server=True), server_key)
    client_key = _key()
    client = _cert("alp:portal-1 (XTA client)", client_key, (ca, ca_key), client=True)
    client_cert, client_key_path = _write(directory, "tls-client", client, client_key)
    p12 = directory / "tls-client.p12"
    p12.write_bytes(pkcs12.serialize_key_and_certificates(
        b"tls-client", client_key, client, [ca],
        serialization.BestAvailableEncryption(P12_PASSWORD.encode())))
    other_key = _key()
    other_cert, other_key_path = _write(directory, "tls-other-client",
                                        _cert("alp:other (XTA client)", other_key, (ca, ca_key), client=True), other_key)
    rogue_ca_key = _key()
    rogue_ca = _cert("rogue CA", rogue_ca_key, None)
    rogue_ca_cert, _ = _write(directory, "tls-rogue-ca", rogue_ca, rogue_ca_key)
    rogue_key = _key()
    rogue_cert, rogue_key_path = _write(directory, "tls-rogue-client",
                                        _cert("alp:portal-1 (rogue)", rogue_key, (rogue_ca, rogue_ca_key), client=True),
                                        rogue_key)
    return TlsPki(ca_cert, server_cert, server_key_path, client_cert, client_key_path, p12, other_cert,
                  other_key_path, rogue_ca_cert, rogue_cert, rogue_key_path)
