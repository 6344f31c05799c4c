"""A clock that moves only when a test says so: report delays and outage windows of the XTA
simulator (``SimulatorConfig(clock=...)``) then depend on the test's steps, not on how busy the
machine is."""

from __future__ import annotations

import threading
import time


class SteppedClock:
    """Seconds since the epoch, frozen at creation and advanced by ``advance``; thread-safe."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._now += seconds
