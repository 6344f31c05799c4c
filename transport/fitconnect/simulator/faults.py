"""Fault injection and access tokens of the FIT-Connect simulator, both changeable at runtime.

``Faults.before_request`` decides, per API call, whether the call is answered at all: an outage
window (503 or a dropped connection), the next N calls as 429, a share of calls as 429 or 5xx, and
extra latency. ``Tokens`` issues OAuth2 client-credentials tokens and checks them; their lifetime
can change and every issued token can be invalidated at once (a key rollover at the auth server).
"""

from __future__ import annotations

import random
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from transport.fitconnect.simulator.settings import FaultSettings, Outage


@dataclass(frozen=True)
class Disruption:
    """How to answer instead of processing: ``status`` 429/5xx/503, or ``drop`` the connection."""

    status: int | None = None
    drop: bool = False
    retry_after: int | None = None
    reason: str = "injected fault"


class Faults:
    """Thread-safe standing faults (``FaultSettings``) plus a count of calls still to refuse with 429."""

    def __init__(self, settings: FaultSettings, clock: Callable[[], float]) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._next_429 = 0
        self._outage_from = clock()
        self.configure(settings)

    @property
    def settings(self) -> FaultSettings:
        with self._lock:
            return self._settings

    def configure(self, settings: FaultSettings) -> None:
        """Replace the standing faults; an outage window starts counting from now."""
        with self._lock:
            self._settings = settings
            self._random = random.Random(settings.seed)
            self._outage_from = self._clock()

    def update(self, changes: Mapping[str, Any]) -> FaultSettings:
        """Change some fields (JSON of ``/_simulator/faults``: ``outage`` as an object or null,
        ``next_429`` as a count); raises ValueError/TypeError for anything invalid."""
        changes = dict(changes)
        count = changes.pop("next_429", None)
        if "outage" in changes and changes["outage"] is not None:
            changes["outage"] = Outage(**changes["outage"])
        settings = replace(self.settings, **changes)
        if changes:
            self.configure(settings)
        if count is not None:
            self.refuse_next(int(count))
        return settings

    def refuse_next(self, count: int) -> None:
        """Answer the next ``count`` API calls with 429 and Retry-After."""
        if count < 0:
            raise ValueError("count must be >= 0")
        with self._lock:
            self._next_429 = count

    def set_outage(self, start: float, duration: float, mode: str = "503") -> None:
        self.configure(replace(self.settings, outage=Outage(start, duration, mode)))

    def clear(self) -> None:
        with self._lock:
            self._next_429 = 0
        self.configure(FaultSettings())

    @property
    def latency(self) -> float:
        return self.settings.latency

    def before_request(self) -> Disruption | None:
        with self._lock:
            s = self._settings
            if s.outage is not None:
                elapsed = self._clock() - self._outage_from
                if s.outage.start <= elapsed < s.outage.start + s.outage.duration:
                    if s.outage.mode == "drop":
                        return Disruption(drop=True, reason="outage window")
                    return Disruption(503, retry_after=s.retry_after, reason="outage window")
            if self._next_429 > 0:
                self._next_429 -= 1
                return Disruption(429, retry_after=s.retry_after, reason="rate limit (injected)")
            if s.rate_429 and self._random.random() < s.rate_429:
                return Disruption(429, retry_after=s.retry_after, reason="rate limit")
            if s.rate_5xx and self._random.random() < s.rate_5xx:
                return Disruption(s.status_5xx, reason="server error (injected)")
        return None

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {**asdict(self._settings), "next_429": self._next_429}


class Tokens:
    """Bearer tokens of the simulated auth server: issue, check, expire, invalidate."""

    def __init__(self, client_id: str, client_secret: str, lifetime: float, clock: Callable[[], float]) -> None:
        self.client_id = client_id
        self._secret = client_secret
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self.lifetime = lifetime

    @property
    def lifetime(self) -> float:
        return self._lifetime

    @lifetime.setter
    def lifetime(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("token lifetime must be > 0 seconds")
        self._lifetime = float(seconds)

    def credentials_match(self, client_id: str, client_secret: str) -> bool:
        return (secrets.compare_digest(client_id.encode(), self.client_id.encode())
                and secrets.compare_digest(client_secret.encode(), self._secret.encode()))

    def issue(self) -> tuple[str, int]:
        """A new token and its lifetime in whole seconds (at least 1)."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = self._clock()
            self._expiry = {t: e for t, e in self._expiry.items() if e > now}  # forget expired ones
            self._expiry[token] = now + self._lifetime
        return token, max(1, int(self._lifetime))

    def valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._expiry.get(token)
            return expiry is not None and self._clock() < expiry

    def invalidate_all(self) -> None:
        with self._lock:
            self._expiry.clear()
