"""Per-stage wall time from a worker's /metrics (hub_stage_duration_seconds sums and counts)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

STAGE_METRIC = "hub_stage_duration_seconds"


def stage_sums(text: str) -> dict[str, tuple[float, float]]:
    """stage -> (seconds, observations), summed over adapters and outcomes, from exposition text."""
    sums: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != STAGE_METRIC:
            continue
        for sample in family.samples:
            stage = sample.labels.get("stage", "?")
            entry = sums.setdefault(stage, [0.0, 0.0])
            if sample.name.endswith("_sum"):
                entry[0] += sample.value
            elif sample.name.endswith("_count"):
                entry[1] += sample.value
    return {stage: (v[0], v[1]) for stage, v in sums.items()}


def add_sums(parts: list[dict[str, tuple[float, float]]]) -> dict[str, tuple[float, float]]:
    """The sums of several workers together."""
    total: dict[str, tuple[float, float]] = {}
    for part in parts:
        for stage, (seconds, count) in part.items():
            old = total.get(stage, (0.0, 0.0))
            total[stage] = (old[0] + seconds, old[1] + count)
    return total


def stage_ms_per_item(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]],
                      items: int) -> dict[str, float]:
    """Wall milliseconds per item spent in each stage between two scrapes."""
    if items <= 0:
        return {}
    return {stage: (seconds - before.get(stage, (0.0, 0.0))[0]) * 1000 / items
            for stage, (seconds, _count) in sorted(after.items())}
