"""Mutual TLS for XTA: the client certificate per adapter, server verification, and server contexts.

XTA.wsdl's transport policy requires HTTPS with a client certificate (``RequireClientCertificate``).
``TlsSettings`` says where the client identity lives (PKCS#12, or PEM certificate + key) and which CA
bundle verifies the server; the password comes from an environment variable named in the settings,
never from the configuration itself. ``client_context`` builds the one ``ssl.SSLContext`` the XTA
client's connection pool uses (``transport.xta.httpio``); ``mount_tls`` puts it into a
``requests.Session`` (the client's ``session_factory`` seam); ``server_context`` builds the
simulator's context (optionally requiring client certificates from a given CA).

``ssl`` can only load a certificate chain from files: the identity is written once, at start-up, to a
private temporary file with the key *encrypted* under a random one-time password, loaded, and
deleted, so the plaintext key never touches the disk.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from requests.adapters import HTTPAdapter

from hub.errors import ConfigError, HubError


@dataclass(frozen=True)
class TlsSettings:
    """Client side of mutual TLS for one XTA endpoint.

    ``client_cert``: PKCS#12 (``.p12``/``.pfx``) or PEM certificate (the PEM may hold the key too);
    ``client_key``: PEM key when it is a separate file; ``password_env``: name of the environment
    variable holding the PKCS#12/key password; ``ca_bundle``: PEM CA certificates that verify the
    server (None: the system/certifi default).
    """

    client_cert: Path | None = None
    client_key: Path | None = None
    password_env: str | None = None
    ca_bundle: Path | None = None

    @property
    def mutual(self) -> bool:
        return self.client_cert is not None


def _password(settings: TlsSettings, environ: Mapping[str, str]) -> bytes | None:
    if not settings.password_env:
        return None
    value = environ.get(settings.password_env)
    if value is None:
        raise ConfigError(f"TLS client key password: environment variable {settings.password_env} is not set")
    return value.encode("utf-8")


def _load_chain_into(context: ssl.SSLContext, settings: TlsSettings, environ: Mapping[str, str]) -> None:
    from transport.security.keys import load_certificates, load_signing_identity

    assert settings.client_cert is not None
    password = _password(settings, environ)
    try:
        if settings.client_key is not None:  # PEM key file + certificate (chain) file
            identity = load_signing_identity(settings.client_key, settings.client_cert, password)
        else:  # PKCS#12, or one PEM holding key and certificate
            identity = load_signing_identity(settings.client_cert, None, password)
        chain = [c for c in load_certificates(settings.client_cert, password) if c != identity.certificate]
    except HubError as exc:
        raise ConfigError(f"TLS client certificate {settings.client_cert}: {exc}") from None
    one_time = secrets.token_bytes(32)
    key_pem = identity.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(one_time))
    certs_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [identity.certificate, *chain])
    fd, name = tempfile.mkstemp(prefix="xta-tls-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(certs_pem + key_pem)
        context.load_cert_chain(name, password=one_time)
    except ssl.SSLError as exc:
        raise ConfigError(f"TLS client certificate {settings.client_cert}: {exc.reason or exc}") from None
    finally:
        os.unlink(name)


def client_context(settings: TlsSettings, environ: Mapping[str, str] | None = None) -> ssl.SSLContext:
    """TLS >= 1.2 client context: server verified (hostname + chain), client identity loaded.

    Trust anchors: ``ca_bundle`` alone when set; else the bundle the environment names
    (``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, as ``requests`` read them) alone; else the system
    store plus certifi's bundle.
    """
    environ = os.environ if environ is None else environ
    named = environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE")
    try:
        if settings.ca_bundle is not None:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(settings.ca_bundle))
        elif named:  # a private CA named for this purpose: trust it alone, as requests did
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, **(
                {"capath": named} if os.path.isdir(named) else {"cafile": named}))
        else:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
            _load_default_bundle(context, environ)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS CA bundle {settings.ca_bundle or _default_bundle(environ)}: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.client_cert is not None:
        _load_chain_into(context, settings, environ)
    return context


def _default_bundle(environ: Mapping[str, str]) -> str | None:
    found = environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE")
    if found:
        return found
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with requests
        return None
    return str(certifi.where())


def _load_default_bundle(context: ssl.SSLContext, environ: Mapping[str, str]) -> None:
    bundle = _default_bundle(environ)
    if bundle is None:
        return
    if os.path.isdir(bundle):
        context.load_verify_locations(capath=bundle)
    else:
        context.load_verify_locations(cafile=bundle)


class _ContextAdapter(HTTPAdapter):
    """requests adapter whose pools use one prepared SSLContext (client identity + trust)."""

    def __init__(self, context: ssl.SSLContext, **kwargs: Any) -> None:
        self._context = context
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["ssl_context"] = self._context
        return super().proxy_manager_for(*args, **kwargs)


def mount_tls(session: requests.Session, context: ssl.SSLContext, settings: TlsSettings) -> None:
    """Make ``session`` use ``context`` for every https:// URL."""
    session.mount("https://", _ContextAdapter(context))
    # requests also hands urllib3 a CA file; point it at the same bundle so nothing else is trusted
    session.verify = str(settings.ca_bundle) if settings.ca_bundle is not None else True


def certificate_fingerprint(cert: x509.Certificate | bytes | str) -> str:
    """SHA-256 fingerprint (lower-case hex) of a certificate given as object, DER or PEM."""
    if isinstance(cert, str):
        cert = x509.load_pem_x509_certificate(cert.encode("ascii"))
    if isinstance(cert, bytes):
        cert = x509.load_der_x509_certificate(cert)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def server_context(cert: Path, key: Path, *, client_ca: Path | None = None, require_client_cert: bool = False,
                   password: bytes | None = None) -> ssl.SSLContext:
    """TLS >= 1.2 server context; with ``client_ca`` client certificates are verified against it
    (required with ``require_client_cert``, otherwise optional)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key), password=password)
        if client_ca is not None:
            context.load_verify_locations(cafile=str(client_ca))
            context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
        elif require_client_cert:
            raise ConfigError("require_client_cert needs client_ca (the CA that issues client certificates)")
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS server certificate/key {cert}: {exc}") from None
    return context
