"""CPU per XTA call: the client's HTTP through ``requests`` (before) vs the urllib3 pool (after).

    .venv/bin/python bench/bench_http.py [--calls N] [--rounds R] [--json-only]

The far side is a canned-answer loopback server in its own process (its CPU is not counted): it
reads each request and answers a fixed SOAP 1.2 envelope, keeping connections alive. In this
process, one ``XtaClient`` per variant calls createMessageId, sendMessage (50 KB container, inline)
and getTransportReport; "requests" is the same client with ``session_factory=default_session`` (the
HTTP path as it was: a ``requests.Session`` per thread), "urllib3" is the default pool. Each round
times N calls of one operation per variant, variants interleaved (A B A B ...), and reports the
process CPU time (``time.process_time``) per call: medians over >= 5 rounds, after a warm-up round.
Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import MIN_RUNS, interleaved, load_note

_SERVER = r'''
import socket, sys, threading
MID = b'<wsa:MessageID xmlns:wsa="http://www.w3.org/2005/08/addressing">urn:de:xta:messageid:bench:1</wsa:MessageID>'
def answer(body):
    env = (b'<?xml version="1.0" encoding="utf-8"?><e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope">'
           b"<e:Body>" + body + b"</e:Body></e:Envelope>")
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml; charset=utf-8\r\nContent-Length: %d\r\n\r\n"
            % len(env)) + env
ANSWERS = {b"CreateMessageID": answer(MID), b"GetTransportReport": answer(sys.argv[1].encode()), b"": answer(b"")}
def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = conn.makefile("rb")
    while True:
        length = 0
        while True:
            line = reader.readline()
            if not line:
                return
            if line == b"\r\n":
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = reader.read(length)
        head = body[:3000]
        key = next((k for k in (b"CreateMessageID", b"GetTransportReport") if k in head), b"")
        conn.sendall(ANSWERS[key])
sock = socket.create_server(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
while True:
    conn, _ = sock.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per operation per round")
    parser.add_argument("--rounds", type=int, default=7, help=f"timed rounds (>= {MIN_RUNS})")
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    if args.rounds < MIN_RUNS:
        parser.error(f"--rounds must be at least {MIN_RUNS}")

    from transport.content import Content, ContentPart
    from transport.xta.client import XtaClient, XtaEndpoint, default_session
    from transport.xta.container import build_content_container, generic_container
    from transport.xta.metadata import BusinessScenario, MessageMetaData, MessageType, Party

    author = Party("alp:000001")
    md = MessageMetaData(author=author, reader=Party("azr:000100"), message_id="urn:de:xta:messageid:bench:1",
                         service="xauslaender1211OZGPORTALABH", business_scenario=BusinessScenario("XAUSLAENDER_DATA"),
                         message_type=MessageType("OZG.Antrag.130101", "urn:l", "1", "urn:p"))
    server = subprocess.Popen([sys.executable, "-c", _SERVER, _transport_report_body(md)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{int(server.stdout.readline())}/xta"
        container = generic_container(build_content_container(
            Content(ContentPart(os.urandom(50_000), "application/pdf", "anlage.pdf"))))
        clients = {"requests": XtaClient(XtaEndpoint(url, timeout=60),
                                         session_factory=lambda: default_session(url)),
                   "urllib3": XtaClient(XtaEndpoint(url, timeout=60))}
        operations: dict[str, Callable[[XtaClient], object]] = {
            "createMessageId": lambda c: c.create_message_id(author),
            "sendMessage 50 KB": lambda c: c.send_message(md, container),
            "getTransportReport": lambda c: c.get_transport_report(author, md.message_id),
        }
        rows = []
        for name, op in operations.items():
            for client in clients.values():
                op(client)  # connect, check the answer parses

            def cpu(client: XtaClient, op: Callable[[XtaClient], object] = op) -> Callable[[], float]:
                def run() -> float:
                    start = time.process_time()
                    for _ in range(args.calls):
                        op(client)
                    return (time.process_time() - start) / args.calls
                return run

            spreads = interleaved({variant: cpu(client) for variant, client in clients.items()}, args.rounds)
            old, new = spreads["requests"].median, spreads["urllib3"].median
            rows.append({"operation": name, "requests_cpu_ms": round(old * 1000, 4),
                         "urllib3_cpu_ms": round(new * 1000, 4), "saved_cpu_ms": round((old - new) * 1000, 4),
                         "ratio": round(new / old, 3),
                         "requests_range_ms": [round(spreads["requests"].minimum * 1000, 4),
                                               round(spreads["requests"].maximum * 1000, 4)],
                         "urllib3_range_ms": [round(spreads["urllib3"].minimum * 1000, 4),
                                              round(spreads["urllib3"].maximum * 1000, 4)]})
        for client in clients.values():
            client.close()
    finally:
        server.kill()
        server.wait(10)
    machine = {"nproc": os.cpu_count(), "cpu": _cpu_model(), "python": platform.python_version(),
               "load": load_note(), "calls_per_round": args.calls, "rounds": args.rounds}
    if not args.json_only:
        print(f"CPU ms per XTA call, client process only; medians of {args.rounds} rounds x {args.calls} calls, "
              f"variants interleaved; {machine['load']}")
        print(f"{'operation':<22}{'requests':>12}{'urllib3':>12}{'saved':>10}{'new/old':>9}")
        for row in rows:
            print(f"{row['operation']:<22}{row['requests_cpu_ms']:>12.3f}{row['urllib3_cpu_ms']:>12.3f}"
                  f"{row['saved_cpu_ms']:>10.3f}{row['ratio']:>9.2f}")
    print(json.dumps({"bench": "http", "machine": machine, "rows": rows}))


def _transport_report_body(md: object) -> str:
    """A real TransportReport (green, one info record) as the client parses it."""
    from lxml import etree

    from transport.xta import wire
    from transport.xta.metadata import MessageMetaData, ReportRecord, TransportReport
    from transport.xta.ns import ERROR_CODE_LIST_URI, ERROR_CODE_LIST_VERSION

    assert isinstance(md, MessageMetaData)
    info = ReportRecord("2026-01-01T00:00:00Z", "DELIVERED", ERROR_CODE_LIST_URI, ERROR_CODE_LIST_VERSION, "delivered")
    report = TransportReport(metadata=md, report_time="2026-01-01T00:00:00Z", server_identity="bench", status=1,
                             infos=(info,))
    return etree.tostring(wire.render_transport_report(report)).decode()


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()
