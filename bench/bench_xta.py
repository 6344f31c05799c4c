"""Benchmark of the XTA transport (a script, not a test).

    .venv/bin/python bench/bench_xta.py [--quick]

1. Peak memory of the worker path -- envelope decode (the AMQP body as it arrives) + the delivery
   pipeline (parse, validate, lookupService, createMessageId, sign, containerise, encrypt, sendMessage)
   -- while delivering a 40 MB container to the XTA simulator (running in its own process), for MTOM
   and inline base64, encrypted and plain. Each configuration runs in a fresh child process; peaks are
   measured as the RSS high-water mark (reset before the delivery via /proc/self/clear_refs, so C
   allocations of lxml/OpenSSL count) and as the Python-heap peak (tracemalloc), both above what the
   process held before the delivery (which includes the 53 MB AMQP body).
2. Per-call overhead of the XTA client over a bare HTTP POST of the same bytes (requests, same
   keep-alive session kind, same server): the server is a minimal canned-answer endpoint, so the
   difference is what the client adds (rendering, MTOM packaging, answer parsing).
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
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import median_ms

CONTENT_BYTES = 40_000_000
AUTHOR = {"identifier": "alp:000001", "name": "Bench-Portal", "category": "Ausländerportal"}
READER = "azr:000100"


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


# ---------------------------------------------------------------------- 1. worker path memory


def _child(args: argparse.Namespace) -> None:
    """One delivery of a 40 MB container in this (fresh) process; prints a JSON line."""
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
        "message_types": [{"code": "OZG.Antrag.130101", "schema": "builtin:xauslaender/ozg-antrag-130101.xsd",
                           "list_uri": "urn:xoev-de:xauslaender:codeliste:nachrichtentyp", "list_version": "26.11",
                           "payload_schema": "http://www.osci.de/xauslaender2611"}],
        "adapters": {"alpha": {"endpoint": args.url, "timeout": 120, "signing_key": pki["portal"][0],
                               "signing_cert": pki["portal"][1], "author": AUTHOR, "options": options}},
        "authorities": [{"id": READER, "name": "ABH", "adapter": "alpha", "certificate": pki["azr-000100"][1]}],
    }
    pipeline = build_pipeline(parse_config(raw, base=Path("/"), environ={}), "alpha")
    data, name, ctype = make_attachment(1, CONTENT_BYTES - 8_000)
    xml, message_id = make_ozg_application(reader=Party(READER, "ABH"), author=Party(**AUTHOR), seed=1,
                                           attachment=data)
    envelope = new_envelope(destination=READER, message_type="OZG.Antrag.130101", message=xml, portal="bench",
                            message_id=message_id, attachments=(ContentPart(data, ctype, name),))
    props, body = envelope.properties(), envelope.body()
    size = envelope.content.size
    del envelope, data, xml
    pipeline.adapter.check()  # connections and zeep warm, like a running worker

    def measured(step: Callable[[], object]) -> tuple[object, int, int | None, float]:
        gc.collect()
        rss_before = _status("VmRSS")
        resettable = _reset_peak_rss()
        tracemalloc.start()
        heap_before = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        result = step()
        elapsed = time.perf_counter() - started
        heap_peak = tracemalloc.get_traced_memory()[1] - heap_before
        tracemalloc.stop()
        return result, heap_peak, (_status("VmHWM") - rss_before) if resettable else None, elapsed

    decoded, decode_heap, decode_rss, decode_s = measured(lambda: pipeline.decode(props, body))
    receipt, heap_peak, rss_peak, elapsed = measured(lambda: pipeline.process(decoded))
    print(json.dumps({"size": size, "body": len(body), "seconds": elapsed, "heap_peak": heap_peak,
                      "rss_peak": rss_peak, "decode_rss": decode_rss, "decode_heap": decode_heap,
                      "decode_seconds": decode_s, "receipt": receipt.transport_message_id}))
    pipeline.close()


def _memory(quick: bool) -> list[dict]:
    from transport.security.testpki import make_test_pki

    pki_dir = Path(tempfile.mkdtemp(prefix="bench-xta-pki-"))
    pki = {k: [str(p) for p in v] for k, v in make_test_pki(pki_dir, ["portal", "azr-000100"]).items()}
    port = 18000 + os.getpid() % 1000
    sim = subprocess.Popen(
        [sys.executable, "-m", "transport.xta.simulator_cli", "--port", str(port), "--max-container-bytes",
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
                [sys.executable, __file__, "--child", "--url", url, "--pki", json.dumps(pki),
                 *(["--mtom"] if mtom else []), *(["--encrypt"] if encrypt else [])],
                cwd=ROOT, capture_output=True, text=True, timeout=600)
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

    def __call__(self, environ: dict, start_response: Callable) -> list[bytes]:
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


def _overhead(quick: bool) -> list[tuple[str, float, float]]:
    from transport.content import Content, ContentPart
    from transport.xta.client import XtaClient, XtaEndpoint, default_session
    from transport.xta.container import (
        OutgoingContainer,
        build_content_container,
        generic_container,
    )
    from transport.xta.http_server import NoDelayWSGIServer
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
                  ("sendMessage 40 MB inline", lambda: client.send_message(md, big_inline), 5)]
    rows = []
    for name, call, repeat in cases:
        call()
        data, content_type = app.last

        def post(data: bytes = data, content_type: str = content_type) -> bytes:
            return bare.post(url, data=data, headers={"Content-Type": content_type}, timeout=60).content

        rows.append((name, median_ms(call, repeat), median_ms(post, repeat)))
    server.shutdown()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer configurations, no 40 MB client calls")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--pki", help=argparse.SUPPRESS)
    parser.add_argument("--mtom", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--encrypt", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    memory = _memory(args.quick)
    overhead = _overhead(args.quick)
    mb = 1024 * 1024
    print(f"\n1) worker path, one {CONTENT_BYTES / 1e6:.0f} MB container, fresh process each; peaks above what the "
          "process held before each step")
    print(f"   {'mode':<26}{'decode (RSS/heap)':>20}{'pipeline.process (RSS/heap)':>30}{'x content':>11}{'time':>8}")
    for r in memory:
        mode = f"{'MTOM' if r['mtom'] else 'inline base64'}, {'encrypted' if r['encrypt'] else 'plain'}"
        def pair(rss: int | None, heap: int) -> str:
            return f"{rss / mb if rss is not None else float('nan'):.0f} / {heap / mb:.0f} MB"
        ratio = (r["rss_peak"] or 0) / r["size"]
        print(f"   {mode:<26}{pair(r['decode_rss'], r['decode_heap']):>20}{pair(r['rss_peak'], r['heap_peak']):>30}"
              f"{ratio:10.2f}x{r['seconds']:7.2f}s")
    print(f"   (content {memory[0]['size'] / mb:.1f} MB; AMQP body {memory[0]['body'] / mb:.0f} MB held before decode; "
          "decode is hub/envelope.py, the same for every mode)")
    print("\n2) XTA client vs bare HTTP POST of the same bytes (median per call, canned-answer server)")
    print(f"   {'call':<26}{'XTA client':>12}{'bare POST':>12}{'overhead':>12}")
    for name, client_ms, bare_ms in overhead:
        print(f"   {name:<26}{client_ms:9.2f} ms{bare_ms:9.2f} ms{client_ms - bare_ms:9.2f} ms")


if __name__ == "__main__":
    main()
