"""Publisher throughput: one confirm per message vs a window of unconfirmed messages (pitfall 3).

Run: .venv/bin/python bench/bench_publisher.py [--count 3000] [--size 2048]
Needs RabbitMQ (AMQP_URL, default local guest). Publishes persistent messages to a temporary
quorum queue (deleted afterwards) and prints messages/s for each way, measured in one run.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid

import pika

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
        futures = [publisher.publish("", queue, body, props) for body in bodies]
        for f in futures:
            f.result(timeout=120)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    queue = f"bench.publish.{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    bodies = [os.urandom(args.size) for _ in range(args.count)]
    try:
        results = [("one confirm per message (BlockingChannel)", per_message_confirm(url, queue, bodies))]
        ch.queue_purge(queue)
        for window in (16, 256):
            results.append((f"ConfirmingPublisher, window {window}", windowed(url, queue, bodies, window)))
            ch.queue_purge(queue)
    finally:
        ch.queue_delete(queue)
        conn.close()
    base = results[0][1]
    print(f"{args.count} persistent messages of {args.size} bytes to a quorum queue")
    print(f"{'way':<45} {'seconds':>8} {'msg/s':>9} {'speed-up':>9}")
    for name, took in results:
        print(f"{name:<45} {took:8.2f} {args.count / took:9.0f} {base / took:8.1f}x")


if __name__ == "__main__":
    main()
