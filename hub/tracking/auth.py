"""Who may read the tracking API and page: bearer tokens, kept only as SHA-256 hashes.

The tokens file (``[tracker] tokens_file``) is TOML::

    [[tokens]]
    name = "portal-a-2026"          # unique; shows up in logs, never the token
    portal = "portal-a"             # the portal's app_id: sees only its own applications
    sha256 = "9f86d08..."           # hex SHA-256 of the token (`hub tracker token new` prints both)

    [[tokens]]
    name = "ops"
    operator = true                 # sees every portal's applications (no ``portal``)
    sha256 = "..."

A presented token is hashed and compared with every entry by ``hmac.compare_digest``: no token is
held in clear anywhere. The file is re-read when it changes (checked at most once a second), so a
token is rotated without a restart: add the new entry, hand the new token out, remove the old
entry. A file that is missing, unreadable or broken after a change fails closed: no token is valid
(every request 401, the tracker not ready, one error line per broken version) until the file is
usable again; keeping the last good set would keep a token working that the edit meant to revoke.
Broken or missing at start is a ``ConfigError``. No file configured: nobody can read.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.config import PORTAL_PATTERN
from hub.errors import ConfigError
from hub.tracking.model import Scope

log = logging.getLogger("hub.tracker.auth")

CHECK_INTERVAL = 1.0  # seconds between two looks at the file's mtime and size
MAX_TOKEN_LENGTH = 512  # a longer "token" is not one of ours: not even hashed
_HEX_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_KEYS = frozenset({"name", "portal", "operator", "sha256"})
UNUSABLE = "tokens file unusable"  # the readiness reason while no token is valid for that


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token: what the tokens file holds instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random bearer token (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class TokenEntry:
    name: str
    scope: Scope
    digest: bytes  # raw SHA-256 of the token


def parse_tokens(text: str) -> tuple[TokenEntry, ...]:
    """The entries of a tokens file; ``ConfigError`` names the first problem (never a hash)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML ({exc})") from None
    unknown = set(raw) - {"tokens"}
    if unknown:
        raise ConfigError(f"unknown top-level key(s): {', '.join(sorted(unknown))} (only [[tokens]])")
    tables = raw.get("tokens", [])
    if not isinstance(tables, list):
        raise ConfigError("'tokens' must be an array of tables ([[tokens]])")
    entries: list[TokenEntry] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    for number, table in enumerate(tables, start=1):
        entry = _entry(number, table)
        if entry.name in names:
            raise ConfigError(f"tokens[{number}]: name '{entry.name}' is used twice")
        if entry.digest in digests:
            raise ConfigError(f"tokens[{number}] ({entry.name}): the same sha256 as an earlier entry")
        names.add(entry.name)
        digests.add(entry.digest)
        entries.append(entry)
    return tuple(entries)


def load_tokens(path: Path) -> tuple[TokenEntry, ...]:
    """Read and parse a tokens file; every problem is a one-line ``ConfigError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text") from None
    return parse_tokens(text)


def _entry(number: int, table: Any) -> TokenEntry:
    where = f"tokens[{number}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} is not a table")
    unknown = set(table) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}.name: missing or not a name (letters, digits, '_', '-', '.'; at most 64)")
    where = f"{where} ({name})"
    operator = table.get("operator", False)
    if not isinstance(operator, bool):
        raise ConfigError(f"{where}.operator must be true or false")
    portal = table.get("portal")
    if portal is not None and (not isinstance(portal, str) or not PORTAL_PATTERN.match(portal)):
        raise ConfigError(f"{where}.portal must be the portal's app_id (letters, digits, '-', '_'; at most 64)")
    if operator and portal is not None:
        raise ConfigError(f"{where}: an operator token sees every portal; remove 'portal' or 'operator'")
    if not operator and portal is None:
        raise ConfigError(f"{where}: names no portal (set portal = \"<app_id>\", or operator = true)")
    digest = table.get("sha256")
    if not isinstance(digest, str) or not _HEX_SHA256.match(digest):
        raise ConfigError(f"{where}.sha256 must be 64 hex digits (the SHA-256 of the token, not the token)")
    return TokenEntry(name, Scope.operator() if operator else Scope(portal), bytes.fromhex(digest))


def _signature(path: Path) -> tuple[int, int, int, int] | None:
    """What says the file changed: mtime, ctime, size, inode (an atomic rename changes the inode)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


class TokenRegistry:
    """The current set of tokens; ``scope_for`` is safe to call from any request thread."""

    def __init__(self, path: Path | None, entries: tuple[TokenEntry, ...] = (), *,
                 clock: Callable[[], float] = time.monotonic, check_interval: float = CHECK_INTERVAL) -> None:
        self.path = path
        self._entries = entries
        self._clock = clock
        self._interval = check_interval
        self._lock = threading.Lock()
        self._checked_at = clock()
        self._loaded_sig = _signature(path) if path is not None else None
        self._seen_sig = self._loaded_sig  # the last version looked at (good or broken)
        self._problem: str | None = None  # set while the file is unusable (no token is valid then)

    @classmethod
    def from_file(cls, path: Path | None, *, clock: Callable[[], float] = time.monotonic,
                  check_interval: float = CHECK_INTERVAL) -> TokenRegistry:
        """Load the tokens file; ``ConfigError`` (one line) when it is missing or broken."""
        if path is None:
            log.warning("tracker: no tokens_file configured: every API and page request is refused (401)")
            return cls(None, clock=clock, check_interval=check_interval)
        sig = _signature(path)
        try:
            entries = load_tokens(path)
        except ConfigError as exc:
            raise ConfigError(f"tracker.tokens_file {path}: {exc}") from None
        registry = cls(path, entries, clock=clock, check_interval=check_interval)
        registry._loaded_sig = registry._seen_sig = sig
        if not entries:
            log.warning("tracker: %s holds no tokens: every API and page request is refused (401)", path)
        else:
            log.info("tracker: %d token(s) loaded from %s", len(entries), path)
        return registry

    @property
    def names(self) -> tuple[str, ...]:
        self._refresh()
        return tuple(e.name for e in self._entries)

    @property
    def problem(self) -> str | None:
        """``"tokens file unusable"`` while a change left the file missing, unreadable or broken
        (no token is valid then), else None; for the tracker's readiness."""
        self._refresh()
        return self._problem

    def entry_named(self, name: str) -> TokenEntry | None:
        """The current entry called ``name`` (a page session names its entry), or None."""
        self._refresh()
        return next((e for e in self._entries if e.name == name), None)

    def identify(self, token: str) -> TokenEntry | None:
        """The entry whose hash matches ``token``, or None."""
        self._refresh()
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found: TokenEntry | None = None
        for entry in self._entries:  # every entry compared: the time does not tell which one matched
            if hmac.compare_digest(digest, entry.digest) and found is None:
                found = entry
        return found

    def scope_for(self, token: str) -> Scope | None:
        """What ``token`` may see, or None when it is no (longer a) valid token."""
        entry = self.identify(token)
        return None if entry is None else entry.scope

    def _refresh(self) -> None:
        """Re-read the file if it changed; at most once per ``check_interval``."""
        if self.path is None:
            return
        with self._lock:
            now = self._clock()
            if now - self._checked_at < self._interval:
                return
            self._checked_at = now
            sig = _signature(self.path)
            if sig == self._loaded_sig and self._problem is None:
                return
            try:
                entries = load_tokens(self.path)
            except ConfigError as exc:
                if sig != self._seen_sig or self._problem is None:  # one line per broken version
                    log.error("tracker: tokens file %s changed and is unusable: %s; no token is valid until "
                              "it is fixed (every request is refused)", self.path, exc)
                self._entries = ()  # fail closed: the change may have been meant to revoke a token
                self._problem = UNUSABLE
                self._seen_sig = sig
                return
            self._entries = entries
            self._loaded_sig = self._seen_sig = sig
            if self._problem is not None:
                log.warning("tracker: tokens file %s is usable again: %d token(s)", self.path, len(entries))
            else:
                log.info("tracker: tokens file %s re-read: %d token(s)", self.path, len(entries))
            self._problem = None
