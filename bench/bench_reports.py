"""Benchmark of transport-report scheduling, per poll, outside the getTransportReport call itself
(a script, not a test).

    .venv/bin/python bench/bench_reports.py [--polls 300] [--rounds 7] [--amqp URL]

What it costs the worker to keep one pending report going from one poll to the next, compared
interleaved round by round, medians of the worker process's CPU ms (``time.process_time``, the
publisher's I/O thread included) and wall ms per poll:

* ``broker`` (up to issue 11): each poll request is published with a confirm wait to a quorum queue
  (``hub.report.<adapter>.wait`` did this, plus a TTL dead-letter hop inside the broker), then
  consumed and acked (``hub.report.<adapter>``): 1 publish + 1 confirm + 1 delivery + 1 ack on the
  broker per poll.
* ``ledger`` (today, hub/report_scheduler.py): the scheduler claims due rows in batches of 64 (one
  UPDATE ... RETURNING) and reschedules each (one UPDATE, not flushed): no broker message.

And at delivery, what scheduling the first poll costs on top of marking the application
delivered: ``mark_delivered`` alone vs ``mark_delivered`` with its report (the same statement).
SQLite ledger in a temporary folder; the broker is the local RabbitMQ (a temporary queue).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pika

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import interleaved, load_note

from hub.config import BrokerConfig
from hub.ledger import ReportSchedule, SqliteLedger
from hub.publisher import ResilientPublisher
from hub.reports import PollRequest


def _broker_variant(url: str, polls: int, cpu: list[float]) -> Callable[[], float]:
    publisher = ResilientPublisher(BrokerConfig(url=url), "bench-reports")
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    queue = f"bench.reports.{uuid.uuid4().hex[:8]}"
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.basic_qos(prefetch_count=8)

    def run() -> float:
        requests = [PollRequest(str(uuid.uuid4()), f"urn:xta:{i}", "portal", "azr:000100") for i in range(polls)]
        got = 0

        def on(ch: object, method: pika.spec.Basic.Deliver, _p: object, body: bytes) -> None:
            nonlocal got
            PollRequest.from_body(body)
            channel.basic_ack(method.delivery_tag)
            got += 1

        start, cpu_start = time.perf_counter(), time.process_time()
        for request in requests:  # the old handler: publish the next request, wait for its confirm
            publisher.publish_and_wait("", queue, request.body(), pika.BasicProperties(
                message_id=request.message_id, content_type="application/json", delivery_mode=2), deadline=30)
        tag = channel.basic_consume(queue, on)
        while got < polls:
            connection.process_data_events(time_limit=0.05)
        channel.basic_cancel(tag)
        cpu.append((time.process_time() - cpu_start) / polls)
        return (time.perf_counter() - start) / polls

    run.close = lambda: (channel.queue_delete(queue), connection.close(), publisher.close())  # type: ignore[attr-defined]
    return run


def _ledger_variant(ledger: SqliteLedger, polls: int, cpu: list[float]) -> Callable[[], float]:
    adapter = f"bench-{uuid.uuid4().hex[:6]}"
    for i in range(polls):
        mid = f"{adapter}-{i}"
        ledger.allocate(mid, adapter, "azr:000100", f"urn:xta:{i}")
        ledger.mark_delivered(mid, ReportSchedule("portal", None, 0.0))

    def run() -> float:
        start, cpu_start = time.perf_counter(), time.process_time()
        done = 0
        while done < polls:
            claimed = ledger.claim_reports(adapter, lease=60, limit=64)
            for report in claimed:
                ledger.reschedule_report(report.message_id, delay=-1.0, polls=report.polls + 1, open_sent=True)
            done += len(claimed)
        cpu.append((time.process_time() - cpu_start) / polls)
        return (time.perf_counter() - start) / polls

    return run


def _mark_variant(ledger: SqliteLedger, polls: int, with_report: bool, cpu: list[float]) -> Callable[[], float]:
    def run() -> float:
        ids = [str(uuid.uuid4()) for _ in range(polls)]
        for mid in ids:
            ledger.allocate(mid, "bench", "azr:000100", f"urn:xta:{mid}")
        schedule = ReportSchedule("portal", "c", 10.0) if with_report else None
        start, cpu_start = time.perf_counter(), time.process_time()
        for mid in ids:
            ledger.mark_delivered(mid, schedule)
        cpu.append((time.process_time() - cpu_start) / polls)
        return (time.perf_counter() - start) / polls

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--polls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-reports-"))
    ledger = SqliteLedger(folder / "ledger.db")
    cpu: dict[str, list[float]] = {name: [] for name in ("broker", "ledger", "mark", "mark+report")}
    broker = _broker_variant(args.amqp, args.polls, cpu["broker"])
    try:
        wall = interleaved({"broker": broker, "ledger": _ledger_variant(ledger, args.polls, cpu["ledger"]),
                            "mark": _mark_variant(ledger, args.polls, False, cpu["mark"]),
                            "mark+report": _mark_variant(ledger, args.polls, True, cpu["mark+report"])},
                           args.rounds)
    finally:
        broker.close()  # type: ignore[attr-defined]
        ledger.close()
    # interleaved() discards the warm-up round's seconds; drop its CPU figure too
    cpu_ms = {name: statistics.median(values[1:]) * 1000 for name, values in cpu.items()}
    print(f"{args.polls} polls x {args.rounds} rounds; {load_note()}; Python {platform.python_version()}\n")
    print("| per poll | CPU ms (worker) | wall ms | broker messages |")
    print("| --- | --- | --- | --- |")
    for name, messages in (("broker", "publish + confirm + deliver + ack"), ("ledger", "0")):
        print(f"| {name} | {cpu_ms[name]:.3f} | {wall[name].median * 1000:.3f} | {messages} |")
    print(f"\nledger/broker CPU: {cpu_ms['ledger'] / cpu_ms['broker']:.2f}; "
          f"wall: {wall['ledger'].median / wall['broker'].median:.2f}")
    print(f"mark_delivered: {cpu_ms['mark']:.3f} ms CPU; with its report scheduled: {cpu_ms['mark+report']:.3f} ms")
    print(json.dumps({"cpu_ms": cpu_ms, "wall_ms": {k: v.median * 1000 for k, v in wall.items()},
                      "wall_range_ms": {k: [v.minimum * 1000, v.maximum * 1000] for k, v in wall.items()}}))


if __name__ == "__main__":
    main()
