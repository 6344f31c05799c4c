"""Circuit breaker per endpoint: stop hammering an endpoint that is down.

CLOSED counts endpoint failures (transient transport errors only: a schema violation says nothing
about the endpoint). It OPENs after ``consecutive_failures`` in a row, or when at least
``failure_rate`` of the last ``window`` outcomes failed. While OPEN the worker cancels its consumer
(messages wait in the queue, not in the retry ladder). After ``cool_down`` seconds it goes
HALF_OPEN: the worker consumes with prefetch 1, and the first outcome closes or re-opens it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

CLOSED = "closed"
HALF_OPEN = "half_open"
OPEN = "open"
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


@dataclass(frozen=True)
class BreakerSettings:
    consecutive_failures: int = 5
    failure_rate: float = 0.5
    window: int = 20
    cool_down: float = 30.0


class CircuitBreaker:
    """Thread-safe; ``on_change(old, new)`` is called (outside the lock) on every transition."""

    def __init__(self, settings: BreakerSettings | None = None, *, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[str, str], None] | None = None) -> None:
        self.settings = settings or BreakerSettings()
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = CLOSED
        self._opened_at = 0.0
        self._run = 0
        self._recent: deque[bool] = deque(maxlen=self.settings.window)

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    def _transition(self, new: str) -> tuple[str, str] | None:
        old, self._state = self._state, new
        if new == OPEN:
            self._opened_at = self._clock()
        if new == CLOSED:
            self._run = 0
            self._recent.clear()
        return (old, new) if old != new else None

    def _notify(self, change: tuple[str, str] | None) -> None:
        if change and self._on_change:
            self._on_change(*change)

    def record_success(self) -> None:
        with self._lock:
            self._run = 0
            self._recent.append(True)
            change = self._transition(CLOSED) if self._state == HALF_OPEN else None
        self._notify(change)

    def record_failure(self) -> None:
        s = self.settings
        with self._lock:
            self._run += 1
            self._recent.append(False)
            failures = self._recent.count(False)
            change = None
            if self._state == HALF_OPEN or self._state == CLOSED and (
                self._run >= s.consecutive_failures
                or (len(self._recent) >= s.window and failures / len(self._recent) >= s.failure_rate)
            ):
                change = self._transition(OPEN)
        self._notify(change)

    def try_half_open(self) -> bool:
        """OPEN and cooled down -> HALF_OPEN (returns True once, when it happens)."""
        with self._lock:
            if self._state != OPEN or self._clock() - self._opened_at < self.settings.cool_down:
                return False
            change = self._transition(HALF_OPEN)
        self._notify(change)
        return True
