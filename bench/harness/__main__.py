"""`python -m bench.harness [--quick | --soak]`: run, print the Markdown tables, write JSON + PNG.

Results go to bench/results/<timestamp>.json and .png (git-ignored); --out-dir to change that.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import time
from pathlib import Path
from typing import Any

from bench.harness.plot import plot
from bench.harness.report import aggregate, markdown_table, stage_table
from bench.harness.runner import plan_for, run

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _clean(value: Any) -> Any:
    """JSON without NaN (null instead): strict parsers refuse NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _terminate(_signum: int, _frame: object) -> None:
    raise SystemExit("terminated")


def main() -> None:
    parser = argparse.ArgumentParser(description="benchmark harness of issue 11 (docs/benchmarks.md)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smoke run: 5 KB, 3 variants, 1 round")
    mode.add_argument("--soak", action="store_true", help="50,000 x 20 KB through one worker (BENCH_SOAK_COUNT)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the workers, endpoints and vhosts of the run are cleaned up
    signal.signal(signal.SIGTERM, _terminate)
    plan = plan_for("quick" if args.quick else "soak" if args.soak else "full")
    result = run(plan, progress=lambda line: print(line, flush=True))
    sizes = [s.label for s in plan.sizes]
    variants = [v.name for v in plan.variants]
    rows = aggregate(result["runs"])
    result["rows"] = rows
    m = result["machine"]
    print(f"\nmachine: {m['nproc']} CPUs, {m['cpu']}, {m['ram_mb']} MB RAM, Python {m['python']}; load "
          f"{m['load_start'][0]:.2f} at start, {m['load_end'][0]:.2f} at end; {result['seconds']:.0f} s"
          + (f"; medians over {plan.rounds} round(s), variants interleaved" if rows else "") + "\n")
    if rows:
        print(markdown_table(rows, sizes, variants))
        print("\nWall ms per application in each worker stage (hub_stage_duration_seconds):\n")
        print(stage_table(rows, sizes, variants))
    if "soak" in result:
        print("\nsoak:", json.dumps(_clean(result["soak"])))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out_dir / f"{stamp}{'-quick' if args.quick else '-soak' if args.soak else ''}.json"
    out.write_text(json.dumps(_clean(result), indent=1))
    print(f"\nJSON: {out}")
    if rows and plot(rows, sizes, variants, out.with_suffix(".png")):
        print(f"plot: {out.with_suffix('.png')}")
    errors = [r for r in result["runs"] if "error" in r]
    for failed in errors:
        print(f"FAILED: round {failed['round']} {failed['size']} {failed['variant']}: {failed['error']}")
    if errors:
        raise SystemExit(f"{len(errors)} run(s) failed (their errors are in the JSON)")
    if "soak" in result and result["soak"]["lost"]:
        raise SystemExit(f"soak: {result['soak']['lost']} applications not delivered")


if __name__ == "__main__":
    main()
