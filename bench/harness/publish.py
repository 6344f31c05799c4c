"""The portal side of a benchmark run, in a process of its own (its peak RSS is measured).

    python -m bench.harness.publish --mode hub|bare --config hub.toml --size BYTES --count N
        [--rate PER_S] [--seed S] [--queue Q] [--pace-url URL --ahead N] --out result.json

``hub``: applications (hub/samples.py) through the hub's publisher API (new_envelope +
publish_envelope, confirmed, mandatory). ``bare``: the very same body and properties, through the
same confirming publisher, straight to a quorum queue (the baseline's publish costs the same).
``--rate 0`` publishes all at once (a burst). Writes the publish times (epoch seconds), the RSS
before the first message and the peak RSS (VmHWM) while publishing as JSON.

The peak is the publisher's, not the sample generator's: building an application (hub/samples.py:
random filler, then the PDF-like file around it) briefly needs a few copies of it, so the
high-water mark is reset once an application is built, and the peak is the largest one seen
while publishing, which includes the applications held at that moment. Applications too large
to build ahead (more than 64 MB in all, of at least 8 MB each) are built one at a time, each after
the previous one's confirm and, with ``--pace-url``, after it reached the endpoint: the publisher's
peak and the worker's are then those of one application (the payload itself plus what publishing
or delivering adds), and the burst's latency is one application's.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from bench.harness.procfs import status_bytes
from bench.timing import reset_peak_rss

AUTHOR = {"identifier": "alp:000001", "name": "Bench-Portal", "category": "Ausländerportal"}
READER = "azr:000100"
MESSAGE_TYPE = "OZG.Antrag.130101"
PREGENERATE_BYTES = 64 * 1024 * 1024  # bursts below this are built before the first publish
ONE_AT_A_TIME_BYTES = 8 * 1024 * 1024  # applications this large, not built ahead, go one at a time


def _own(field: str) -> int:
    return status_bytes(Path("/proc/self/status").read_text(), field)


def applications(size: int, count: int, seed: int) -> Iterator[Any]:
    """Envelopes of about ``size`` content bytes (message + one PDF-like attachment)."""
    from hub.envelope import new_envelope
    from hub.samples import make_attachment, make_ozg_application
    from transport.content import ContentPart
    from transport.xta.metadata import Party

    reader, author = Party(READER, "ABH"), Party(**AUTHOR)
    bare_xml, _ = make_ozg_application(reader=reader, author=author, seed=seed)
    attachment_size = max(256, size - len(bare_xml) - 200)  # the anlage element adds ~200 bytes
    for n in range(seed, seed + count):
        data, name, ctype = make_attachment(n, attachment_size)
        xml, message_id = make_ozg_application(reader=reader, author=author, seed=n, attachment=data)
        yield new_envelope(destination=READER, message_type=MESSAGE_TYPE, message=xml, portal="bench",
                           message_id=message_id, attachments=(ContentPart(data, ctype, name),))


def _delivered(url: str) -> int:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return int(json.loads(answer.read())["arrived"])


def _wait_delivered(url: str, count: int, deadline: float = 600.0) -> None:
    give_up = time.monotonic() + deadline
    while _delivered(url) < count:
        if time.monotonic() > give_up:
            raise SystemExit(f"only {_delivered(url)} of {count} applications delivered after {deadline:.0f} s")
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("hub", "bare"), required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--amqp", required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--queue", default="bench.bare")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--pace-url", help="the endpoint's /_bench/count: stay at most --ahead in front")
    parser.add_argument("--ahead", type=int, default=2000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import pika

    from hub.config import BrokerConfig, load_config
    from hub.envelope import PUBLISH_VERSION
    from hub.limits import SizeLimits
    from hub.publisher import ConfirmingPublisher, publish_envelope

    limits = SizeLimits.from_config(load_config(args.config))
    publisher = ConfirmingPublisher(BrokerConfig(url=args.amqp), "bench-publisher", window=args.window)
    rss_base = _own("VmRSS")
    envelopes: Iterator[Any] = applications(args.size, args.count, args.seed)
    built_ahead = args.rate <= 0 and args.size * args.count <= PREGENERATE_BYTES
    if built_ahead:
        envelopes = iter(list(envelopes))
        reset_peak_rss()
    one_at_a_time = not built_ahead and args.size >= ONE_AT_A_TIME_BYTES
    peak = 0
    published: list[float] = []
    futures: list[Future[None]] = []
    started = time.time()
    for index in range(args.count):
        if one_at_a_time:
            if futures:  # one large application in the publisher at a time (see the docstring)
                futures[-1].result(timeout=300)
            if args.pace_url:  # ... and in the hub: the previous one has reached the endpoint
                _wait_delivered(args.pace_url, index)
            peak = max(peak, _own("VmHWM"))
            envelope = next(envelopes)
            reset_peak_rss()  # the generator's copies are not the publisher's
        else:
            envelope = next(envelopes)
        if args.rate > 0:
            time.sleep(max(0.0, started + index / args.rate - time.time()))
        if args.pace_url and index % 100 == 0 and not one_at_a_time:
            while index - _delivered(args.pace_url) > args.ahead:
                time.sleep(0.2)
        published.append(time.time())
        if args.mode == "hub":
            future = publish_envelope(publisher, envelope, limits)
        else:
            props = envelope.properties(version=PUBLISH_VERSION)  # the very body the hub's publisher sends
            future = publisher.publish("", args.queue, envelope.body_chunks(version=PUBLISH_VERSION), pika.BasicProperties(
                delivery_mode=2, message_id=props.message_id, content_type=props.content_type,
                headers=props.headers), mandatory=True)
        futures.append(future)
        del envelope
        if len(futures) > 1000:
            for f in futures:
                f.result(timeout=300)
            futures.clear()
    for f in futures:
        f.result(timeout=300)
    publisher.close()
    peak = max(peak, _own("VmHWM"))
    args.out.write_text(json.dumps({"published": published, "rss_base": rss_base, "peak": peak}))


if __name__ == "__main__":
    main()
