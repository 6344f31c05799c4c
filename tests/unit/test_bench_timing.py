"""The benchmarks' shared timer and the security benchmark's path check: figures are medians over
>= 5 runs, compared variants alternate, and a row labelled "default" times the worker's default path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from transport.security.keys import load_certificate, load_signing_identity

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _bench_module(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Load ``bench/<name>.py`` as the scripts see it (``bench/`` first on sys.path)."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}_under_test", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def timing(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return _bench_module("timing", monkeypatch)


def test_variants_alternate_and_warm_up_rounds_are_discarded(timing: ModuleType) -> None:
    order: list[str] = []
    counters = {"a": 0, "b": 0, "c": 0}

    def variant(name: str, base: float) -> object:
        def run() -> float:
            order.append(name)
            counters[name] += 1
            return base + counters[name]  # the n-th call reports base + n
        return run

    result = timing.interleaved({"a": variant("a", 0.0), "b": variant("b", 100.0), "c": variant("c", 200.0)},
                                rounds=5, warmup_rounds=2)
    assert order == ["a", "b", "c"] * 7
    assert result["a"].samples == (3.0, 4.0, 5.0, 6.0, 7.0)  # calls 1 and 2 were the warm-up
    assert result["b"].samples == (103.0, 104.0, 105.0, 106.0, 107.0)
    assert result["c"].median == 205.0


def test_spread_reports_median_range_and_quartiles(timing: ModuleType) -> None:
    spread = timing.Spread((0.005, 0.001, 0.003, 0.002, 0.100))
    assert spread.median == 0.003
    assert (spread.minimum, spread.maximum) == (0.001, 0.100)
    assert spread.quartiles == (0.002, 0.005)
    assert spread.describe_ms() == "3.000 [1.000–100.000] ms (n=5)"


def test_fewer_than_five_runs_are_refused(timing: ModuleType) -> None:
    assert timing.MIN_RUNS == 5
    with pytest.raises(ValueError, match="at least 5"):
        timing.Spread((1.0, 2.0, 3.0, 4.0))
    with pytest.raises(ValueError, match="at least 5"):
        timing.interleaved({"a": lambda: 1.0}, rounds=4)
    with pytest.raises(ValueError, match="at least 5"):
        timing.median_ms(lambda: None, repeat=3)


def test_sample_times_each_call_after_the_warm_up(timing: ModuleType) -> None:
    calls: list[int] = []
    spread = timing.sample(lambda: calls.append(1), repeat=6, warmup=2)
    assert len(calls) == 8 and len(spread.samples) == 6
    assert all(s >= 0 for s in spread.samples)


def test_security_bench_labels_the_default_path_truthfully(pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """The row labelled "default" must time the MTOM/encrypt_container path a worker takes by default."""
    bench = _bench_module("bench_security", monkeypatch)
    signer = load_signing_identity(*pki["portal"])
    delivery = bench._delivery(bench.application(20 * 1024), load_certificate(pki["azr-000100"][1]))
    default, inline = bench._adapter(signer, {}), bench._adapter(signer, {"mtom": False})
    try:
        bench._check_paths(default, inline, delivery)  # the real defaults pass
        with pytest.raises(SystemExit, match="MTOM part"):
            bench._check_paths(inline, inline, delivery)  # an inline "default" is caught
        with pytest.raises(SystemExit, match="inline"):
            bench._check_paths(default, default, delivery)
    finally:
        default.close()
        inline.close()
