"""Tracking store: ingest rate and `hub trace` latency with a million events (a script, not a test).

    .venv/bin/python bench/bench_tracking.py [--events 1000000] [--backend sqlite postgresql]
                                             [--lookups 1000] [--rounds 5] [--keep]

For each back end (SQLite in a temporary file; PostgreSQL in a fresh database ``hub_bench_<hex>``
on TRACKING_BENCH_PG_URL, default the local ``test`` database's server, dropped at the end):

1. Bulk load: ``--events`` status events through ``TrackingStore.ingest`` itself, 5,000 events per
   call (the same SQL as the tracker, only bigger transactions; docs/tracking-store.md). The events are
   a realistic mix, ~6 per application: accepted, delivering, delivered, transport_report open and
   green; 10 % with a retry (retry_scheduled and a second attempt), 2 % dead-lettered, 5 % with a
   reply_received that names no message id (linked by portal and antragsidentifikation). Three
   portals, 40 destinations. Applications start 20 per second and their events are ingested in
   time order, so a batch holds events of many applications, as the tracker sees them.
2. Ingest rate with the store full: ``--rounds`` runs of 12,000 new events in batches of 200 (the
   tracker's default [tracker] batch_size), each a median [min–max] in events/s.
3. ``trace`` latency: ``--lookups`` random lookups each by message id, correlation id and transport
   message id (operator scope) of applications spread over the whole store: p50 / p95 / max.
4. The query plans of every statement one ``trace`` runs (and of the first page of ``applications``):
   the script FAILS (exit 1) when a plan shows a full table scan (SQLite ``SCAN``, PostgreSQL ``Seq
   Scan``): a trace must be an index lookup, whatever the size of the store.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import MIN_RUNS, Spread, load_note

from hub.status import StatusEvent, event_id_for
from hub.tracking.migrations import migrate
from hub.tracking.model import ApplicationFilter, Scope
from hub.tracking.sql import Database, Tx, open_database
from hub.tracking.store import SqlTrackingStore

PG_URL = os.environ.get("TRACKING_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
BULK_BATCH = 5000
TRACKER_BATCH = 200
RATE_EVENTS = 12_000
PORTALS = ("portal-bw", "portal-by", "portal-nw")
T0 = 1_700_000_000.0


# ---------------------------------------------------------------------- the events


def application(n: int, rnd: random.Random) -> list[StatusEvent]:
    """One application's life, ~6 events; ids derived from ``n`` so a lookup can name them."""
    mid, corr, tid, ref = ids(n)
    portal, dest = PORTALS[n % len(PORTALS)], f"azr:{n % 40:06d}"
    t = T0 + n / 20
    common: dict[str, Any] = {"message_id": mid, "portal": portal, "destination": dest, "correlation_id": corr}
    out = [StatusEvent(event="accepted", at=t, attempt=1, **common),
           StatusEvent(event="delivering", at=t + 0.05, attempt=1, adapter="advis", transport_message_id=tid,
                       application_ref=ref, **common)]
    t += 0.3
    roll = rnd.random()
    if roll < 0.02:
        out.append(StatusEvent(event="dead_lettered", at=t, attempt=1, adapter="advis", transport_message_id=tid,
                               reason="xta_9012", detail={"reason": "xta_9012", "attempts": 1}, **common))
        return out
    if roll < 0.12:
        out.append(StatusEvent(event="retry_scheduled", at=t, attempt=1, adapter="advis", transport_message_id=tid,
                               reason="endpoint_unavailable", detail={"reason": "endpoint_unavailable"}, **common))
        t += 30
        out += [StatusEvent(event="accepted", at=t, attempt=2, **common),
                StatusEvent(event="delivering", at=t + 0.05, attempt=2, adapter="advis", transport_message_id=tid,
                            application_ref=ref, **common)]
        t += 0.3
    out += [StatusEvent(event="delivered", at=t, attempt=out[-1].attempt, adapter="advis", transport_message_id=tid,
                        detail={"xta_message_id": tid}, **common),
            StatusEvent(event="transport_report", at=t + 5, adapter="advis", transport_message_id=tid,
                        detail={"traffic_light": "open"}, **common),
            StatusEvent(event="transport_report", at=t + 60, adapter="advis", transport_message_id=tid,
                        detail={"traffic_light": "green"}, **common)]
    if rnd.random() < 0.05:
        reply_id = f"urn:de:xta:messageid:reply-{n}"
        out.append(StatusEvent(message_id="", event="reply_received", portal=portal, destination=dest, at=t + 3600,
                               application_ref=ref, transport_message_id=reply_id,
                               event_id=event_id_for("reply_received", reply_id),
                               detail={"reply_id": reply_id, "message_type": "OZG.Statusmeldung.130104",
                                       "reply_uuid": None}))
    return out


def ids(n: int) -> tuple[str, str, str, str]:
    """message id, correlation id, transport message id, antragsidentifikation of application n."""
    mid = str(uuid.UUID(int=(0x5EED << 100) + n))
    return mid, f"corr-{n:09d}", f"urn:de:xta:messageid:bench-{n:09d}", f"ANTRAG-{n:09d}"


def stream(first: int, events: int, seed: int, done: list[int]) -> Iterator[list[StatusEvent]]:
    """``events`` events of applications ``first``, ``first + 1``, ... in chunks in time order
    (2,000 applications per chunk: ~100 s of traffic, longer than most lives). ``done`` gets the
    number after the last application whose events were all given."""
    rnd, n, left = random.Random(seed), first, events
    while left > 0:
        chunk = [e for k in range(n, n + 2000) for e in application(k, rnd)]
        chunk.sort(key=lambda e: e.at)
        yield chunk[:left]
        if len(chunk) <= left:
            done.append(n + 2000)
        n += 2000
        left -= len(chunk)


def batches(chunks: Iterator[list[StatusEvent]], size: int) -> Iterator[list[StatusEvent]]:
    for chunk in chunks:
        for start in range(0, len(chunk), size):
            yield chunk[start:start + size]


# ---------------------------------------------------------------------- plans


class _Recording:
    """A ``Database`` that remembers the statements the store runs (to explain them afterwards)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.seen: list[tuple[str, tuple[Any, ...]]] = []
        self.dialect = ""

    def run(self, work: Callable[[Tx], Any], *, write: bool) -> Any:
        recorder = self

        class Tx_:
            def __init__(self, tx: Tx) -> None:
                self.tx, self.dialect = tx, tx.dialect
                recorder.dialect = tx.dialect

            def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
                return self.tx.execute(sql, params)

            def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
                return self.tx.executemany(sql, rows)

            def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
                recorder.seen.append((sql, tuple(params)))
                return self.tx.query(sql, params)

        return self.db.run(lambda tx: work(Tx_(tx)), write=write)

    def close(self) -> None:
        self.db.close()


def explain(db: Database, statements: list[tuple[str, tuple[Any, ...]]], *, strict: bool) -> list[str]:
    """Print each statement's plan; returns the statements whose plan scans a whole table (a
    PostgreSQL ``Seq Scan``, a SQLite ``SCAN``). ``strict=False`` (a page, newest first) accepts a
    SQLite ``SCAN ... USING INDEX``: walking an index in order up to the LIMIT is the plan wanted."""
    bad = []
    for sql, params in statements:
        def plan(tx: Tx, sql: str = sql, params: tuple[Any, ...] = params) -> list[str]:
            if tx.dialect == "sqlite":
                return [row[3] for row in tx.query(f"EXPLAIN QUERY PLAN {sql}", params)]
            return [row[0] for row in tx.query(f"EXPLAIN {sql}", params)]
        lines = db.run(plan, write=False)
        scans = [line for line in lines if "Seq Scan" in line or line.strip().startswith("SCAN ")
                 and (strict or " INDEX " not in line)]
        print(f"  {sql[:150]}{' ...' if len(sql) > 150 else ''}")
        for line in lines:
            print(f"      {line}")
        if scans:
            bad.append(sql)
    return bad


# ---------------------------------------------------------------------- one back end


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def bench(name: str, url: str, args: argparse.Namespace) -> bool:
    print(f"\n== {name} ==")
    recording = _Recording(open_database(url))
    migrate(recording)
    store = SqlTrackingStore(recording)
    start, loaded, done, report = time.perf_counter(), 0, [0], 100_000
    for batch in batches(stream(0, args.events, 1, done), BULK_BATCH):
        loaded += store.ingest(batch)
        if loaded >= report:
            report += 100_000
            print(f"  loaded {loaded:>9,} events ({time.perf_counter() - start:6.1f} s)", flush=True)
    took = time.perf_counter() - start
    apps = done[-1]
    if recording.dialect == "postgresql":  # what autovacuum would do soon after such a load
        recording.db.run(lambda tx: tx.execute("ANALYZE"), write=True)
    print(f"bulk load: {loaded:,} events of ~{apps:,} applications in {took:.1f} s = {loaded / took:,.0f} events/s "
          f"(ingest, {BULK_BATCH} events per call)")

    samples, first = [], apps + 10_000
    for r in range(args.rounds + 1):  # the first round warms up and is not counted
        chunks = list(batches(stream(first, RATE_EVENTS, 100 + r, []), TRACKER_BATCH))
        first += RATE_EVENTS  # more than enough application numbers per round
        t = time.perf_counter()
        new = sum(store.ingest(b) for b in chunks)
        if r:
            samples.append(time.perf_counter() - t)
        assert new == sum(len(b) for b in chunks), "events lost or counted twice"
    spread = Spread(tuple(samples))
    print(f"ingest with the store full: {RATE_EVENTS:,} events in batches of {TRACKER_BATCH}: "
          f"{RATE_EVENTS / spread.median:,.0f} events/s median "
          f"[{RATE_EVENTS / spread.maximum:,.0f}–{RATE_EVENTS / spread.minimum:,.0f}] over {args.rounds} runs")

    rnd = random.Random(7)
    picks = [rnd.randrange(apps) for _ in range(args.lookups)]
    print(f"trace latency, {args.lookups} random lookups per id kind, operator scope (ms):")
    print(f"  {'by':<22} {'p50':>7} {'p95':>7} {'max':>7} {'found':>7}")
    everything: list[float] = []
    for kind, index in (("message id", 0), ("correlation id", 1), ("transport message id", 2)):
        times, found = [], 0
        for n in picks:
            ident = ids(n)[index]
            t = time.perf_counter()
            found += len(store.trace(ident, Scope.operator())) == 1
            times.append((time.perf_counter() - t) * 1000)
        everything += times
        print(f"  {kind:<22} {percentile(times, 50):7.3f} {percentile(times, 95):7.3f} {max(times):7.3f} "
              f"{found:>7}")
    print(f"  {'all':<22} {percentile(everything, 50):7.3f} {percentile(everything, 95):7.3f} "
          f"{max(everything):7.3f}")

    print("query plans: one trace by each id kind, one by a reply's id in a portal's scope; two first pages:")
    reply = next((k for k in range(apps) if store.trace(f"urn:de:xta:messageid:reply-{k}", Scope.operator())), None)
    if reply is None:
        print("no reply in the store", file=sys.stderr)
        return False
    recording.seen.clear()
    for ident in ids(picks[0])[:3]:
        store.trace(ident, Scope.operator())
    store.trace(f"urn:de:xta:messageid:reply-{reply}", Scope(PORTALS[reply % len(PORTALS)]))
    first_seen: dict[str, tuple[str, tuple[Any, ...]]] = {}
    for sql, params in recording.seen:
        first_seen.setdefault(sql, (sql, params))
    traces = list(first_seen.values())
    recording.seen.clear()
    store.applications(Scope(PORTALS[0]), ApplicationFilter(destination="azr:000003"), limit=50)
    store.applications(Scope.operator(), limit=50)
    pages = list(recording.seen)
    bad = explain(recording.db, traces, strict=True) + explain(recording.db, pages, strict=False)
    store.close()
    if bad:
        print(f"FULL SCAN in {len(bad)} statement(s): {bad}", file=sys.stderr)
    return not bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--backend", nargs="+", choices=("sqlite", "postgresql"), default=["sqlite", "postgresql"])
    parser.add_argument("--lookups", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5, help=f"timed ingest runs (>= {MIN_RUNS})")
    parser.add_argument("--keep", action="store_true", help="keep the databases (prints where)")
    args = parser.parse_args()
    if args.rounds < MIN_RUNS:
        parser.error(f"--rounds must be at least {MIN_RUNS}")
    print(f"tracking store bench: {args.events:,} events; at start: {load_note()}")
    ok = True
    for backend in args.backend:
        if backend == "sqlite":
            folder = Path(tempfile.mkdtemp(prefix="hub-bench-tracking-"))
            try:
                ok &= bench("SQLite (WAL, synchronous=FULL)", f"sqlite:///{folder / 'tracking.db'}", args)
                size = sum(p.stat().st_size for p in folder.iterdir())
                print(f"SQLite files: {size / 2**20:,.0f} MiB")
            finally:
                if args.keep:
                    print(f"kept {folder}")
                else:
                    shutil.rmtree(folder)
        else:
            import psycopg

            name = f"hub_bench_{uuid.uuid4().hex[:10]}"
            parts = urlsplit(PG_URL)
            url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
            with psycopg.connect(PG_URL, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
                try:
                    ok &= bench("PostgreSQL", url, args)
                    row = admin.execute("SELECT pg_database_size(%s)", (name,)).fetchone()
                    print(f"PostgreSQL database: {(row[0] if row else 0) / 2**20:,.0f} MiB")
                finally:
                    if args.keep:
                        print(f"kept database {name}")
                    else:
                        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"\nat end: {load_note()}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
