"""Benchmark of the XTA transport (a script, not a test).

    .venv/bin/python bench/bench_xta.py [--quick]

1. The worker path -- envelope decode (the AMQP body as it arrives) + the delivery pipeline (parse,
   validate, lookupService, createMessageId, sign, containerise, encrypt, sendMessage) -- delivering a
   40 MB container to the XTA simulator (running in its own process), for MTOM and inline base64,
   encrypted and plain. Each configuration runs in a fresh child process, in three separate passes so
   that no figure disturbs another:
   a. RSS high-water mark above what the process held before the step (reset via
      /proc/self/clear_refs, so C allocations of lxml/OpenSSL count), tracemalloc off;
   b. Python-heap peak (tracemalloc) -- a pass of its own, because tracemalloc slows allocation-heavy
      code several-fold and is never on while anything is timed;
   c. wall time: median [min–max] over >= 5 deliveries (a new application each), tracemalloc off.
2. Per-call overhead of the XTA client over a bare HTTP POST of the same bytes (requests, same
   keep-alive session kind, same server): the server is a minimal canned-answer endpoint, so the
   difference is what the client adds (rendering, MTOM packaging, answer parsing). Client and bare
   POST calls alternate (interleaved), medians over >= 5 calls each.
Printed side by side in one run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import MIN_RUNS, Spread, interleaved, load_note, timed

CONTENT_BYTES = 40_000_000
AUTHOR = {"identifier": "alp:000001", "name": "Bench-Portal", "category": "Ausländerportal"}
READER = "azr:000100"
T = TypeVar("T")


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------- 1. worker path: memory, time


def _child(args: argparse.Namespace) -> None:
    """Deliveries of a 40 MB container in this (fresh) process: memory passes, then timed runs; one JSON line."""
    from hub.config import parse_config
    from hub.envelope import new_envelope
    from hub.runtime import build_pipeline
    from hub.samples import make_attachment, make_ozg_application
    from transport.content import ContentPart
    from transport.xta.metadata import Party

    pki = json.loads(args.pki)
    options = {"mtom": args.mtom, "encrypt": args.encrypt}
    raw = {
        "ledger": {"url": f"sqlite:///{tempfile.mkdtemp(prefix='bench-ledger-')}/ledger.db"},
        "limits": {"max_content_bytes": 40 * 1024 * 1024},  # XTA's 40 MB container limit; the default is lower
        "message_types": [{"code": "OZG.Antrag.130101", "schema": "builtin:xauslaender/ozg-antrag-130101.xsd",
                           "list_uri": "urn:xoev-de:xauslaender:codeliste:nachrichtentyp", "list_version": "26.11",
                           "payload_schema": "http://www.osci.de/xauslaender2611"}],
        "adapters": {"alpha": {"endpoint": args.url, "timeout": 120, "signing_key": pki["portal"][0],
                               "signing_cert": pki["portal"][1], "author": AUTHOR, "options": options}},
        "authorities": [{"id": READER, "name": "ABH", "adapter": "alpha", "certificate": pki["azr-000100"][1]}],
    }
    pipeline = build_pipeline(parse_config(raw, base=Path("/"), environ={}), "alpha")
    data, name, ctype = make_attachment(1, CONTENT_BYTES - 8_000)

    def message(seed: int) -> tuple[Any, bytes, int]:
        """A new application per delivery (the ledger would answer a repeated one as a duplicate)."""
        xml, message_id = make_ozg_application(reader=Party(READER, "ABH"), author=Party(**AUTHOR), seed=seed,
                                               attachment=data)
        envelope = new_envelope(destination=READER, message_type="OZG.Antrag.130101", message=xml, portal="bench",
                                message_id=message_id, attachments=(ContentPart(data, ctype, name),))
        return envelope.properties(), envelope.body(), envelope.content.size

    def reset_simulator() -> None:  # it keeps every received message in memory
        urllib.request.urlopen(urllib.request.Request(args.url.rsplit("/xta", 1)[0] + "/_sim/reset", method="POST"),
                               timeout=60).close()

    pipeline.adapter.check()  # connections and zeep warm, like a running worker

    # a. RSS high-water mark, tracemalloc off
    props, body, size = message(1)
    decoded, decode_rss = _rss_peak(partial(pipeline.decode, props, body))
    receipt, rss_peak = _rss_peak(partial(pipeline.process, decoded))
    body_len = len(body)
    del decoded, props, body
    reset_simulator()
    # b. Python-heap peak, tracemalloc on (not timed)
    props, body, _ = message(2)
    decoded, decode_heap = _heap_peak(partial(pipeline.decode, props, body))
    _, heap_peak = _heap_peak(partial(pipeline.process, decoded))
    del decoded, props, body
    reset_simulator()
    # c. wall time over >= MIN_RUNS deliveries, tracemalloc off
    decode_s, process_s = [], []
    for run in range(args.runs):
        props, body, _ = message(3 + run)
        gc.collect()
        started = time.perf_counter()
        decoded = pipeline.decode(props, body)
        decoded_at = time.perf_counter()
        pipeline.process(decoded)
        done = time.perf_counter()
        decode_s.append(decoded_at - started)
        process_s.append(done - decoded_at)
        del decoded, props, body
        reset_simulator()
    print(json.dumps({"size": size, "body": body_len, "process_seconds": process_s, "heap_peak": heap_peak,
                      "rss_peak": rss_peak, "decode_rss": decode_rss, "decode_heap": decode_heap,
                      "decode_seconds": decode_s, "receipt": getattr(receipt, "transport_message_id", None)}))
    pipeline.close()


def _rss_peak(step: Callable[[], T]) -> tuple[T, int | None]:
    """``step()`` and the growth of the RSS high-water mark over the RSS before it (None if not resettable)."""
    gc.collect()
    rss_before = _status("VmRSS")
    resettable = _reset_peak_rss()
    result = step()
    return result, (_status("VmHWM") - rss_before) if resettable else None


def _heap_peak(step: Callable[[], T]) -> tuple[T, int]:
    """``step()`` and its Python-heap peak above the heap before it (tracemalloc: slow, never timed)."""
    gc.collect()
    tracemalloc.start()
    try:
        heap_before = tracemalloc.get_traced_memory()[0]
        result = step()
        return result, tracemalloc.get_traced_memory()[1] - heap_before
    finally:
        tracemalloc.stop()


def _worker_path(quick: bool, runs: int) -> list[dict[str, Any]]:
    from transport.security.demopki import make_test_pki

    pki_dir = Path(tempfile.mkdtemp(prefix="bench-xta-pki-"))
    pki = {k: [str(p) for p in v] for k, v in make_test_pki(pki_dir, ["portal", "azr-000100"]).items()}
    port = 18000 + os.getpid() % 1000
    sim = subprocess.Popen(
        [sys.executable, "-m", "transport.xta.simulator.cli", "--port", str(port), "--max-container-bytes",
         str(48 * 1024 * 1024), "--reader-key", f"{READER}={pki['azr-000100'][0]}", "--trusted-signer",
         pki["ca"][1]], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert sim.stdout is not None
        sim.stdout.readline()  # "listening on ..."
        url = f"http://127.0.0.1:{port}/xta"
        configs = [(True, True), (False, True), (True, False), (False, False)]
        if quick:
            configs = configs[:2]
        rows = []
        for mtom, encrypt in configs:
            out = subprocess.run(
                [sys.executable, __file__, "--child", "--url", url, "--pki", json.dumps(pki), "--runs", str(runs),
                 *(["--mtom"] if mtom else []), *(["--encrypt"] if encrypt else [])],
                check=False, cwd=ROOT, capture_output=True, text=True, timeout=600)
            if out.returncode != 0:
                raise SystemExit(f"child failed:\n{out.stderr[-3000:]}")
            rows.append({"mtom": mtom, "encrypt": encrypt, **json.loads(out.stdout.strip().splitlines()[-1])})
        return rows
    finally:
        sim.terminate()
        sim.wait(10)


# ---------------------------------------------------------------------- 2. client overhead


class _Canned:
    """Minimal SOAP endpoint: reads the body, answers a fixed envelope per action; keeps the last request."""

    def __init__(self) -> None:
        from transport.xta.ns import ACTION_CREATE_MESSAGE_ID

        self.last: tuple[bytes, str] = (b"", "")
        self._create_action = ACTION_CREATE_MESSAGE_ID

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        from werkzeug.wrappers import Request

        request = Request(environ)
        data = request.get_data()
        self.last = (data, request.headers.get("Content-Type", ""))
        body = b""
        if b"CreateMessageID" in data[:4096]:
            body = b'<wsa:MessageID xmlns:wsa="http://www.w3.org/2005/08/addressing">urn:de:xta:messageid:bench:1</wsa:MessageID>'
        answer = (b'<?xml version="1.0" encoding="utf-8"?><e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope">'
                  b"<e:Body>" + body + b"</e:Body></e:Envelope>")
        start_response("200 OK", [("Content-Type", "application/soap+xml; charset=utf-8"),
                                  ("Content-Length", str(len(answer)))])
        return [answer]


def _overhead(quick: bool) -> list[tuple[str, Spread, Spread]]:
    from transport.content import Content, ContentPart
    from transport.http_server import NoDelayWSGIServer
    from transport.xta.client import XtaClient, XtaEndpoint, default_session
    from transport.xta.container import (
        OutgoingContainer,
        build_content_container,
        generic_container,
    )
    from transport.xta.metadata import (
        BusinessScenario,
        MessageMetaData,
        MessageType,
        Party,
    )
    from transport.xta.mtom import Attachments

    app = _Canned()
    server = NoDelayWSGIServer("127.0.0.1", 0, app)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/xta"
    client = XtaClient(XtaEndpoint(url, timeout=60))
    bare = default_session(url)
    author = Party(AUTHOR["identifier"])
    md = MessageMetaData(author=author, reader=Party(READER), message_id="urn:de:xta:messageid:bench:1",
                         service="xauslaender1211OZGPORTALABH", business_scenario=BusinessScenario("XAUSLAENDER_DATA"),
                         message_type=MessageType("OZG.Antrag.130101", "urn:l", "1", "urn:p"))

    def container(size: int, mtom: bool) -> OutgoingContainer:
        content = Content(ContentPart(os.urandom(size), "application/pdf", "anlage.pdf"))
        attachments = Attachments() if mtom else None
        return OutgoingContainer(generic_container(build_content_container(content, attachments)),
                                 attachments or Attachments())

    small_inline, small_mtom = container(20_000, False), container(20_000, True)
    cases: list[tuple[str, Callable[[], object], int]] = [
        ("checkAccountActive", lambda: client.check_account_active(author), 300),
        ("createMessageId", lambda: client.create_message_id(author), 300),
        ("sendMessage 20 KB inline", lambda: client.send_message(md, small_inline), 200),
        ("sendMessage 20 KB MTOM", lambda: client.send_message(md, small_mtom), 200),
    ]
    if not quick:
        big_mtom, big_inline = container(CONTENT_BYTES, True), container(CONTENT_BYTES, False)
        cases += [("sendMessage 40 MB MTOM", lambda: client.send_message(md, big_mtom), 7),
                  ("sendMessage 40 MB inline", lambda: client.send_message(md, big_inline), MIN_RUNS)]
    rows = []
    for name, call, repeat in cases:
        call()
        data, content_type = app.last

        def post(data: bytes = data, content_type: str = content_type) -> bytes:
            return bare.post(url, data=data, headers={"Content-Type": content_type}, timeout=60).content

        pair = interleaved({"client": timed(call), "bare": timed(post)}, repeat)  # client, bare, client, ...
        rows.append((name, pair["client"], pair["bare"]))
    server.shutdown()
    return rows


def _seconds(values: list[float]) -> str:
    spread = Spread(tuple(values))
    return f"{spread.median:.2f} [{spread.minimum:.2f}–{spread.maximum:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer configurations, no 40 MB client calls")
    parser.add_argument("--runs", type=int, default=MIN_RUNS, help=f"timed deliveries per configuration (>= {MIN_RUNS})")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--pki", help=argparse.SUPPRESS)
    parser.add_argument("--mtom", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--encrypt", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs < MIN_RUNS:
        parser.error(f"--runs must be at least {MIN_RUNS}")
    if args.child:
        _child(args)
        return
    started_under = load_note()
    worker = _worker_path(args.quick, args.runs)
    overhead = _overhead(args.quick)
    mb = 1024 * 1024
    print(f"at start: {started_under}\nat end:   {load_note()}")
    print(f"\n1) worker path, one {CONTENT_BYTES / 1e6:.0f} MB container, fresh process per mode. Memory: peaks above what "
          "the process held before the step, RSS (tracemalloc off) and Python heap (tracemalloc, separate pass).")
    print(f"   Time: median [min–max] s over {args.runs} deliveries, tracemalloc off.")
    print(f"   {'mode':<26}{'decode RSS/heap':>17}{'process RSS/heap':>19}{'RSS/content':>12}"
          f"{'decode time':>19}{'process time':>19}")
    for r in worker:
        mode = f"{'MTOM' if r['mtom'] else 'inline base64'}, {'encrypted' if r['encrypt'] else 'plain'}"

        def pair(rss: int | None, heap: int) -> str:
            return f"{rss / mb if rss is not None else float('nan'):.0f} / {heap / mb:.0f} MB"
        ratio = (r["rss_peak"] or 0) / r["size"]
        print(f"   {mode:<26}{pair(r['decode_rss'], r['decode_heap']):>17}{pair(r['rss_peak'], r['heap_peak']):>19}"
              f"{ratio:11.2f}x{_seconds(r['decode_seconds']):>19}{_seconds(r['process_seconds']):>19}")
    print(f"   (content {worker[0]['size'] / mb:.1f} MB; AMQP body {worker[0]['body'] / mb:.0f} MB held before decode; "
          "decode is hub/envelope.py, the same for every mode; process = pipeline.process, the delivery)")
    print("\n2) XTA client vs bare HTTP POST of the same bytes, interleaved; median [min–max] per call, canned-answer server")
    print(f"   {'call':<26}{'n':>4}{'XTA client, ms':>26}{'bare POST, ms':>26}{'overhead (medians)':>20}")
    for name, client, bare in overhead:
        print(f"   {name:<26}{len(client.samples):>4}{_ms(client):>26}{_ms(bare):>26}"
              f"{(client.median - bare.median) * 1000:17.2f} ms")


def _ms(spread: Spread) -> str:
    return f"{spread.median * 1000:.2f} [{spread.minimum * 1000:.2f}–{spread.maximum * 1000:.2f}]"


if __name__ == "__main__":
    main()
