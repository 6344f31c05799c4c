"""Peak memory of the worker's message path by payload size and kind (a script, not a test).

    .venv/bin/python bench/bench_memory.py [--only NAME ...] [--repeat 5]

Every case runs in a fresh child process: it builds the worker pipeline from a config (as `hub
worker` does), warms it with one small delivery, reads the AMQP body exactly as the worker receives
it, resets the RSS high-water mark (/proc/self/clear_refs, so C allocations of lxml/OpenSSL count),
and runs the worker path -- ``pipeline.decode`` (envelope checks, base64) + ``pipeline.process``
(hardened parse, schema validation; for valid messages lookupService, createMessageId, sign, encrypt,
sendMessage to the XTA simulator, which runs in its own process). Printed: the growth of the peak RSS
above what the process held with the body in memory, and its ratio to the payload (the decoded
content: message + attachments), as the median [min-max] of ``--repeat`` fresh processes. The hub
limit is 40 MiB here (the XTA container limit), so the 30 MiB cases are inside it and the 45 MiB
case is above it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import MIN_RUNS, load_note, proc_status, reset_peak_rss

MIB = 1024 * 1024
LIMIT = 40 * MIB
AUTHOR = {"identifier": "alp:000001", "name": "Bench-Portal", "category": "Ausländerportal"}
READER = "azr:000100"
MESSAGE_TYPE = "OZG.Antrag.130101"
XAU = b"http://www.osci.de/xauslaender2611"


# ---------------------------------------------------------------------- the cases


def _valid(size: int) -> Callable[[], tuple[bytes, tuple[tuple[bytes, str, str], ...]]]:
    """A schema-valid application whose attachment brings the content to ``size`` bytes."""
    def build() -> tuple[bytes, tuple[tuple[bytes, str, str], ...]]:
        from hub.samples import make_attachment, make_ozg_application
        from transport.xta.metadata import Party

        probe, _ = make_ozg_application(reader=Party(READER, "ABH"), author=Party(**AUTHOR), seed=7,
                                        attachment=b"x" * 256)
        data, name, ctype = make_attachment(7, size - len(probe))
        xml, _ = make_ozg_application(reader=Party(READER, "ABH"), author=Party(**AUTHOR), seed=7, attachment=data)
        return xml, ((data, name, ctype),)
    return build


def _xml_only(make: Callable[[int], bytes], size: int) -> Callable[[], tuple[bytes, tuple[tuple[bytes, str, str], ...]]]:
    return lambda: (make(size), ())


def _huge_text(size: int) -> bytes:
    """Well-formed, one text node of ``size`` bytes in the application's root element."""
    head = b'<xau:ozg.antrag.130101 xmlns:xau="' + XAU + b'">'
    tail = b"</xau:ozg.antrag.130101>"
    return head + b"A" * (size - len(head) - len(tail)) + tail


def _many_elements(size: int) -> bytes:
    """Well-formed, ``size / 4`` empty elements: the densest tree per input byte."""
    head, tail = b"<a>", b"</a>"
    count = (size - len(head) - len(tail)) // 4
    return head + b"<b/>" * count + b" " * (size - len(head) - len(tail) - 4 * count) + tail


def _invalid_utf8(size: int) -> bytes:
    """A text node of ``size`` bytes whose last character is not UTF-8."""
    head, tail = b"<a>", b"\xff</a>"
    return head + b"A" * (size - len(head) - len(tail)) + tail


CASES: dict[str, Callable[[], tuple[bytes, tuple[tuple[bytes, str, str], ...]]]] = {
    "valid 1 MiB (attachment)": _valid(1 * MIB),
    "valid 30 MiB (attachment)": _valid(30 * MIB),
    "hostile 30 MiB: one huge text node": _xml_only(_huge_text, 30 * MIB),
    "hostile 30 MiB: 7.9 M empty elements": _xml_only(_many_elements, 30 * MIB),
    "hostile 30 MiB: invalid UTF-8 at the end": _xml_only(_invalid_utf8, 30 * MIB),
    "over the limit: 45 MiB (attachment)": _valid(45 * MIB),
}


def _write_case(name: str, folder: Path) -> dict[str, object]:
    """Build the envelope of a case in this process; store its AMQP body and properties as files."""
    from hub.envelope import new_envelope
    from transport.content import ContentPart

    xml, attachments = CASES[name]()
    envelope = new_envelope(destination=READER, message_type=MESSAGE_TYPE, message=xml, portal="bench",
                            attachments=tuple(ContentPart(data, content_type, filename)
                                              for data, filename, content_type in attachments))
    props = envelope.properties()
    body_file = folder / "body.bin"
    body_file.write_bytes(envelope.body())
    meta = {"message_id": props.message_id, "app_id": props.app_id, "content_type": props.content_type,
            "timestamp": props.timestamp, "headers": props.headers}
    return {"body": str(body_file), "properties": meta, "payload": envelope.content.size}


# ---------------------------------------------------------------------- the child


def _config(url: str, pki: dict[str, list[str]]) -> object:
    from hub.config import HubConfig, parse_config

    raw: dict[str, object] = {
        "ledger": {"url": f"sqlite:///{tempfile.mkdtemp(prefix='bench-ledger-')}/ledger.db"},
        "message_types": [{"code": MESSAGE_TYPE, "schema": "builtin:xauslaender/ozg-antrag-130101.xsd",
                           "list_uri": "urn:xoev-de:xauslaender:codeliste:nachrichtentyp", "list_version": "26.11",
                           "payload_schema": "http://www.osci.de/xauslaender2611"}],
        "adapters": {"alpha": {"endpoint": url, "timeout": 120, "signing_key": pki["portal"][0],
                               "signing_cert": pki["portal"][1], "author": AUTHOR}},
        "authorities": [{"id": READER, "name": "ABH", "adapter": "alpha", "certificate": pki["azr-000100"][1]}],
    }
    if "limits" in HubConfig.model_fields:  # the code before the limits existed runs this bench too
        raw["limits"] = {"max_content_bytes": LIMIT}
    return parse_config(raw, base=Path("/"), environ={})


def _child(args: argparse.Namespace) -> None:
    """Run one case in this fresh process; print one JSON line."""
    import pika

    from hub.envelope import new_envelope
    from hub.errors import HubError
    from hub.runtime import build_pipeline
    from hub.samples import make_ozg_application
    from transport.xta.metadata import Party

    pipeline = build_pipeline(_config(args.url, json.loads(args.pki)), "alpha")  # type: ignore[arg-type]
    warm_xml, warm_id = make_ozg_application(reader=Party(READER, "ABH"), author=Party(**AUTHOR), seed=1)
    warm = new_envelope(destination=READER, message_type=MESSAGE_TYPE, message=warm_xml, portal="bench",
                        message_id=warm_id)
    pipeline.process(pipeline.decode(warm.properties(), warm.body()))  # sessions, keys, schema, lookup cache
    case = json.loads(args.case)
    props = pika.BasicProperties(**case["properties"])
    body = Path(case["body"]).read_bytes()
    gc.collect()
    rss_before = proc_status("VmRSS")
    reset_peak_rss()
    started = time.perf_counter()
    try:
        pipeline.process(pipeline.decode(props, body))
        outcome = "delivered"
    except HubError as exc:
        outcome = f"refused: {exc.reason}"
    elapsed = time.perf_counter() - started
    growth = proc_status("VmHWM") - rss_before
    print(json.dumps({"growth": growth, "body": len(body), "outcome": outcome, "seconds": elapsed}))
    pipeline.close()


# ---------------------------------------------------------------------- the parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="case names (substrings) to run; default all")
    parser.add_argument("--repeat", type=int, default=MIN_RUNS, help="fresh processes per case (median)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--pki", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    from transport.security.demopki import make_test_pki

    folder = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    pki = {k: [str(p) for p in v] for k, v in make_test_pki(folder / "pki", ["portal", "azr-000100"]).items()}
    port = 18000 + os.getpid() % 1000
    sim = subprocess.Popen(
        [sys.executable, "-m", "transport.xta.simulator.cli", "--port", str(port), "--max-container-bytes",
         str(64 * MIB), "--reader-key", f"{READER}={pki['azr-000100'][0]}", "--trusted-signer", pki["ca"][1]],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    names = [n for n in CASES if not args.only or any(o.lower() in n.lower() for o in args.only)]
    try:
        assert sim.stdout is not None
        sim.stdout.readline()  # "listening on ..."
        url = f"http://127.0.0.1:{port}/xta"
        print(f"worker path (decode + process); hub limit {LIMIT // MIB} MiB of content; median [min-max] of "
              f"{args.repeat} fresh processes per case; {load_note()}")
        print(f"{'case':<42}{'payload':>10}{'body':>10}{'peak RSS growth':>26}{'x payload':>11}{'time':>8}  outcome")
        for name in names:
            case = _write_case(name, folder)
            rows = []
            for _ in range(args.repeat):
                out = subprocess.run([sys.executable, __file__, "--child", "--url", url, "--pki", json.dumps(pki),
                                      "--case", json.dumps(case)], cwd=ROOT, capture_output=True, text=True,
                                     timeout=900, check=False)
                if out.returncode != 0:
                    raise SystemExit(f"child failed on {name!r}:\n{out.stderr[-3000:]}")
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            Path(str(case["body"])).unlink()
            payload = int(case["payload"])  # type: ignore[call-overload]
            growth = [r["growth"] / MIB for r in rows]
            median = statistics.median(growth)
            spread = f"{median:.1f} [{min(growth):.1f}-{max(growth):.1f}] MiB"
            outcomes = sorted({r["outcome"] for r in rows})
            print(f"{name:<42}{payload / MIB:7.1f} MiB{rows[0]['body'] / MIB:7.1f} MiB{spread:>26}"
                  f"{median * MIB / payload:10.2f}x{statistics.median(r['seconds'] for r in rows):7.2f}s  "
                  f"{', '.join(outcomes)}", flush=True)
    finally:
        sim.terminate()
        sim.wait(10)


if __name__ == "__main__":
    main()
