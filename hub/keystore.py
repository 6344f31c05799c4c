"""Keys and certificates, loaded once per process (parsing an RSA PEM costs 28–95 ms)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from cryptography import x509

from hub.errors import ConfigError, KeyStoreError
from transport.security.keys import SigningIdentity, load_certificate, load_private_key, load_signing_identity


class KeyStore:
    """Caches every key and certificate by path; thread-safe. Passwords come from the environment,
    never from the config file."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, Path, Path | None], Any] = {}

    def _cached(self, kind: str, path: Path, extra: Path | None, load: Any) -> Any:
        key = (kind, path, extra)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = load()
            return self._cache[key]

    def certificate(self, path: Path) -> x509.Certificate:
        return self._cached("cert", path, None, lambda: load_certificate(path))

    def private_key(self, path: Path, password_env: str | None = None) -> Any:
        return self._cached("key", path, None, lambda: load_private_key(path, _password(password_env)))

    def signing_identity(self, key: Path, cert: Path | None, password_env: str | None = None) -> SigningIdentity:
        return self._cached(
            "identity", key, cert, lambda: load_signing_identity(key, cert, _password(password_env))
        )


def _password(env_name: str | None) -> bytes | None:
    if env_name is None:
        return None
    value = os.environ.get(env_name)
    if value is None:
        raise ConfigError(f"the key password variable {env_name} is not set in the environment")
    return value.encode()


__all__ = ["KeyStore", "KeyStoreError"]
