"""PNG of a run: throughput and latency by payload size, one line per variant (matplotlib, the
`bench` extra of pyproject.toml)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot(rows: Sequence[dict[str, Any]], sizes: Sequence[str], variants: Sequence[str], path: Path) -> bool:
    """Write the plot to ``path``; False (and nothing written) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    index = {(r["size"], r["variant"]): r for r in rows}
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for variant in variants:
        xs = [s for s in sizes if (s, variant) in index]
        left.plot(xs, [index[(s, variant)]["throughput"] for s in xs], marker="o", label=variant)
        right.plot(xs, [index[(s, variant)]["burst_p50_ms"] for s in xs], marker="o", label=f"{variant} burst p50")
        rate = [s for s in xs if index[(s, variant)]["rate_p50_ms"] == index[(s, variant)]["rate_p50_ms"]]
        if rate:
            right.plot(rate, [index[(s, variant)]["rate_p50_ms"] for s in rate], marker="x", linestyle="--",
                       label=f"{variant} p50 at low rate")
    left.set(title="throughput (median of rounds)", xlabel="payload", ylabel="applications/s", yscale="log")
    right.set(title="latency publish → endpoint", xlabel="payload", ylabel="ms", yscale="log")
    left.legend(fontsize=7)
    right.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
