"""Worker CPU per application, by stage, and where it goes (a script, not a test).

    .venv/bin/python bench/profile_delivery.py [--apps 200] [--rounds 5] [--compare OTHER_TREE] [--profile FILE] [--wall]

Drives ``DeliveryPipeline`` (envelope decode + process: ledger, parse, validate, lookupService,
createMessageId, sign, encrypt, sendMessage, ledger) over ``--apps`` new 50 KB applications per round
against the XTA simulator running in its own process (so its CPU is not the worker's), SQLite ledger
in the temporary folder. Per round it reports the worker thread's CPU per application, in total and
per stage (the ``timed`` stages of hub/stages.py, measured in thread CPU time instead of wall time;
"other" is what no stage covers: directory, envelope bookkeeping, metadata...). Medians over rounds.

``--wall``: wall-clock time instead of CPU time, in total and per stage: one application after the
other, so the total is the worker's share of the latency at a low rate (stages that overlap, like
the ledger record written while the content is sealed, then add up to more than the total).

``--compare TREE`` runs the same rounds against another checkout of the project (e.g. a copy taken
before a change), interleaved round by round (A B, B A, ...), and prints both side by side. ``--profile FILE`` also
writes cProfile statistics of one extra round (top functions by own time) to FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
AUTHOR = {"identifier": "alp:000001", "name": "Bench-Portal", "category": "Ausländerportal"}
READER = "azr:000100"
ATTACHMENT = 48_000  # + the ~2 KB application XML: a 50 KB application
STAGE_ORDER = ("decode", "ledger", "parse", "validate", "lookup", "sign", "encrypt", "send", "other")


def _round(args: argparse.Namespace) -> None:
    """One round in this (fresh) process, run from the tree given by --root: one JSON line."""
    import cProfile
    import pstats
    import time
    import types

    sys.path.insert(0, args.root)
    from hub import stages
    from hub.config import parse_config
    from hub.envelope import new_envelope
    from hub.runtime import build_pipeline
    from hub.samples import make_attachment, make_ozg_application
    from transport.content import ContentPart
    from transport.xta.metadata import Party

    clock = time.perf_counter if args.wall else time.thread_time
    if not args.wall:  # stages time themselves with perf_counter: thread CPU time instead, for this script only
        stages.time = types.SimpleNamespace(perf_counter=time.thread_time)  # type: ignore[attr-defined,assignment]
    pki = json.loads(args.pki)
    raw = {
        "ledger": {"url": f"sqlite:///{tempfile.mkdtemp(prefix='profile-ledger-')}/ledger.db"},
        "message_types": [{"code": "OZG.Antrag.130101", "schema": "builtin:xauslaender/ozg-antrag-130101.xsd",
                           "list_uri": "urn:xoev-de:xauslaender:codeliste:nachrichtentyp", "list_version": "26.11",
                           "payload_schema": "http://www.osci.de/xauslaender2611"}],
        "adapters": {"alpha": {"endpoint": args.url, "timeout": 60, "signing_key": pki["portal"][0],
                               "signing_cert": pki["portal"][1], "author": AUTHOR}},
        "authorities": [{"id": READER, "name": "ABH", "adapter": "alpha", "certificate": pki["azr-000100"][1]}],
    }
    pipeline = build_pipeline(parse_config(raw, base=Path("/"), environ={}), "alpha")
    data, name, ctype = make_attachment(1, ATTACHMENT)

    def message(seed: int) -> tuple[Any, bytes]:
        xml, message_id = make_ozg_application(reader=Party(READER, "ABH"), author=Party(**AUTHOR), seed=seed,
                                               attachment=data)
        envelope = new_envelope(destination=READER, message_type="OZG.Antrag.130101", message=xml, portal="bench",
                                message_id=message_id, attachments=(ContentPart(data, ctype, name),))
        return envelope.properties(), envelope.body()

    pipeline.adapter.check()
    seed = args.seed
    for _ in range(10):  # warm: connections, caches, lookupService
        seed += 1
        pipeline.process(pipeline.decode(*message(seed)))
    messages = [message(seed + 1 + i) for i in range(args.apps)]
    spent: dict[str, float] = dict.fromkeys(STAGE_ORDER, 0.0)

    def observe(stage: str, seconds: float) -> None:
        spent[stage] += seconds

    profiler = cProfile.Profile(time.thread_time) if args.profile else None  # CPU, not waiting
    started = clock()
    with stages.observing(observe):
        if profiler is not None:
            profiler.enable()
        for props, body in messages:
            pipeline.process(pipeline.decode(props, body))
        if profiler is not None:
            profiler.disable()
    total = clock() - started
    spent["other"] = total - sum(spent.values())
    if profiler is not None:
        with open(args.profile, "w") as out:
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(40)
            stats.sort_stats("cumulative").print_stats(60)
    pipeline.close()
    print(json.dumps({"total": total / args.apps, **{k: v / args.apps for k, v in spent.items()}}))


def _start_simulator(pki: dict[str, list[str]]) -> tuple[subprocess.Popen[str], str]:
    port = 19000 + os.getpid() % 1000
    sim = subprocess.Popen(
        [sys.executable, "-m", "transport.xta.simulator.cli", "--port", str(port), "--reader-key",
         f"{READER}={pki['azr-000100'][0]}", "--trusted-signer", pki["ca"][1]],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert sim.stdout is not None
    sim.stdout.readline()  # "listening on ..."
    return sim, f"http://127.0.0.1:{port}/xta"


def _run(tree: Path, url: str, pki: str, apps: int, seed: int, profile: str | None,
         wall: bool = False) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", "--root", str(tree), "--url", url, "--pki", pki,
                          "--apps", str(apps), "--seed", str(seed), *(["--profile", profile] if profile else []),
                          *(["--wall"] if wall else [])],
                         check=False, cwd=tree, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"round failed in {tree}:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compare", help="another checkout to run interleaved with this one")
    parser.add_argument("--profile", help="write cProfile statistics of one extra round here")
    parser.add_argument("--wall", action="store_true", help="wall-clock time (latency) instead of CPU time")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--pki", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _round(args)
        return
    sys.path.insert(0, str(ROOT))
    from transport.security.demopki import make_test_pki

    pki_dir = Path(tempfile.mkdtemp(prefix="profile-pki-"))
    pki = {k: [str(p) for p in v] for k, v in make_test_pki(pki_dir, ["portal", "azr-000100"]).items()}
    sim, url = _start_simulator(pki)
    trees = {"this tree": ROOT, **({"compare": Path(args.compare).resolve()} if args.compare else {})}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    try:
        seed = 1
        for index in range(args.rounds):
            order = list(trees.items())
            for name, tree in order if index % 2 == 0 else reversed(order):  # A B, B A, ...: no order bias
                seed += args.apps + 20  # new applications each round: the ledger would call them duplicates
                results[name].append(_run(tree, url, json.dumps(pki), args.apps, seed, None, args.wall))
        if args.profile:
            _run(ROOT, url, json.dumps(pki), args.apps, seed + args.apps + 20, args.profile)
    finally:
        sim.terminate()
        sim.wait(10)
    print(f"worker thread {'wall-clock' if args.wall else 'CPU'} ms per 50 KB application, median over {args.rounds} rounds of {args.apps} "
          f"(rounds interleaved, order alternating); {os.cpu_count()} CPUs, Python {sys.version.split()[0]}\n")
    names = list(trees)
    print("| stage | " + " | ".join(f"{n} ({trees[n]})" for n in names) + (" | ratio |" if len(names) == 2 else " |"))
    print("| --- " * (len(names) + 1 + (len(names) == 2)) + "|")
    for stage in ("total", *STAGE_ORDER):
        medians = [statistics.median(r[stage] for r in results[n]) * 1000 for n in names]
        ratio = f" | {medians[0] / medians[1]:.2f}" if len(names) == 2 and medians[1] > 0 else (" | " if len(names) == 2 else "")
        print(f"| {stage} | " + " | ".join(f"{m:.3f}" for m in medians) + ratio + " |")


if __name__ == "__main__":
    main()
