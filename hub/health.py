"""Readiness checks that call out (e.g. XTA checkAccountActive), cached so probes stay cheap, the
record of a connection's outage that /readyz reports, and the main-loop heartbeat /healthz reports
(a process whose loop is stuck is restarted by its supervisor; one that is merely not ready is not)."""

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


#: seconds without a tick after which a main loop counts as stalled (every loop ticks at least every
#: 30 s, also while it backs off; a stall is a deadlock or a call that never returns)
STALL_AFTER = 60.0


class Heartbeat:
    """The main loop calls ``tick()`` on every turn (also while it waits to reconnect); ``__call__``
    is the liveness check of /healthz: ``(False, "<what> stalled for N s")`` once the last tick is
    older than ``stall_after`` seconds."""

    def __init__(self, what: str = "consume loop", stall_after: float = STALL_AFTER,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.stall_after = stall_after
        self._clock = clock
        self._last = clock()  # starting counts as a tick: start-up work is bounded by the same limit

    def tick(self) -> None:
        self._last = self._clock()  # one float store: atomic, no lock needed

    @property
    def age(self) -> float:
        return max(0.0, self._clock() - self._last)

    def __call__(self) -> tuple[bool, str]:
        age = self.age
        if age > self.stall_after:
            return False, f"{self.what} stalled for {age:.0f} s"
        return True, "ok"


def all_alive(*checks: Callable[[], tuple[bool, str]]) -> Callable[[], tuple[bool, str]]:
    """One liveness check of several loops (the reply poller threads): alive while all are."""
    def check() -> tuple[bool, str]:
        stalled = [detail for ok, detail in (c() for c in checks) if not ok]
        return (False, "; ".join(stalled)) if stalled else (True, "ok")
    return check
