"""The pure parts of the benchmark harness (bench/harness): percentiles, latency matching, CPU
accounting from /proc samples, stage times from /metrics text, aggregation and the Markdown table."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench.harness.metrics import add_sums, stage_ms_per_item, stage_sums
from bench.harness.procfs import CpuSample, cpu_ms_per_item, cpu_ticks, status_bytes
from bench.harness.report import aggregate, fmt, markdown_table, stage_table
from bench.harness.stats import latencies, median, percentile, throughput

# a real /proc/<pid>/stat line, with a process name holding a space and a parenthesis
STAT = ("4242 (python (x) 3) S 1 4242 4242 0 -1 4194560 2200 0 0 0 "
        "150 37 0 0 20 0 3 0 123456 300000000 20000 18446744073709551615 1 1 0 0 0 0 0 16781312 0 0 0 17 1 0 0 0 0 0")


def test_percentile_interpolates_between_ranks():
    values = [10.0, 20.0, 30.0, 40.0, 50.0]
    assert percentile(values, 50) == 30.0
    assert percentile(values, 0) == 10.0
    assert percentile(values, 100) == 50.0
    assert percentile(values, 25) == 20.0
    assert percentile(values, 99) == pytest.approx(49.6)
    assert percentile(list(reversed(values)), 90) == pytest.approx(46.0)  # order of the input does not matter
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_median_ignores_runs_that_measured_nothing():
    assert median([3.0, math.nan, 1.0, 2.0]) == 2.0
    assert math.isnan(median([math.nan]))


def test_latencies_match_in_order_and_throughput_spans_publish_to_arrival():
    published = [100.0, 100.1, 100.2]
    arrived = [100.35, 100.05, 100.25]  # out of order: matched sorted
    assert latencies(published, arrived) == pytest.approx([0.05, 0.15, 0.15])
    assert latencies(published, arrived[:2]) == pytest.approx([0.05, 0.25])  # one still missing
    assert throughput(published, arrived) == pytest.approx(3 / 0.35)
    assert math.isnan(throughput(published, []))


def test_cpu_ticks_count_utime_and_stime_after_the_process_name():
    assert cpu_ticks(STAT) == 150 + 37


def test_status_fields_in_bytes():
    text = "Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"
    assert status_bytes(text, "VmHWM") == 200 * 1024 * 1024
    assert status_bytes(text, "VmRSS") == 100 * 1024 * 1024
    assert status_bytes(text, "VmSwap") == 0


def test_cpu_ms_per_item_over_the_processes_seen_both_times():
    before = CpuSample({1: 100, 2: 50, 3: 10})
    after = CpuSample({1: 300, 2: 150, 4: 70})  # 3 is gone, 4 is new: neither counts
    assert cpu_ms_per_item(before, after, items=30, hz=100) == pytest.approx((200 + 100) * 10 / 30)
    assert math.isnan(cpu_ms_per_item(before, after, items=0, hz=100))


METRICS = """# HELP hub_stage_duration_seconds Time spent in one stage
# TYPE hub_stage_duration_seconds histogram
hub_stage_duration_seconds_bucket{adapter="alpha",le="+Inf",stage="sign"} 4.0
hub_stage_duration_seconds_sum{adapter="alpha",stage="sign"} 0.008
hub_stage_duration_seconds_count{adapter="alpha",stage="sign"} 4.0
hub_stage_duration_seconds_sum{adapter="beta",stage="sign"} 0.002
hub_stage_duration_seconds_count{adapter="beta",stage="sign"} 1.0
hub_stage_duration_seconds_sum{adapter="alpha",stage="send"} 0.2
hub_stage_duration_seconds_count{adapter="alpha",stage="send"} 4.0
# TYPE hub_messages_received_total counter
hub_messages_received_total{adapter="alpha"} 4.0
"""


def test_stage_times_from_metrics_text():
    sums = stage_sums(METRICS)  # summed over label sets (adapters)
    assert sums == {"sign": (pytest.approx(0.010), 5.0), "send": (0.2, 4.0)}
    both = add_sums([sums, {"sign": (0.002, 1.0)}])
    assert both["sign"] == pytest.approx((0.012, 6.0))
    assert stage_ms_per_item({"sign": (0.004, 2.0)}, sums, items=2) == pytest.approx({"send": 100.0, "sign": 3.0})


def _run(variant: str, size: str, throughput: float, broker: float, p50: float) -> dict[str, Any]:
    return {"variant": variant, "size": size, "throughput": throughput, "worker_cpu_ms": 1.0, "broker_cpu_ms": broker,
            "rate_p50_ms": p50, "stage_ms": {"send": 2.0} if variant != "bare" else {}}


def test_aggregate_takes_medians_and_ratios_to_the_bare_path_of_the_same_size():
    runs = [_run("bare", "5 KB", t, 0.5, 4.0) for t in (900.0, 1000.0, 950.0)]
    runs += [_run("hub 1w canned", "5 KB", t, 1.0, 8.0) for t in (100.0, 475.0, 200.0)]
    runs += [_run("bare", "2 MB", 50.0, 5.0, 40.0), _run("hub 1w canned", "2 MB", 10.0, 10.0, 60.0)]
    everything = aggregate(runs)
    two_mb = next(r for r in everything if r["variant"] == "hub 1w canned" and r["size"] == "2 MB")
    assert two_mb["x_bare_throughput"] == pytest.approx(0.2)  # against the bare path of its own size
    rows = {r["variant"]: r for r in everything if r["size"] == "5 KB"}
    assert rows["bare"]["throughput"] == 950.0
    assert rows["hub 1w canned"]["rounds"] == 3
    assert rows["hub 1w canned"]["x_bare_throughput"] == pytest.approx(200.0 / 950.0)
    assert rows["hub 1w canned"]["x_bare_broker_cpu"] == pytest.approx(2.0)
    assert rows["hub 1w canned"]["x_bare_rate_p50"] == pytest.approx(2.0)
    assert rows["hub 1w canned"]["stage_ms"] == {"send": 2.0}
    assert math.isnan(rows["hub 1w canned"]["burst_p99_ms"])  # not measured


def test_markdown_table_in_the_given_order_with_dashes_for_missing_figures():
    rows = aggregate([_run("bare", "5 KB", 900.0, 0.5, 4.0), _run("hub 1w canned", "5 KB", 90.0, 1.0, 8.0),
                      _run("bare", "40 MB", 2.0, 30.0, math.nan)])
    table = markdown_table(rows, ["5 KB", "40 MB"], ["bare", "hub 1w canned"]).splitlines()
    assert table[0].startswith("| size | variant | n | apps/s | × bare |")
    assert len({line.count("|") for line in table}) == 1  # every line has as many cells as the head
    assert [line.split("|")[1:3] for line in table[2:]] == [
        [" 5 KB ", " bare "], [" 5 KB ", " hub 1w canned "], [" 40 MB ", " bare "]]
    assert "| 90.0 | 0.10 |" in table[3]
    assert "| – |" in table[4]
    stages = stage_table(rows, ["5 KB"], ["bare", "hub 1w canned"]).splitlines()
    assert stages[0] == "| size | variant | send |" and stages[2] == "| 5 KB | hub 1w canned | 2.00 |"
    assert fmt(math.nan) == "–" and fmt(1.234, 2) == "1.23"
