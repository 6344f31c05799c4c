"""Publisher throughput: one confirm per message vs a window of unconfirmed messages (pitfall 3).

Run: .venv/bin/python bench/bench_publisher.py [--count 3000] [--size 2048] [--rounds 7]
Needs RabbitMQ (AMQP_URL, default local guest). Publishes persistent, mandatory messages to a
temporary quorum queue (purged after every run, deleted at the end). The variants run interleaved
(A B C A B C ..., one discarded warm-up round first) so load that comes and goes hits them alike;
each figure is the median over ``--rounds`` (>= 5) runs with its [min–max], and the speed-ups are
ratios of those medians, all from the same run. Timed: from the first publish to the last confirm
(connecting and purging are outside).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pika

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import MIN_RUNS, interleaved, load_note

from hub.config import BrokerConfig
from hub.publisher import ConfirmingPublisher


def per_message_confirm(url: str, queue: str, bodies: list[bytes]) -> float:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=2)
    start = time.perf_counter()
    for body in bodies:
        ch.basic_publish("", queue, body, props, mandatory=True)
    took = time.perf_counter() - start
    conn.close()
    return took


def windowed(url: str, queue: str, bodies: list[bytes], window: int) -> float:
    with ConfirmingPublisher(BrokerConfig(url=url), "bench", window=window) as publisher:
        props = pika.BasicProperties(delivery_mode=2, message_id="bench")
        start = time.perf_counter()
        futures = [publisher.publish("", queue, body, props, mandatory=True) for body in bodies]
        for f in futures:
            f.result(timeout=120)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=7, help=f"timed runs per variant (>= {MIN_RUNS})")
    args = parser.parse_args()
    if args.rounds < MIN_RUNS:
        parser.error(f"--rounds must be at least {MIN_RUNS}")
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    queue = f"bench.publish.{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    bodies = [os.urandom(args.size) for _ in range(args.count)]

    def then_purge(publish: Callable[[], float]) -> Callable[[], float]:
        def run() -> float:
            took = publish()
            ch.queue_purge(queue)  # every run starts on an empty queue
            return took
        return run

    variants = {"one confirm per message (BlockingChannel)": then_purge(partial(per_message_confirm, url, queue, bodies))}
    for window in (16, 256):
        variants[f"ConfirmingPublisher, window {window}"] = then_purge(partial(windowed, url, queue, bodies, window))
    started_under = load_note()
    try:
        results = interleaved(variants, args.rounds)
    finally:
        ch.queue_delete(queue)
        conn.close()
    base = results[next(iter(variants))].median
    print(f"{args.count} persistent messages of {args.size} bytes to a quorum queue; "
          f"median [min–max] over {args.rounds} interleaved runs per variant")
    print(f"at start: {started_under}\nat end:   {load_note()}")
    print(f"{'way':<45} {'seconds':>20} {'msg/s (median)':>15} {'speed-up (medians)':>19}")
    for name, spread in results.items():
        seconds = f"{spread.median:.2f} [{spread.minimum:.2f}–{spread.maximum:.2f}]"
        print(f"{name:<45} {seconds:>20} {args.count / spread.median:15.0f} {base / spread.median:18.1f}x")


if __name__ == "__main__":
    main()
