"""One benchmark run: variants interleaved over rounds and sizes, figures per run, medians, output."""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import setup
from bench.harness.metrics import add_sums, stage_ms_per_item, stage_sums
from bench.harness.procfs import CpuSample, broker_pid, cpu_ms_per_item, peak_rss, rss
from bench.harness.publish import ONE_AT_A_TIME_BYTES
from bench.harness.stats import latencies, percentile, throughput

MB = 1024 * 1024


@dataclass(frozen=True)
class Size:
    label: str
    bytes: int
    burst: int      # applications published at once (throughput, CPU, burst latency)
    rate: float     # applications per second of the low-rate phase
    at_rate: int    # applications of the low-rate phase (0: not measured)


@dataclass(frozen=True)
class Variant:
    name: str
    workers: int        # 0: the bare path
    endpoint: str       # "canned" or "simulator"
    status_batch: float = 0.0  # [status] batch_window of the workers (0: one message per status event)


@dataclass
class Plan:
    sizes: list[Size]
    variants: list[Variant]
    rounds: int
    soak: int = 0       # soak mode: applications of 20 KB (hub, 1 worker, canned endpoint)


FULL_SIZES = [Size("5 KB", 5_000, 200, 10, 30), Size("50 KB", 50_000, 200, 10, 30),
              Size("2 MB", 2_000_000, 16, 2, 6), Size("40 MB", 40_000_000, 3, 0, 0)]
QUICK_SIZES = [Size("5 KB", 5_000, 50, 10, 10)]
VARIANTS = [Variant("bare", 0, "canned"), Variant("hub 1w canned", 1, "canned"),
            Variant("hub 1w canned batched", 1, "canned", status_batch=0.05), Variant("hub 2w canned", 2, "canned"), Variant("hub 1w simulator", 1, "simulator"),
            Variant("hub 2w simulator", 2, "simulator")]


def plan_for(mode: str) -> Plan:
    if mode == "quick":
        return Plan(QUICK_SIZES, [v for v in VARIANTS if v.name in ("bare", "hub 1w canned", "hub 1w simulator")],
                    rounds=1)
    if mode == "soak":
        return Plan([], [], rounds=1, soak=int(os.environ.get("BENCH_SOAK_COUNT", "50000")))
    sizes = os.environ.get("BENCH_SIZES")  # e.g. "5 KB,40 MB": a part of the full run
    variants = os.environ.get("BENCH_VARIANTS")  # e.g. "bare,hub 1w canned"
    return Plan([s for s in FULL_SIZES if not sizes or s.label in sizes.split(",")],
                [v for v in VARIANTS if not variants or v.name in variants.split(",")],
                rounds=int(os.environ.get("BENCH_ROUNDS", "3")))


@dataclass
class Bench:
    """The processes and places shared by all runs of one benchmark."""

    work: Path
    config: Path
    vhosts: dict[str, tuple[str, str]] = field(default_factory=dict)  # variant -> (vhost, url)
    endpoints: dict[str, str] = field(default_factory=dict)           # kind -> base URL
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    endpoint_pids: dict[str, int] = field(default_factory=dict)
    seed: int = 1

    def log(self, name: str) -> Path:
        return self.work / f"{name}.log"

    def start_endpoint(self, kind: str, *extra: str) -> None:
        port = setup.free_port()
        proc = setup.module("bench.harness.endpoint", "--mode", kind, "--port", str(port), *extra,
                            log=self.log(f"endpoint-{kind}"))
        self.procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        setup.wait_http(f"{base}/_bench/count", 60, f"{kind} endpoint", proc)
        self.endpoints[kind] = base
        self.endpoint_pids[kind] = proc.pid

    def vhost(self, variant: Variant) -> str:
        if variant.name not in self.vhosts:
            label = "bare" if variant.workers == 0 else f"{variant.workers}w-{variant.endpoint[:3]}"
            self.vhosts[variant.name] = setup.create_vhost(label)
            if variant.workers:
                topo = setup.hub(self.config, "topology", "apply", env=setup.env_for(self.vhosts[variant.name][1]),
                                 log=self.log("topology"))
                if topo.wait(120) != 0:
                    raise RuntimeError(f"`hub topology apply` failed: see {self.log('topology')}")
        return self.vhosts[variant.name][1]

    def close(self) -> None:
        for proc in reversed(self.procs):
            setup.stop(proc)
        for vhost, _url in self.vhosts.values():
            setup.delete_vhost(vhost)


def _counts(base: str) -> dict[str, int]:
    return {k: int(v) for k, v in setup.get_json(f"{base}/_bench/count").items()}


def _wait_arrivals(base: str, expected: int, deadline: float, procs: list[subprocess.Popen[bytes]]) -> int:
    until = time.monotonic() + deadline
    arrived = 0
    while time.monotonic() < until:
        arrived = _counts(base)["arrived"]
        if arrived >= expected:
            return arrived
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a consumer process died during the run (see its log)")
        time.sleep(0.05)
    return arrived


def _settle(base: str, delivered: int, workers: int) -> None:
    """Until the transport-report polls of the delivered applications are done (hub variants), so
    their CPU counts; a hub that polls later than 20 s (or never) just ends the wait."""
    if not workers:
        return
    until = time.monotonic() + 20
    while time.monotonic() < until and _counts(base).get("getTransportReport", 0) < delivered:
        time.sleep(0.1)
    time.sleep(0.5)  # the status event of the last report


def _publish(bench: Bench, variant: Variant, size: Size, amqp: str, count: int, rate: float,
             pace: str | None = None) -> dict[str, Any]:
    out = bench.work / f"publish-{bench.seed}.json"
    args = ["--mode", "hub" if variant.workers else "bare", "--config", str(bench.config), "--amqp", amqp,
            "--size", str(size.bytes), "--count", str(count), "--rate", str(rate), "--seed", str(bench.seed),
            "--out", str(out)]
    if pace:
        args += ["--pace-url", pace]
    bench.seed += count
    proc = setup.module("bench.harness.publish", *args, log=bench.log("publisher"))
    if proc.wait(3600) != 0:
        raise RuntimeError(f"publisher failed: see {bench.log('publisher')}")
    result: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    return result


def _start_consumers(bench: Bench, variant: Variant, amqp: str) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    base = bench.endpoints[variant.endpoint]
    if not variant.workers:
        proc = setup.module("bench.harness.bare", "--amqp", amqp, "--queue", "bench.bare", "--url", f"{base}/bare",
                            log=bench.log("bare"))
        _wait_queue_consumer(amqp, proc)
        return [proc], []
    ledger = Path(tempfile.mkdtemp(prefix="ledger-", dir=bench.work)) / "ledger.db"
    procs: list[subprocess.Popen[bytes]] = []
    metrics: list[str] = []
    # one after the other: two workers opening a new SQLite ledger at the same moment can fail with
    # "database is locked" (seen with the code of 2026-12-01; see docs/benchmarks.md)
    for index in range(variant.workers):
        port = setup.free_port()
        env = setup.env_for(amqp, f"{base}/xta", ledger)
        if variant.status_batch:
            env["HUB_STATUS__BATCH_WINDOW"] = str(variant.status_batch)
        log = bench.log(f"worker-{index}")
        procs.append(setup.hub(bench.config, "worker", "alpha", "--http-port", str(port), env=env, log=log))
        metrics.append(f"http://127.0.0.1:{port}")
        try:
            setup.wait_http(f"{metrics[-1]}/readyz", 120, "hub worker", procs[-1], log)
        except RuntimeError:
            for started in procs:
                setup.stop(started)
            raise
    return procs, metrics


def _wait_queue_consumer(amqp: str, proc: subprocess.Popen[bytes]) -> None:
    """Until the bare consumer has declared its queue and consumes from it (the queue's consumer count)."""
    import pika

    until = time.monotonic() + 60
    while time.monotonic() < until:
        if proc.poll() is not None:
            raise RuntimeError("bare consumer died at start")
        try:
            connection = pika.BlockingConnection(pika.URLParameters(amqp))
            try:
                declared = connection.channel().queue_declare("bench.bare", passive=True)
                if declared.method.consumer_count > 0:
                    return
            finally:
                if connection.is_open:
                    connection.close()
        except pika.exceptions.AMQPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("bare consumer did not start consuming")


def _scrape(urls: list[str]) -> dict[str, tuple[float, float]]:
    parts = []
    for url in urls:
        with urllib.request.urlopen(f"{url}/metrics", timeout=30) as answer:
            parts.append(stage_sums(answer.read().decode()))
    return add_sums(parts)


def run_once(bench: Bench, variant: Variant, size: Size, round_no: int) -> dict[str, Any]:
    """One variant at one size: burst (throughput, CPU, stage times, burst latency), then the low rate."""
    amqp = bench.vhost(variant)
    base = bench.endpoints[variant.endpoint]
    setup.post(f"{base}/_bench/reset")
    procs, metric_urls = _start_consumers(bench, variant, amqp)
    pids = [p.pid for p in procs]
    broker = broker_pid()
    try:
        rss_ready = max(rss(pid) for pid in pids)
        stages_before = _scrape(metric_urls)
        endpoint = [bench.endpoint_pids[variant.endpoint]]
        cpu_before, broker_before = CpuSample.of(pids), CpuSample.of([broker] if broker else [])
        endpoint_before = CpuSample.of(endpoint)
        # applications of 8 MB and more go one at a time: their memory figures are one application's
        pace = f"{base}/_bench/count" if size.bytes >= ONE_AT_A_TIME_BYTES else None
        pub = _publish(bench, variant, size, amqp, size.burst, 0.0, pace)
        delivered = _wait_arrivals(base, size.burst, 60 + size.burst * size.bytes / 2e6, procs)
        if delivered < size.burst:
            raise RuntimeError(f"only {delivered} of {size.burst} applications reached the endpoint")
        arrivals = setup.get_json(f"{base}/_bench/arrivals")["times"]
        _settle(base, delivered, variant.workers)
        cpu_after, broker_after = CpuSample.of(pids), CpuSample.of([broker] if broker else [])
        endpoint_after = CpuSample.of(endpoint)
        calls = _counts(base)
        stages_after = _scrape(metric_urls)
        burst_lat = latencies(pub["published"], arrivals)
        result: dict[str, Any] = {
            "variant": variant.name, "size": size.label, "round": round_no, "published": size.burst,
            "delivered": delivered, "throughput": throughput(pub["published"], arrivals),
            "worker_cpu_ms": cpu_ms_per_item(cpu_before, cpu_after, delivered),
            "broker_cpu_ms": cpu_ms_per_item(broker_before, broker_after, delivered),
            "endpoint_cpu_ms": cpu_ms_per_item(endpoint_before, endpoint_after, delivered),
            "endpoint_calls": calls,
            "stage_ms": stage_ms_per_item(stages_before, stages_after, delivered),
            "burst_p50_ms": percentile(burst_lat, 50) * 1000, "burst_p99_ms": percentile(burst_lat, 99) * 1000,
            "publisher_peak_mb": pub["peak"] / MB, "publisher_growth_mb": (pub["peak"] - pub["rss_base"]) / MB,
        }
        if size.at_rate:
            setup.post(f"{base}/_bench/reset")
            pub = _publish(bench, variant, size, amqp, size.at_rate, size.rate)
            got = _wait_arrivals(base, size.at_rate, 60, procs)
            if got < size.at_rate:
                raise RuntimeError(f"only {got} of {size.at_rate} applications reached the endpoint (low rate)")
            rate_lat = latencies(pub["published"], setup.get_json(f"{base}/_bench/arrivals")["times"])
            result.update(rate_p50_ms=percentile(rate_lat, 50) * 1000, rate_p99_ms=percentile(rate_lat, 99) * 1000,
                          rate_delivered=got)
            result["publisher_peak_mb"] = max(result["publisher_peak_mb"], pub["peak"] / MB)
        peaks = [peak_rss(pid) for pid in pids]
        result.update(worker_peak_mb=max(peaks) / MB, worker_growth_mb=(max(peaks) - rss_ready) / MB)
        return result
    finally:
        for proc in procs:
            setup.stop(proc)


def _attempt(bench: Bench, variant: Variant, size: Size, round_no: int, progress: Any) -> dict[str, Any]:
    """``run_once``, tried a second time if it fails (the code under test may be mid-edit, the shared
    machine busy); a second failure is recorded as the run's ``error`` and the benchmark goes on."""
    for attempt in (1, 2):
        try:
            return run_once(bench, variant, size, round_no)
        except Exception as exc:  # noqa: BLE001 - one failed run must not lose the others' figures
            progress(f"round {round_no} {size.label:>6} {variant.name:<17} FAILED (attempt {attempt}): {exc}")
            error = f"{type(exc).__name__}: {exc}"
            time.sleep(5)
    return {"variant": variant.name, "size": size.label, "round": round_no, "error": error}


def record_answers(bench: Bench) -> Path:
    """Deliver a few applications through one worker to the simulator, which records its answers."""
    answers = bench.work / "answers.json"
    bench.start_endpoint("simulator", "--config", str(bench.config), "--record", str(answers))
    warm = Variant("hub 1w simulator", 1, "simulator")
    run_once(bench, warm, Size("5 KB", 5_000, 3, 0, 0), 0)
    recorded = json.loads(answers.read_text()) if answers.exists() else {}
    missing = {"checkAccountActive", "createMessageId", "sendMessage", "getTransportReport"} - set(recorded)
    if missing:
        raise RuntimeError(f"the simulator answered no {sorted(missing)} during the recording run")
    return answers


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    ram = next((int(line.split()[1]) // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_mb": ram, "python": platform.python_version(),
            "load_start": os.getloadavg()}


def run(plan: Plan, progress: Any = print) -> dict[str, Any]:
    """The whole benchmark; returns the raw runs and the machine (aggregation is report.aggregate)."""
    work = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    bench = Bench(work, setup.write_config(work))
    started = time.time()
    failed = False
    result: dict[str, Any] = {"machine": machine(), "started": started, "runs": [], "plan": {
        "rounds": plan.rounds, "sizes": [vars(s) for s in plan.sizes], "variants": [vars(v) for v in plan.variants]}}
    try:
        record_answers(bench)
        bench.start_endpoint("canned", "--answers", str(work / "answers.json"))
        if plan.soak:
            result["soak"] = soak(bench, plan.soak, progress)
        for round_no in range(1, plan.rounds + 1):
            for size in plan.sizes:
                for variant in plan.variants:
                    t0 = time.monotonic()
                    one = _attempt(bench, variant, size, round_no, progress)
                    result["runs"].append(one)
                    if "error" in one:
                        failed = True
                        continue
                    progress(f"round {round_no} {size.label:>6} {variant.name:<17} {one['throughput']:8.1f} apps/s "
                             f"worker {one['worker_cpu_ms']:6.2f} ms/app  ({time.monotonic() - t0:.0f} s)")
    finally:
        result["vhosts"] = [vhost for vhost, _url in bench.vhosts.values()]
        bench.close()
        result["machine"]["load_end"] = os.getloadavg()
        result["seconds"] = time.time() - started
        if os.environ.get("BENCH_KEEP_WORK") or failed:
            print(f"work folder kept (logs): {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return result


def soak(bench: Bench, count: int, progress: Any) -> dict[str, Any]:
    """``count`` 20 KB applications through one worker (canned endpoint): worker RSS after warm-up
    (the first 10 %) against the end, and every application delivered at the endpoint."""
    variant = Variant("hub 1w canned", 1, "canned")
    amqp = bench.vhost(variant)
    base = bench.endpoints["canned"]
    setup.post(f"{base}/_bench/reset")
    procs, _ = _start_consumers(bench, variant, amqp)
    pid = procs[0].pid
    samples: list[tuple[int, int]] = []
    warm = max(1, count // 10)
    publisher = setup.module("bench.harness.publish", "--mode", "hub", "--config", str(bench.config), "--amqp", amqp,
                             "--size", "20000", "--count", str(count), "--seed", str(bench.seed),
                             "--pace-url", f"{base}/_bench/count", "--out", str(bench.work / "soak-publish.json"),
                             log=bench.log("publisher"))
    started = time.monotonic()
    try:
        delivered = 0
        last_progress = 0.0
        while delivered < count and time.monotonic() - started < 6 * 3600:
            delivered = _counts(base)["arrived"]
            samples.append((delivered, rss(pid)))
            if time.monotonic() - last_progress > 30:
                progress(f"soak: {delivered}/{count} delivered, worker RSS {rss(pid) / MB:.0f} MB")
                last_progress = time.monotonic()
            if procs[0].poll() is not None or (publisher.poll() not in (None, 0)):
                raise RuntimeError("soak: the worker or the publisher died")
            time.sleep(1)
        publisher.wait(600)
        pub = json.loads((bench.work / "soak-publish.json").read_text())
        seconds = time.monotonic() - started
        after_warm = next((r for d, r in samples if d >= warm), math.nan)
        return {"count": count, "published": len(pub["published"]), "delivered": delivered,
                "lost": count - delivered, "seconds": seconds, "throughput": delivered / seconds,
                "rss_after_warmup_mb": after_warm / MB, "rss_end_mb": samples[-1][1] / MB,
                "growth_mb": (samples[-1][1] - after_warm) / MB, "worker_peak_mb": peak_rss(pid) / MB,
                "publisher_peak_mb": pub["peak"] / MB}
    finally:
        setup.stop(publisher)
        for proc in procs:
            setup.stop(proc)
