"""Aggregation (medians over rounds) and the Markdown table of a benchmark run (pure functions)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bench.harness.stats import median

NUMERIC = ("throughput", "worker_cpu_ms", "broker_cpu_ms", "endpoint_cpu_ms", "rate_p50_ms", "rate_p99_ms", "burst_p50_ms",
           "burst_p99_ms", "worker_peak_mb", "worker_growth_mb", "publisher_peak_mb", "publisher_growth_mb")
BASELINE = "bare"


def aggregate(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (variant, size): the median of every figure over its rounds, the per-stage wall
    times likewise, and the ratios to the bare path of the same size (ratios of medians)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        if "error" in run:
            continue  # a failed run has no figures (the JSON keeps its error)
        groups.setdefault((run["variant"], run["size"]), []).append(run)
    rows = []
    for (variant, size), members in groups.items():
        row: dict[str, Any] = {"variant": variant, "size": size, "rounds": len(members)}
        for key in NUMERIC:
            row[key] = median([float(m.get(key, math.nan)) for m in members])
        stages = sorted({s for m in members for s in m.get("stage_ms", {})})
        row["stage_ms"] = {s: median([m.get("stage_ms", {}).get(s, math.nan) for m in members]) for s in stages}
        rows.append(row)
    base = {r["size"]: r for r in rows if r["variant"] == BASELINE}
    for row in rows:
        ref = base.get(row["size"])
        row["x_bare_throughput"] = _ratio(row["throughput"], ref["throughput"]) if ref else math.nan
        row["x_bare_broker_cpu"] = _ratio(row["broker_cpu_ms"], ref["broker_cpu_ms"]) if ref else math.nan
        row["x_bare_rate_p50"] = _ratio(row["rate_p50_ms"], ref["rate_p50_ms"]) if ref else math.nan
    return rows


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def fmt(value: float, digits: int = 1) -> str:
    """A figure for the table; '–' for a figure that was not measured."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("apps/s", "throughput", 1), ("× bare", "x_bare_throughput", 2), ("worker CPU ms/app", "worker_cpu_ms", 2),
    ("broker CPU ms/app", "broker_cpu_ms", 2), ("broker × bare", "x_bare_broker_cpu", 1),
    ("endpoint CPU ms/app", "endpoint_cpu_ms", 2),
    ("p50 ms @rate", "rate_p50_ms", 1), ("p99 ms @rate", "rate_p99_ms", 1), ("p50 × bare", "x_bare_rate_p50", 2),
    ("p50 ms burst", "burst_p50_ms", 0), ("p99 ms burst", "burst_p99_ms", 0),
    ("worker peak MB", "worker_peak_mb", 0), ("worker growth MB", "worker_growth_mb", 0),
    ("publisher peak MB", "publisher_peak_mb", 0), ("publisher growth MB", "publisher_growth_mb", 0),
)


def markdown_table(rows: Sequence[dict[str, Any]], sizes: Sequence[str], variants: Sequence[str]) -> str:
    """The main table: one line per size and variant, in the given orders."""
    head = ["size", "variant", "n", *(c[0] for c in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    index = {(r["size"], r["variant"]): r for r in rows}
    for size in sizes:
        for variant in variants:
            row = index.get((size, variant))
            if row is None:
                continue
            cells = [size, variant, str(row["rounds"]), *(fmt(row[key], digits) for _, key, digits in COLUMNS)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stage_table(rows: Sequence[dict[str, Any]], sizes: Sequence[str], variants: Sequence[str]) -> str:
    """Wall ms per application in each stage (hub variants only; stages as the worker names them)."""
    stages = sorted({s for r in rows for s in r.get("stage_ms", {})})
    if not stages:
        return "(no stage metrics scraped)"
    lines = ["| size | variant | " + " | ".join(stages) + " |", "|---|---|" + "---:|" * len(stages)]
    index = {(r["size"], r["variant"]): r for r in rows}
    for size in sizes:
        for variant in variants:
            row = index.get((size, variant))
            if row is None or not row.get("stage_ms"):
                continue
            lines.append(f"| {size} | {variant} | " + " | ".join(fmt(row["stage_ms"].get(s, math.nan), 2)
                                                           for s in stages) + " |")
    return "\n".join(lines)
