"""Keys and certificates: loaded once per process, reloaded when their files change.

Parsing an RSA key costs 28-95 ms (pitfall 7), so every key and certificate is loaded once per file
and cached. PEM, DER and PKCS#12 files are accepted; a password comes from an environment variable
or a password file (never from the config file). Passwords, key material and file contents are
never logged; errors name the file and the kind of problem.

Rotation without a restart: each cached entry remembers the (mtime, size, inode) of the files it
came from (key, certificate, password file). At most every ``check_interval`` seconds an access
stats those files (a few microseconds); when one changed the entry is reloaded. A failed reload
(half-written file, key and certificate not matching yet) keeps the previous value, is logged, and
is retried at the next check. Only one thread reloads; the others keep using the current value.

Components that keep a key for long (an adapter's signing identity, the directory's reader
certificates) should hold the *handle* (``identity_handle`` ...) and call ``handle.get()`` per use:
``get()`` returns one immutable snapshot, so a signature never mixes an old key with a new
certificate.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from cryptography import x509

from hub.errors import ConfigError, HubError, KeyStoreError
from transport.security.keys import (
    PrivateKey,
    SigningIdentity,
    load_certificates,
    load_private_key,
    load_signing_identity,
)

__all__ = ["DEFAULT_CHECK_INTERVAL", "KeyHandle", "KeyStore", "KeyStoreError", "PasswordSource"]

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_CHECK_INTERVAL = 30.0
Stamp = tuple[tuple[int, int, int] | None, ...]


@dataclass(frozen=True)
class PasswordSource:
    """Where a key's password comes from: an environment variable or a file (first line)."""

    env: str | None = None
    file: Path | None = None

    def __post_init__(self) -> None:
        if self.env and self.file:
            raise ConfigError("a key password comes from an environment variable or a file, not both")

    def read(self, environ: Mapping[str, str]) -> bytes | None:
        if self.env:
            value = environ.get(self.env)
            if value is None:
                raise ConfigError(f"the key password variable {self.env} is not set in the environment")
            return value.encode()
        if self.file:
            try:
                data = Path(self.file).read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read key password file {self.file}: {exc.strerror}") from None
            _warn_if_readable_by_others(Path(self.file), "key password file")
            return data.splitlines()[0] if data.strip() else b""
        return None


NO_PASSWORD = PasswordSource()


def _warn_if_readable_by_others(path: Path, what: str) -> None:
    try:
        if os.stat(path).st_mode & 0o007:
            log.warning("%s %s is readable by other users (chmod o-rwx)", what, path)
    except OSError:
        pass


def _stamp(paths: tuple[Path, ...]) -> Stamp:
    stamps: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
            stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            stamps.append(None)
    return tuple(stamps)


class KeyHandle(Generic[T]):
    """One cached key/certificate/identity; ``get()`` returns the current value (reloading if due)."""

    def __init__(self, what: str, files: tuple[Path, ...], load: Callable[[], T], interval: float,
                 clock: Callable[[], float]) -> None:
        self.what = what
        self.files = files
        self._load = load
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp = _stamp(files)
        self._value = load()  # errors at start-up propagate: a bad key must fail start-up
        self._checked = clock()
        self.reloads = 0
        self.failures = 0
        self.last_error: str | None = None

    def get(self) -> T:
        if self._clock() - self._checked < self._interval:
            return self._value
        if not self._lock.acquire(blocking=False):
            return self._value  # another thread is checking/reloading; use the current value
        try:
            if self._clock() - self._checked >= self._interval:
                self._check()
        finally:
            self._lock.release()
        return self._value

    def refresh(self) -> bool:
        """Check now (blocking); True when the value was reloaded."""
        with self._lock:
            return self._check()

    def _check(self) -> bool:
        self._checked = self._clock()
        stamp = _stamp(self.files)
        if stamp == self._stamp:
            return False
        try:
            value = self._load()
        except HubError as exc:  # keep serving the previous value; retry at the next check
            self.failures += 1
            self.last_error = str(exc)
            log.warning("%s changed on disk but cannot be reloaded (keeping the previous one): %s",
                        self.what, exc)
            return False
        self._value, self._stamp = value, stamp
        self.reloads += 1
        self.last_error = None
        log.info("reloaded %s from %s", self.what, ", ".join(str(p) for p in self.files))
        return True


class KeyStore:
    """Caches every key and certificate by file; thread-safe. One instance per process."""

    def __init__(self, *, check_interval: float = DEFAULT_CHECK_INTERVAL,
                 clock: Callable[[], float] = time.monotonic,
                 environ: Mapping[str, str] | None = None) -> None:
        if check_interval < 0:
            raise ValueError("check_interval must be >= 0")
        self._interval = check_interval
        self._clock = clock
        self._environ = os.environ if environ is None else environ
        self._lock = threading.Lock()
        self._handles: dict[tuple[str, Path, Path | None], KeyHandle[Any]] = {}

    def _handle(self, kind: str, path: Path, extra: Path | None, what: str, files: tuple[Path, ...],
                load: Callable[[], T]) -> KeyHandle[T]:
        key = (kind, Path(path), Path(extra) if extra is not None else None)
        with self._lock:
            handle = self._handles.get(key)
            if handle is None:
                handle = KeyHandle(what, files, load, self._interval, self._clock)
                self._handles[key] = handle
            return handle

    @staticmethod
    def _password_source(password_env: str | None, password_file: Path | None) -> PasswordSource:
        return PasswordSource(env=password_env, file=Path(password_file) if password_file else None)

    # --- handles (hold these; call .get() per use) ---------------------------------------------
    def certificates_handle(self, path: Path, password_env: str | None = None, *,
                            password_file: Path | None = None) -> KeyHandle[list[x509.Certificate]]:
        source = self._password_source(password_env, password_file)
        files = (Path(path),) + ((source.file,) if source.file else ())
        return self._handle("certs", path, None, f"certificate file {path}", files,
                            lambda: load_certificates(Path(path), source.read(self._environ)))

    def private_key_handle(self, path: Path, password_env: str | None = None, *,
                           password_file: Path | None = None) -> KeyHandle[PrivateKey]:
        source = self._password_source(password_env, password_file)
        files = (Path(path),) + ((source.file,) if source.file else ())

        def load() -> PrivateKey:
            _warn_if_readable_by_others(Path(path), "private key file")
            return load_private_key(Path(path), source.read(self._environ))

        return self._handle("key", path, None, f"private key {path}", files, load)

    def identity_handle(self, key: Path, cert: Path | None = None, password_env: str | None = None, *,
                        password_file: Path | None = None) -> KeyHandle[SigningIdentity]:
        source = self._password_source(password_env, password_file)
        files = (Path(key),) + ((Path(cert),) if cert else ()) + ((source.file,) if source.file else ())

        def load() -> SigningIdentity:
            _warn_if_readable_by_others(Path(key), "private key file")
            return load_signing_identity(Path(key), Path(cert) if cert else None, source.read(self._environ))

        return self._handle("identity", key, cert, f"signing identity {key}", files, load)

    # --- values (current snapshot) -------------------------------------------------------------
    def certificate(self, path: Path) -> x509.Certificate:
        return self.certificates_handle(path).get()[0]

    def certificates(self, path: Path, password_env: str | None = None, *,
                     password_file: Path | None = None) -> list[x509.Certificate]:
        return list(self.certificates_handle(path, password_env, password_file=password_file).get())

    def private_key(self, path: Path, password_env: str | None = None, *,
                    password_file: Path | None = None) -> Any:
        return self.private_key_handle(path, password_env, password_file=password_file).get()

    def signing_identity(self, key: Path, cert: Path | None, password_env: str | None = None, *,
                         password_file: Path | None = None) -> SigningIdentity:
        return self.identity_handle(key, cert, password_env, password_file=password_file).get()

    # --- operations ----------------------------------------------------------------------------
    def refresh(self) -> list[str]:
        """Check every entry now (e.g. on SIGHUP); the descriptions of the reloaded ones."""
        with self._lock:
            handles = list(self._handles.values())
        return [h.what for h in handles if h.refresh()]

    def handles(self) -> list[KeyHandle[Any]]:
        with self._lock:
            return list(self._handles.values())
