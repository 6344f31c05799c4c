"""Benchmark of the delivery ledger's writes per application (a script, not a test).

    .venv/bin/python bench/bench_ledger.py [--apps 200] [--rounds 7] [--postgres URL]

Per application the pipeline writes the ledger twice: ``allocate`` (the XTA MessageID, before
sendMessage) and ``mark_delivered`` (after it). Compared, interleaved round by round (A B C D A B C
D ...), medians over the rounds of the milliseconds per application (allocate + mark_delivered):

* ``before``: both writes flushed to disk (the ledger up to issue 11: SQLite ``synchronous=FULL``
  for every commit, PostgreSQL ``synchronous_commit=on`` for every commit), and the allocation an
  INSERT plus a SELECT;
* ``after``: only the allocation flushed, the mark not, the allocation one INSERT ... RETURNING
  (hub/ledger.py today).

for SQLite on this disk (a fresh file in the temporary folder) and the local PostgreSQL. With
``strace`` installed it also counts the fsync/fdatasync calls per application of the SQLite variants
(in a child process, outside the timed runs). Figures of one run on a shared machine: compare ratios.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import MIN_RUNS, Spread, interleaved, load_note

from hub.ledger import ALLOCATED, DeliveryLedger, PostgresLedger, SqliteLedger, _SqlLedger

DEFAULT_PG = os.environ.get("HUB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


class _Before(_SqlLedger):
    """The ledger as it was: the delivered mark flushed like the allocation, and the allocation an
    INSERT followed by a SELECT of the id that counts (today: INSERT ... RETURNING)."""

    def _run_lazy(self, sql: str, params: tuple[Any, ...]) -> None:
        self._run(sql, params)

    def allocate(self, message_id: str, adapter: str, destination: str, transport_message_id: str) -> str:
        now = time.time()
        self._run(self._sql(
            "INSERT INTO hub_deliveries (message_id, adapter, destination, transport_message_id, state, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (message_id) DO UPDATE SET adapter = excluded.adapter, "
            "transport_message_id = excluded.transport_message_id, updated_at = excluded.updated_at "
            "WHERE hub_deliveries.adapter <> excluded.adapter AND hub_deliveries.state = ?"),
            (message_id, adapter, destination, transport_message_id, ALLOCATED, now, now, ALLOCATED))
        entry = self.lookup(message_id)
        return transport_message_id if entry is None else entry.transport_message_id


class SqliteBefore(_Before, SqliteLedger):
    pass


class PostgresBefore(_Before, PostgresLedger):
    pass


def _variant(ledger: DeliveryLedger, apps: int, cpu: list[float] | None = None) -> Callable[[], float]:
    """Seconds per application of allocate + mark_delivered, over ``apps`` new applications (this
    process's CPU seconds per application appended to ``cpu``: the worker's share of the cost)."""
    def run() -> float:
        ids = [str(uuid.uuid4()) for _ in range(apps)]
        start, cpu_start = time.perf_counter(), time.process_time()
        for mid in ids:
            ledger.allocate(mid, "bench", "azr:000100", f"urn:de:xta:messageid:{mid}")
            ledger.mark_delivered(mid)
        if cpu is not None:
            cpu.append((time.process_time() - cpu_start) / apps)
        return (time.perf_counter() - start) / apps
    return run


def _count_fsyncs(variant: str, apps: int) -> float | None:
    """fsync + fdatasync calls per application of a SQLite variant, counted by strace in a child."""
    if shutil.which("strace") is None:
        return None
    with tempfile.TemporaryDirectory(prefix="bench-ledger-strace-") as folder:
        trace = Path(folder) / "trace"
        subprocess.run(["strace", "-f", "-qq", "-e", "trace=fsync,fdatasync,write", "-o", str(trace), sys.executable,
                        __file__, "--child", variant, "--apps", str(apps), "--folder", folder],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        counting, syncs = False, 0
        for line in trace.read_text().splitlines():
            if "==START==" in line:
                counting = True
            elif "==END==" in line:
                counting = False
            elif counting and ("fsync(" in line or "fdatasync(" in line):
                syncs += 1
        return syncs / apps


def _child(variant: str, apps: int, folder: str) -> None:
    """The traced part: open (not counted), then ``apps`` applications between two markers on stderr."""
    ledger = (SqliteBefore if variant == "before" else SqliteLedger)(Path(folder) / "ledger.db")
    os.write(2, b"==START==\n")
    _variant(ledger, apps)()
    os.write(2, b"==END==\n")
    ledger.close()


def _machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU")
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=200, help="applications per round and variant")
    parser.add_argument("--rounds", type=int, default=7, help=f"timed rounds (>= {MIN_RUNS})")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="PostgreSQL URL ('' to skip)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.apps, args.folder)
        return
    started_under = load_note()
    folder = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    ledgers: dict[str, DeliveryLedger] = {
        "SQLite before": SqliteBefore(folder / "before.db"),
        "SQLite after": SqliteLedger(folder / "after.db"),
    }
    if args.postgres:
        ledgers["PostgreSQL before"] = PostgresBefore(args.postgres)
        ledgers["PostgreSQL after"] = PostgresLedger(args.postgres)
    try:
        cpu: dict[str, list[float]] = {name: [] for name in ledgers}
        spreads = interleaved({name: _variant(ledger, args.apps, cpu[name]) for name, ledger in ledgers.items()},
                              args.rounds)
    finally:
        for ledger in ledgers.values():
            ledger.close()
        shutil.rmtree(folder, ignore_errors=True)
    fsyncs = {"SQLite before": _count_fsyncs("before", args.apps), "SQLite after": _count_fsyncs("after", args.apps)}
    print(f"machine: {_machine()}\nat start: {started_under}\nat end:   {load_note()}")
    print(f"\nms per application (allocate + mark_delivered), median [min–max] over {args.rounds} interleaved rounds "
          f"of {args.apps} applications; SQLite in {tempfile.gettempdir()}\n")
    print("| ledger | variant | wall ms per application | client CPU ms per application | fsyncs per application "
          "| wall after / before |")
    print("| --- | --- | --- | --- | --- | --- |")
    for backend in ("SQLite", "PostgreSQL"):
        before, after = spreads.get(f"{backend} before"), spreads.get(f"{backend} after")
        if before is None or after is None:
            continue
        for name, spread in ((f"{backend} before", before), (f"{backend} after", after)):
            count = fsyncs.get(name)
            ratio = f"{after.median / before.median:.2f}" if spread is after else ""
            cpu_ms = statistics.median(cpu[name][1:]) * 1000  # the first round was interleaved's warm-up
            print(f"| {backend} | {name.split()[-1]} | {_ms(spread)} | {cpu_ms:.3f} | "
                  f"{'n/a (server side)' if count is None and backend == 'PostgreSQL' else count} | {ratio} |")


def _ms(spread: Spread) -> str:
    return f"{spread.median * 1000:.3f} [{spread.minimum * 1000:.3f}–{spread.maximum * 1000:.3f}]"


if __name__ == "__main__":
    main()
