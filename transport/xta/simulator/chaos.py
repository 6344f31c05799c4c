"""Fault injection of the XTA simulator: one-off injections and standing chaos (rates, outages, drops).

``Chaos.before_request`` runs before the request body is read (outage windows, random connection
drops, extra latency); ``Chaos.after_parse`` once the operation is known (garbage windows, whose
nonsense depends on the operation; count-based injections; error codes at a rate). Both return a ``Disruption`` (or None) that the WSGI layer carries out.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from transport.xta.simulator.config import GARBAGE_KINDS, ChaosConfig, InjectedFault


@dataclass(frozen=True)
class Disruption:
    """What to do instead of (or on top of) answering: ``kind`` drop/http/fault/garbage/None;
    ``garbage`` names the kind of nonsense (``config.GARBAGE_KINDS``)."""

    kind: str | None = None
    http_status: int | None = None
    code: str | None = None
    garbage: str | None = None
    delay: float = 0.0
    after_processing: bool = False
    reason: str = "injected fault"


class Chaos:
    """Thread-safe source of disruptions; ``started`` (read from ``clock``) anchors the outage windows."""

    def __init__(self, config: ChaosConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._injections: list[InjectedFault] = []
        self.configure(config)

    def configure(self, config: ChaosConfig) -> None:
        """Replace the standing chaos (outage windows restart from now)."""
        with self._lock:
            self.config = config
            self._random = random.Random(config.seed)
            self.started = self._clock()

    def inject(self, fault: InjectedFault) -> None:
        with self._lock:
            self._injections.append(fault)

    def reset(self) -> None:
        with self._lock:
            self._injections.clear()
        self.configure(ChaosConfig())

    def _delay(self) -> float:
        c = self.config
        return c.latency + (self._random.uniform(0, c.latency_jitter) if c.latency_jitter else 0.0)

    def before_request(self) -> Disruption | None:
        with self._lock:
            c = self.config
            delay = self._delay()
            elapsed = self._clock() - self.started
            for outage in c.outages:
                if outage.start <= elapsed < outage.start + outage.duration:
                    if outage.mode in GARBAGE_KINDS:
                        continue  # answered after parsing: the nonsense depends on the operation
                    if outage.mode == "drop":
                        return Disruption("drop", delay=delay, reason="outage window")
                    if outage.mode == "503":
                        return Disruption("http", http_status=503, delay=delay, reason="outage window")
                    return Disruption("fault", code=outage.mode, delay=delay, reason="outage window")
            if c.drop_rate and self._random.random() < c.drop_rate:
                return Disruption("drop", delay=delay, reason="dropped connection")
        return Disruption(delay=delay) if delay else None

    def after_parse(self, operation: str) -> Disruption | None:
        with self._lock:
            elapsed = self._clock() - self.started
            for outage in self.config.outages:
                if outage.mode in GARBAGE_KINDS and outage.start <= elapsed < outage.start + outage.duration:
                    return Disruption("garbage", garbage=outage.mode, reason="outage window")
            for fault in self._injections:
                if fault.operation in (None, operation):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._injections.remove(fault)
                    return _from_injection(fault)
            for rate in self.config.fault_rates:
                if rate.operation in (None, operation) and self._random.random() < rate.rate:
                    if rate.http_status is not None:
                        return Disruption("http", http_status=rate.http_status, reason="fault rate")
                    return Disruption("fault", code=rate.code, reason="fault rate")
        return None


def _from_injection(fault: InjectedFault) -> Disruption:
    if fault.drop:
        return Disruption("drop", delay=fault.latency, after_processing=fault.after_processing)
    if fault.garbage_kind is not None:
        return Disruption("garbage", garbage=fault.garbage_kind, delay=fault.latency)
    if fault.http_status is not None:
        return Disruption("http", http_status=fault.http_status, delay=fault.latency)
    if fault.code is not None:
        return Disruption("fault", code=fault.code, delay=fault.latency)
    return Disruption(delay=fault.latency)
