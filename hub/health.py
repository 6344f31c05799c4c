"""Readiness checks that call out (e.g. XTA checkAccountActive), cached so probes stay cheap."""

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
