"""Sessions of the tracking page: a signed cookie that names a token entry, never the token.

After ``/ui/login`` the browser keeps ``<payload>.<mac>``: the payload is the token entry's name, a
fingerprint of the entry's hash, and an expiry (12 hours after sign-in); the MAC is HMAC-SHA256
under a key drawn at random when the tracker process starts. Every page checks it again, so:

- a stolen cookie is worth 12 hours at most, and never reveals the token (or its hash);
- a revoked entry, or a rotated one (same name, new token), ends its sessions at the next page;
- a tracker restart ends every session (a new key): signing in again is the price of keeping no
  session state and no secret on disk.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from hub.tracking.auth import TokenEntry, TokenRegistry
from hub.tracking.model import Scope

SESSION_SECONDS = 12 * 3600
MAX_SESSION_COOKIE = 512  # a longer value is not one of ours: not even checked
_MAC_CONTEXT = b"hub-tracking-session-v1\x00"
_FINGERPRINT_CONTEXT = b"hub-tracking-session-entry\x00"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def fingerprint(entry: TokenEntry) -> str:
    """A short hash of the entry's token hash: a new token under the same name has another one."""
    return hashlib.sha256(_FINGERPRINT_CONTEXT + entry.digest).hexdigest()[:16]


class SessionSigner:
    """Issues and checks page sessions for one tracker process (one random key)."""

    def __init__(self, tokens: TokenRegistry, *, key: bytes | None = None,
                 clock: Callable[[], float] = time.time, lifetime: float = SESSION_SECONDS) -> None:
        self._tokens = tokens
        self._key = key if key is not None else secrets.token_bytes(32)
        self._clock = clock
        self._lifetime = lifetime

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._key, _MAC_CONTEXT + payload.encode("ascii"), hashlib.sha256).digest()

    def issue(self, entry: TokenEntry) -> str:
        """The cookie value of a session of ``entry`` that expires ``lifetime`` seconds from now."""
        expires = int(self._clock() + self._lifetime)
        payload = _b64(f"{entry.name}|{fingerprint(entry)}|{expires}".encode("ascii"))
        return f"{payload}.{_b64(self._mac(payload))}"

    def scope_for(self, value: str) -> Scope | None:
        """What the session ``value`` may see, or None: forged, expired, or its entry is gone or
        holds another token now."""
        if not value or len(value) > MAX_SESSION_COOKIE or not value.isascii():
            return None
        payload, dot, mac = value.partition(".")
        try:
            given = _unb64(mac)
            if not dot or not hmac.compare_digest(given, self._mac(payload)):
                return None
            name, entry_print, expires = _unb64(payload).decode("ascii").split("|")
            expiry = int(expires)
        except (ValueError, binascii.Error):
            return None
        if expiry <= self._clock():
            return None
        entry = self._tokens.entry_named(name)
        if entry is None or not hmac.compare_digest(entry_print, fingerprint(entry)):
            return None
        return entry.scope
