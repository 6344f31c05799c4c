"""Percentiles and medians of benchmark samples (pure functions, unit-tested)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks; NaN if empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    """Median of the finite values (NaN if none): a run that measured nothing does not count."""
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def latencies(published: Sequence[float], arrived: Sequence[float]) -> list[float]:
    """Per-message latencies, matching the k-th publish with the k-th arrival (both sorted).

    The endpoint cannot see which application arrived (the content is encrypted), so arrivals are
    matched in order: exact when messages do not overtake each other (a low fixed rate), the same
    distribution in a burst where they may. Extra arrivals (re-sends) are ignored."""
    return [a - p for p, a in zip(sorted(published), sorted(arrived), strict=False)]


def throughput(published: Sequence[float], arrived: Sequence[float]) -> float:
    """Messages per second from the first publish to the last arrival (NaN if nothing arrived)."""
    if not published or not arrived:
        return math.nan
    span = max(arrived) - min(published)
    return len(arrived) / span if span > 0 else math.nan
