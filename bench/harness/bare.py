"""The bare path's consumer (pika + http.client, no hub code): consume from a quorum queue, POST
the body as it is to the endpoint over one keep-alive connection, ack. Runs until SIGTERM.

    python -m bench.harness.bare --amqp URL --queue Q --url http://127.0.0.1:P/bare [--prefetch 32]
"""

from __future__ import annotations

import argparse
import http.client
import signal
import urllib.parse
from typing import Any

import pika


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--amqp", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefetch", type=int, default=32)
    args = parser.parse_args()
    target = urllib.parse.urlsplit(args.url)
    conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port or 80, timeout=60)
    connection = pika.BlockingConnection(pika.URLParameters(args.amqp))
    channel = connection.channel()
    channel.queue_declare(args.queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.basic_qos(prefetch_count=args.prefetch)

    def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
        conn.request("POST", target.path, body=body, headers={"Content-Type": props.content_type or "application/json"})
        answer = conn.getresponse()
        answer.read()
        if answer.status != 200:
            raise SystemExit(f"endpoint answered {answer.status}")
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(args.queue, on_message)
    signal.signal(signal.SIGTERM, lambda *_: connection.add_callback_threadsafe(channel.stop_consuming))
    print("ready", flush=True)
    channel.start_consuming()
    connection.close()


if __name__ == "__main__":
    main()
