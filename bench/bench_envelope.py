"""Envelope version 1 (JSON + base64) against version 2 (raw parts + preamble), side by side.

    .venv/bin/python bench/bench_envelope.py [--repeat 5] [--sizes 50K 2M 40M] [--no-publisher]

Per content size (one XML message of ~3 KB + one attachment), both formats interleaved:
* decode CPU: ``decode_envelope`` as the worker calls it (all checks, hashes, base64 for v1),
  ``time.process_time`` per decode (a batch for the small size), median [min-max] of ``--repeat``;
* decode peak RSS: each run in a fresh child process that reads the AMQP body from a file, resets
  the RSS high-water mark (/proc/self/clear_refs) and decodes: the growth above the RSS holding
  the body, median of ``--repeat`` processes;
* publisher peak RSS (40 MB): a fresh child builds the envelope (the payload in memory), connects a
  ConfirmingPublisher to a throwaway vhost of the local RabbitMQ, resets the high-water mark and
  runs ``publish_envelope`` until the broker confirmed: the growth above the RSS holding the payload;
* ``--worker-path``: the whole worker path (decode + process, against the XTA simulator) for a
  valid 30 MiB application in both formats, through bench/bench_memory.py's child process.
Prints a Markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import MIN_RUNS, load_note, proc_status, reset_peak_rss

KB, MB = 1000, 1000 * 1000
SIZES = {"50K": 50 * KB, "2M": 2 * MB, "40M": 40 * MB}
MESSAGE_TYPE = "OZG.Antrag.130101"
AMQP = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
MANAGEMENT = os.environ.get("RABBITMQ_MANAGEMENT", "http://127.0.0.1:15672/api")


def _envelope(size: int) -> Any:
    """An OZG application whose attachment brings the content to ``size`` bytes."""
    from hub.envelope import new_envelope
    from hub.samples import make_attachment, make_ozg_application
    from transport.content import ContentPart
    from transport.xta.metadata import Party

    reader, author = Party("azr:000100", "ABH"), Party("alp:000001", "Bench")
    probe, _ = make_ozg_application(reader=reader, author=author, seed=7, attachment=b"x" * 256)
    data, name, ctype = make_attachment(7, size - len(probe))
    xml, message_id = make_ozg_application(reader=reader, author=author, seed=7, attachment=data)
    return new_envelope(destination="azr:000100", message_type=MESSAGE_TYPE, message=xml, portal="bench",
                        message_id=message_id, filename="antrag.xml", attachments=(ContentPart(data, ctype, name),))


def _limits() -> Any:
    from hub.limits import SizeLimits

    return SizeLimits(max_content_bytes=64 * 1024 * 1024)


# ---------------------------------------------------------------------- children


def _child_decode(args: argparse.Namespace) -> None:
    import pika

    from hub.envelope import decode_envelope

    limits = _limits()
    props = pika.BasicProperties(**json.loads(args.props))
    body = Path(args.body).read_bytes()
    gc.collect()
    before = proc_status("VmRSS")
    reset_peak_rss()
    envelope = decode_envelope(props, body, limits)
    growth = proc_status("VmHWM") - before
    print(json.dumps({"growth": growth, "content": envelope.content.size}))


def _child_publish(args: argparse.Namespace) -> None:
    from hub.config import BrokerConfig
    from hub.publisher import ConfirmingPublisher, publish_envelope

    gc.collect()
    start = proc_status("VmRSS")
    envelope = _envelope(SIZES[args.size])
    with ConfirmingPublisher(BrokerConfig(url=args.url), "bench-envelope") as publisher:
        gc.collect()
        before = proc_status("VmRSS")
        reset_peak_rss()
        publish_envelope(publisher, envelope, _limits(), check=False, version=args.version).result(timeout=120)
        growth = proc_status("VmHWM") - before
    print(json.dumps({"growth": growth, "payload_rss": before - start, "content": envelope.content.size}))


# ---------------------------------------------------------------------- the parent


def _decode_cpu(props: Any, body: bytes, batch: int) -> float:
    from hub.envelope import decode_envelope

    limits = _limits()
    started = time.process_time()
    for _ in range(batch):
        decode_envelope(props, body, limits)
    return (time.process_time() - started) / batch


def _child(*extra: str) -> dict[str, Any]:
    return _child_script(Path(__file__), *extra)


def _child_script(script: Path, *extra: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(script), *extra], cwd=ROOT, capture_output=True, text=True, timeout=900,
                         check=False)
    if out.returncode != 0:
        raise SystemExit(f"child {extra[:2]} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _management(method: str, path: str, body: bytes | None = None) -> None:
    parts = urllib.parse.urlsplit(AMQP)
    request = urllib.request.Request(f"{MANAGEMENT}/{path}", data=body, method=method,
                                     headers={"content-type": "application/json"})
    token = base64.b64encode(f"{parts.username or 'guest'}:{parts.password or 'guest'}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=30):
        pass


def _throwaway_vhost() -> tuple[str, str]:
    """A vhost with the checked inbound exchange bound to one queue, so that publishes are confirmed."""
    import pika

    vhost = f"bench-envelope-{uuid.uuid4().hex[:8]}"
    quoted = urllib.parse.quote(vhost, safe="")
    user = urllib.parse.unquote(urllib.parse.urlsplit(AMQP).username or "guest")
    _management("PUT", f"vhosts/{quoted}")
    _management("PUT", f"permissions/{quoted}/{urllib.parse.quote(user, safe='')}",
                b'{"configure": ".*", "write": ".*", "read": ".*"}')
    url = f"{AMQP.rsplit('/', 1)[0]}/{quoted}"
    from hub.topology import INBOUND_CHECKED

    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.exchange_declare(INBOUND_CHECKED, "topic", durable=True)
    channel.queue_declare("bench", arguments={"x-max-length": 2})  # keeps the broker's memory small
    channel.queue_bind("bench", INBOUND_CHECKED, "#")
    connection.close()
    return vhost, url


def _worker_path(repeat: int, folder: Path) -> dict[int, list[float]]:
    """Peak RSS growth / payload of bench_memory's worker-path child, v1 and v2 interleaved."""
    import bench_memory

    from hub.envelope import new_envelope
    from transport.content import ContentPart
    from transport.security.demopki import make_test_pki

    pki = {k: [str(p) for p in v] for k, v in make_test_pki(folder / "pki", ["portal", "azr-000100"]).items()}
    port = 18500 + os.getpid() % 400
    sim = subprocess.Popen(
        [sys.executable, "-m", "transport.xta.simulator.cli", "--port", str(port), "--max-container-bytes",
         str(64 * bench_memory.MIB), "--reader-key", f"azr:000100={pki['azr-000100'][0]}", "--trusted-signer",
         pki["ca"][1]], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert sim.stdout is not None
        sim.stdout.readline()  # "listening on ..."
        xml, attachments = bench_memory.CASES["valid 30 MiB (attachment)"]()
        envelope = new_envelope(destination="azr:000100", message_type=MESSAGE_TYPE, message=xml, portal="bench",
                                attachments=tuple(ContentPart(d, t, n) for d, n, t in attachments))
        cases = {}
        for v in (1, 2):
            props = envelope.properties(version=v)
            body = folder / f"worker-v{v}.bin"
            body.write_bytes(envelope.body(version=v))
            cases[v] = json.dumps({"body": str(body), "properties": {
                "message_id": props.message_id, "app_id": props.app_id, "content_type": props.content_type,
                "timestamp": props.timestamp, "headers": props.headers}})
        growth: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(repeat):
            for v in (1, 2):
                out = _child_script(ROOT / "bench" / "bench_memory.py", "--child", "--url",
                                    f"http://127.0.0.1:{port}/xta", "--pki", json.dumps(pki), "--case", cases[v])
                if out["outcome"] != "delivered":
                    raise SystemExit(f"worker path v{v}: {out['outcome']}")
                growth[v].append(out["growth"] / envelope.content.size)
        return growth
    finally:
        sim.terminate()
        sim.wait(10)


def _spread(values: list[float], scale: float, unit: str, digits: int = 2) -> str:
    med = statistics.median(values)
    return f"{med * scale:.{digits}f} [{min(values) * scale:.{digits}f}-{max(values) * scale:.{digits}f}] {unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=MIN_RUNS)
    parser.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--no-publisher", action="store_true", help="skip the publisher's 40 MB measurement")
    parser.add_argument("--worker-path", action="store_true", help="also the whole worker path, 30 MiB, v1 vs v2")
    parser.add_argument("--child", choices=["decode", "publish"], help=argparse.SUPPRESS)
    parser.add_argument("--body", help=argparse.SUPPRESS)
    parser.add_argument("--props", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--version", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "decode":
        _child_decode(args)
        return
    if args.child == "publish":
        _child_publish(args)
        return
    if args.repeat < MIN_RUNS:
        raise SystemExit(f"--repeat must be at least {MIN_RUNS}")

    folder = Path(tempfile.mkdtemp(prefix="bench-envelope-"))
    results: dict[str, Any] = {"machine": load_note(), "repeat": args.repeat, "decode": {}, "publisher": {}}
    print(f"envelope v1 (JSON + base64) vs v2 (raw parts); median [min-max] of {args.repeat} interleaved runs; "
          f"{load_note()}\n")
    print("| content | body v1 | body v2 | decode CPU v1 | decode CPU v2 | CPU v2/v1 | decode peak RSS growth v1 "
          "| v2 | RSS v2/v1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label in args.sizes:
        envelope = _envelope(SIZES[label])
        bodies = {v: envelope.body(version=v) for v in (1, 2)}
        props = {v: envelope.properties(version=v) for v in (1, 2)}
        files = {}
        for v in (1, 2):
            files[v] = folder / f"body-v{v}.bin"
            files[v].write_bytes(bodies[v])
        batch = 50 if SIZES[label] < MB else 1
        cpu: dict[int, list[float]] = {1: [], 2: []}
        rss: dict[int, list[float]] = {1: [], 2: []}
        for v in (1, 2):  # warm-up, discarded
            _decode_cpu(props[v], bodies[v], batch)
        for _ in range(args.repeat):
            for v in (1, 2):  # interleaved: v1 v2 v1 v2 ...
                cpu[v].append(_decode_cpu(props[v], bodies[v], batch))
        for _ in range(args.repeat):
            for v in (1, 2):
                meta = {"message_id": props[v].message_id, "app_id": props[v].app_id,
                        "content_type": props[v].content_type, "headers": props[v].headers}
                out = _child("--child", "decode", "--body", str(files[v]), "--props", json.dumps(meta))
                rss[v].append(out["growth"] / envelope.content.size)
        content = envelope.content.size
        row = {f"v{v}": {"body_bytes": len(bodies[v]), "cpu_ms": [c * 1000 for c in cpu[v]],
                         "rss_growth_x_payload": rss[v]} for v in (1, 2)}
        row["content_bytes"] = content  # type: ignore[assignment]
        results["decode"][label] = row
        print(f"| {content / MB:.2f} MB | {len(bodies[1]) / MB:.2f} MB | {len(bodies[2]) / MB:.2f} MB "
              f"| {_spread(cpu[1], 1000, 'ms', 3)} | {_spread(cpu[2], 1000, 'ms', 3)} "
              f"| {statistics.median(cpu[2]) / statistics.median(cpu[1]):.3f} "
              f"| {_spread(rss[1], 1, 'x')} | {_spread(rss[2], 1, 'x')} "
              f"| {statistics.median(rss[2]) / max(statistics.median(rss[1]), 1e-9):.2f} |", flush=True)
        for f in files.values():
            f.unlink()
        del envelope, bodies
    if not args.no_publisher:
        vhost, url = _throwaway_vhost()
        try:
            growth: dict[int, list[float]] = {1: [], 2: []}
            for _ in range(args.repeat):
                for v in (1, 2):
                    out = _child("--child", "publish", "--size", "40M", "--url", url, "--version", str(v))
                    growth[v].append(out["growth"] / out["content"])
        finally:
            _management("DELETE", f"vhosts/{urllib.parse.quote(vhost, safe='')}")
        results["publisher"] = {"40M": {f"v{v}": {"rss_growth_x_payload": growth[v]} for v in (1, 2)}}
        print("\n| publisher, 40 MB content | peak RSS growth during publish_envelope (x payload) |")
        print("|---|---|")
        for v in (1, 2):
            print(f"| v{v} | {_spread(growth[v], 1, 'x')} |")
        print(f"| v2/v1 | {statistics.median(growth[2]) / statistics.median(growth[1]):.2f} |")
    if args.worker_path:
        worker = _worker_path(args.repeat, folder)
        results["worker_path"] = {"30MiB": {f"v{v}": {"rss_growth_x_payload": worker[v]} for v in (1, 2)}}
        print("\n| worker path, valid 30 MiB application | peak RSS growth (decode + process) |")
        print("|---|---|")
        for v in (1, 2):
            print(f"| v{v} | {_spread(worker[v], 1, 'x')} |")
    print("\n" + json.dumps(results))


if __name__ == "__main__":
    main()
