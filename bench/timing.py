"""Shared timing helpers of the benchmark scripts (run as `python bench/<script>.py`).

Every figure is a median over at least ``MIN_RUNS`` timed runs and carries its spread, so one
scheduling hiccup on a busy machine neither makes nor hides a difference. Variants that are
compared with each other run interleaved (A B C A B C ...): load that comes and goes hits them alike.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

MIN_RUNS = 5


@dataclass(frozen=True)
class Spread:
    """Wall times (seconds) of repeated runs of one thing: median, range and interquartile range."""

    samples: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.samples) < MIN_RUNS:
            raise ValueError(f"{len(self.samples)} samples: a median needs at least {MIN_RUNS} runs")

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def minimum(self) -> float:
        return min(self.samples)

    @property
    def maximum(self) -> float:
        return max(self.samples)

    @property
    def quartiles(self) -> tuple[float, float]:
        """(Q1, Q3), inclusive method: stays inside the observed range for small samples."""
        q1, _, q3 = statistics.quantiles(self.samples, n=4, method="inclusive")
        return q1, q3

    def describe_ms(self) -> str:
        """``median [min–max] ms (n runs)``, for one line of a report."""
        return (f"{self.median * 1000:.3f} [{self.minimum * 1000:.3f}–{self.maximum * 1000:.3f}] ms "
                f"(n={len(self.samples)})")


def sample(fn: Callable[[], object], repeat: int, warmup: int = 3) -> Spread:
    """Wall times of ``repeat`` calls of ``fn``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return Spread(tuple(samples))


def median_ms(fn: Callable[[], object], repeat: int, warmup: int = 3) -> float:
    """Median wall time of ``fn`` in milliseconds over ``repeat`` (>= MIN_RUNS) calls, after ``warmup``."""
    return sample(fn, repeat, warmup).median * 1000


def interleaved(runs: Mapping[str, Callable[[], float]], rounds: int, warmup_rounds: int = 1) -> dict[str, Spread]:
    """Run every variant once per round, in the same order each round (A B C A B C ...).

    Each callable does its own set-up and returns the seconds of the part it times, so set-up and
    clean-up (connecting, purging a queue) stay outside the figure. ``warmup_rounds`` are discarded.
    """
    if rounds < MIN_RUNS:
        raise ValueError(f"{rounds} rounds: a median needs at least {MIN_RUNS} runs")
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for index in range(warmup_rounds + rounds):
        for name, run in runs.items():
            seconds = run()
            if index >= warmup_rounds:
                samples[name].append(seconds)
    return {name: Spread(tuple(values)) for name, values in samples.items()}


def load_note() -> str:
    """CPU count and load average, printed with the figures: a busy machine widens every spread."""
    one, five, fifteen = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min)"


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    """``fn`` as an ``interleaved`` variant: its whole call is the timed part."""
    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    return run


def proc_status(field: str) -> int:
    """A ``/proc/self/status`` size field (``VmHWM``, ``VmRSS``, ...) in bytes; 0 if absent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def reset_peak_rss() -> None:
    """Linux: VmHWM := VmRSS, so the next peak is the next step's own."""
    Path("/proc/self/clear_refs").write_text("5")
