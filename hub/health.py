"""Readiness checks that call out (e.g. XTA checkAccountActive), cached so probes stay cheap, and
the record of a connection's outage that /readyz reports."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from hub.errors import HubError


class CachedCheck:
    """Runs ``check`` (raises a HubError when not ok) at most every ``ttl`` seconds."""

    def __init__(self, name: str, check: Callable[[], None], ttl: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._check = check
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._at: float | None = None
        self._result: tuple[bool, str] = (False, f"{name}: not checked yet")

    def __call__(self) -> tuple[bool, str]:
        with self._lock:
            if self._at is None or self._clock() - self._at >= self._ttl:
                try:
                    self._check()
                    self._result = (True, f"{self.name}: ok")
                except HubError as exc:
                    self._result = (False, f"{self.name}: {exc}")
                self._at = self._clock()
            return self._result


class OutageRecord:
    """Since when a connection has been down and what happened, for /readyz: ``down`` on every
    failed (re)connect keeps the first moment of the outage, ``up`` ends it."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None
        self._what = ""

    def down(self, what: str) -> None:
        with self._lock:
            if self._since is None:
                self._since = self._clock()
            self._what = what

    def up(self) -> None:
        with self._lock:
            self._since = None

    def describe(self) -> str | None:
        """``"<what>, reconnecting since <local ISO time>"``, or None while there is no outage."""
        with self._lock:
            since, what = self._since, self._what
        if since is None:
            return None
        return f"{what}, reconnecting since {time.strftime('%Y-%m-%dT%H:%M:%S%z', time.localtime(since))}"
