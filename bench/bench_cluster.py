"""Throughput of one and of two adapter workers on a three-node RabbitMQ cluster against the single
node on 5672, side by side in one run (issue 13).

Each round runs the four variants in turn (order rotated per round): single node with 1 and 2
workers, cluster with 1 and 2 workers. A variant starts its workers (real `hub worker` processes,
broker.urls = every node of its broker, one shared PostgreSQL ledger), publishes ``--count``
applications of 2 KB through the confirming publisher and measures from the first publish to the
last delivery at the in-process XTA simulator. Every variant gets its own vhost. The cluster is
three private nodes of the installed rabbitmq-server (tests/cluster/harness.py); the node on 5672
is only used through a fresh vhost.

    .venv/bin/python -m bench.bench_cluster [--count 1000] [--rounds 3]

Prints a Markdown table: median applications/s [min-max] per variant and the ratios.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.cluster.harness import running_cluster
from tests.cluster.scenario import fresh_ledger, node_config
from tests.reliability.support import (
    WorkerProcess,
    applications,
    load,
    publish,
    reap_processes,
    simulator_settings,
)
from transport.security.demopki import make_test_pki
from transport.xta.simulator import serve

READERS = ("azr:000100", "azr:000200")  # both on adapter 'alpha'
SHARED = "amqp://guest:guest@127.0.0.1:5672/"
SHARED_API = "http://127.0.0.1:15672/api"


def _shared_vhost(vhost: str) -> list[str]:
    """A fresh vhost on the node on 5672 (management API), guest allowed; its URL as a list of one."""
    auth = base64.b64encode(b"guest:guest").decode()
    for method, path, body in (("PUT", f"vhosts/{vhost}", b"{}"),
                               ("PUT", f"permissions/{vhost}/guest",
                                json.dumps({"configure": ".*", "write": ".*", "read": ".*"}).encode())):
        request = urllib.request.Request(f"{SHARED_API}/{path}", data=body, method=method,
                                         headers={"Authorization": f"Basic {auth}",
                                                  "Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=30).close()
    return [SHARED + vhost]


def _delete_shared_vhost(vhost: str) -> None:
    auth = base64.b64encode(b"guest:guest").decode()
    request = urllib.request.Request(f"{SHARED_API}/vhosts/{vhost}", method="DELETE",
                                     headers={"Authorization": f"Basic {auth}"})
    urllib.request.urlopen(request, timeout=30).close()


def run_variant(folder: Path, urls: list[str], workers: int, count: int, pki: dict[str, tuple[Path, Path]]) -> float:
    """Applications per second from the first publish to the last delivery."""
    simulator = serve(simulator_settings(pki))
    processes: list[WorkerProcess] = []
    ledger_db = fresh_ledger()  # one PostgreSQL ledger the workers share, as on several hosts
    ledger = ledger_db.__enter__()
    try:
        for n in range(workers):
            path = node_config(folder / f"w{n}", urls, ledger, pki, simulator.url, concurrency=4)
            processes.append(WorkerProcess(path, "alpha", folder).start())
        envelopes = applications(count, f"bench-{secrets.token_hex(3)}", readers=READERS)
        started = time.monotonic()
        publish(load(path), envelopes)
        deadline = started + 600
        while len(simulator.store) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(simulator.store)} of {count} delivered in 600 s")
            time.sleep(0.02)
        return count / (time.monotonic() - started)
    finally:
        for process in processes:
            process.terminate()
        simulator.stop()
        reap_processes()
        ledger_db.__exit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        base = Path(tmp)
        pki = make_test_pki(base / "pki", ["portal", "azr-000100", "azr-000200", "azr-000300"])
        with running_cluster() as cluster:
            print(f"cluster of 3 started in {cluster.start_seconds:.1f} s", flush=True)
            results: dict[str, list[float]] = {}

            def single(vhost: str) -> list[str]:
                return _shared_vhost(vhost)

            def clustered(vhost: str) -> list[str]:
                return cluster.add_vhost(vhost)

            variants: list[tuple[str, Callable[[str], list[str]], int]] = [
                ("single node, 1 worker", single, 1), ("single node, 2 workers", single, 2),
                ("cluster of 3, 1 worker", clustered, 1), ("cluster of 3, 2 workers", clustered, 2)]
            for round_ in range(args.rounds):
                order = variants[round_ % len(variants):] + variants[:round_ % len(variants)]
                for name, where, workers in order:
                    vhost = f"bench-{secrets.token_hex(4)}"
                    urls = where(vhost)
                    try:
                        rate = run_variant(base / vhost, urls, workers, args.count, pki)
                    finally:
                        if where is single:
                            _delete_shared_vhost(vhost)
                    results.setdefault(name, []).append(rate)
                    print(f"  round {round_ + 1}: {name}: {rate:.1f} applications/s", flush=True)
    print(f"\n{args.count} applications of 2 KB per variant, {args.rounds} rounds, median [min-max]\n")
    print("| variant | applications/s | vs single node, same workers |")
    print("|---|---|---|")
    medians = {name: statistics.median(rates) for name, rates in results.items()}
    for name, rates in results.items():
        base_rate = medians[f"single node, {name.split(', ')[1]}"]
        print(f"| {name} | {medians[name]:.1f} [{min(rates):.1f}-{max(rates):.1f}] | "
              f"{medians[name] / base_rate:.2f}x |")


if __name__ == "__main__":
    main()
