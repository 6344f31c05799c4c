"""Smoke test of the benchmark harness (bench/harness): the command behind `make bench-quick`
runs end to end on the real broker and measures every variant of its plan (~20 s)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]


def _vhosts() -> set[str]:
    request = urllib.request.Request("http://127.0.0.1:15672/api/vhosts",
                                     headers={"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="})  # guest:guest
    with urllib.request.urlopen(request, timeout=30) as answer:
        return {v["name"] for v in json.loads(answer.read())}


def test_bench_quick_measures_every_variant_and_cleans_up(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench.harness", "--quick", "--out-dir", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [out] = tmp_path.glob("*-quick.json")
    result = json.loads(out.read_text())
    runs = {r["variant"]: r for r in result["runs"]}
    assert set(runs) == {"bare", "hub 1w canned", "hub 1w simulator"}
    for name, run in runs.items():
        assert run["delivered"] == run["published"] > 0, name
        assert run["rate_delivered"] == result["plan"]["sizes"][0]["at_rate"], name
        assert run["throughput"] > 0 and run["rate_p50_ms"] > 0, name
        assert run["worker_cpu_ms"] >= 0 and run["broker_cpu_ms"] >= 0, name  # 10 ms ticks: the bare path may show 0
        assert run["worker_peak_mb"] > 10 and run["publisher_peak_mb"] > 10, name
    for name in ("hub 1w canned", "hub 1w simulator"):
        calls = runs[name]["endpoint_calls"]  # the whole XTA conversation reached the endpoint
        assert calls["createMessageId"] == calls["sendMessage"] == runs[name]["published"], calls
        assert runs[name]["stage_ms"], "no stage times scraped from the worker's /metrics"
        assert runs[name]["worker_cpu_ms"] > 0, name
    table = done.stdout
    assert "| size | variant | n | apps/s |" in table
    assert all(f"| 5 KB | {name} |" in table for name in runs)
    assert not set(result["vhosts"]) & _vhosts(), "vhosts left behind"
