"""The far side of a benchmark run, in a process of its own: the XTA simulator or a canned-answer
endpoint, plus a bare POST sink for the baseline; it timestamps what arrives.

    python -m bench.harness.endpoint --mode simulator --config hub.toml --port P [--record answers.json]
    python -m bench.harness.endpoint --mode canned --answers answers.json --port P

The canned endpoint replays answers recorded from the simulator (``--record``) for
checkAccountActive, lookupService, createMessageId, sendMessage and getTransportReport. Its only
work per call is reading the body, finding the wsa:Action and, for createMessageId and
getTransportReport, swapping in a fresh or the asked-for XTA MessageID, so its own CPU cost stays
small. ``POST /bare`` answers a fixed empty SOAP body (the baseline's endpoint, same server kind).
Both modes serve with keep-alive connections (bench/harness/keepalive.py), as a production XTA
server does.
Control: ``GET /_bench/arrivals`` (arrival times, epoch seconds, of sendMessage / bare POSTs) and
``POST /_bench/reset``.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

RECORDED = ("checkAccountActive", "lookupService", "createMessageId", "sendMessage", "getTransportReport")
XTA_ID = re.compile(rb"urn:de:xta:messageid:[^<>\s\"']+")
BARE_ANSWER = (b'<?xml version="1.0" encoding="utf-8"?><e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope">'
               b"<e:Body/></e:Envelope>")

Start = Callable[[str, list[tuple[str, str]]], Any]


class Arrivals:
    """Arrival times of deliveries (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: list[float] = []
        self.calls: dict[str, int] = {}

    def add(self) -> None:
        now = time.time()
        with self._lock:
            self._times.append(now)

    def call(self, operation: str | None) -> None:
        with self._lock:
            self.calls[str(operation)] = self.calls.get(str(operation), 0) + 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"arrived": len(self._times), **self.calls}

    def snapshot(self) -> list[float]:
        with self._lock:
            return list(self._times)

    def reset(self) -> None:
        with self._lock:
            self._times.clear()
            self.calls.clear()


def _read(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    chunks, left = [], length
    while left > 0:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _answer(start: Start, status: int, ctype: str, body: bytes) -> list[bytes]:
    start(f"{status} {'OK' if status == 200 else 'Answer'}", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def operation_of(data: bytes, actions: dict[str, str]) -> str | None:
    """The XTA operation named by the request's wsa:Action (searched in the first 32 KB only)."""
    head = data[:32768]
    found = None
    for action, operation in actions.items():
        if action.encode() in head and (found is None or len(action) > len(found[0])):
            found = (action, operation)  # the longest match: one action URI may prefix another
    return found[1] if found else None


class Canned:
    """WSGI app replaying recorded answers (see the module docstring)."""

    def __init__(self, answers: dict[str, Any], arrivals: Arrivals, actions: dict[str, str]) -> None:
        self.arrivals = arrivals
        self.actions = actions
        self.answers = {op: (a["status"], a["content_type"], base64.b64decode(a["body"]), a.get("message_id", "").encode())
                        for op, a in answers.items()}
        self.prefix = b"urn:de:xta:messageid:bench:"

    def __call__(self, environ: dict[str, Any], start: Start) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_bench/"):
            return _control(environ, start, self.arrivals)
        data = _read(environ)
        if path == "/bare":
            self.arrivals.add()
            return _answer(start, 200, "application/soap+xml; charset=utf-8", BARE_ANSWER)
        operation = operation_of(data, self.actions)
        if operation not in self.answers:
            return _answer(start, 500, "text/plain", f"no canned answer for {operation}".encode())
        self.arrivals.call(operation)
        status, ctype, body, recorded_id = self.answers[operation]
        if operation == "createMessageId" and recorded_id:
            body = body.replace(recorded_id, self.prefix + str(uuid.uuid4()).encode())
        elif operation == "getTransportReport" and recorded_id:
            asked = XTA_ID.search(data)
            if asked:
                body = body.replace(recorded_id, asked.group(0))
        elif operation == "sendMessage":
            self.arrivals.add()
        return _answer(start, status, ctype, body)


def _control(environ: dict[str, Any], start: Start, arrivals: Arrivals) -> list[bytes]:
    if environ["PATH_INFO"] == "/_bench/reset":
        arrivals.reset()
        body = b"{}"
    elif environ["PATH_INFO"] == "/_bench/count":
        body = json.dumps(arrivals.counts()).encode()
    else:
        body = json.dumps({"times": arrivals.snapshot()}).encode()
    start("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class Recorder:
    """Observer of the simulator: the last successful answer per operation, written to ``path``."""

    def __init__(self, path: Path | None, arrivals: Arrivals) -> None:
        self.path = path
        self.arrivals = arrivals
        self.answers: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def __call__(self, exchange: Any) -> None:
        self.arrivals.call(exchange.operation)
        if exchange.operation == "sendMessage" and exchange.status == 200:
            self.arrivals.add()
        if (self.path is None or exchange.operation not in RECORDED or exchange.status != 200
                or exchange.operation in self.answers):
            return  # the first successful answer per operation (reports are final at once: report delay 0)
        message_id = b""
        if exchange.operation == "createMessageId":
            found = XTA_ID.search(exchange.response)
            message_id = found.group(0) if found else b""
        elif exchange.operation == "getTransportReport":
            found = XTA_ID.search(exchange.request)
            message_id = found.group(0) if found else b""
        with self.lock:
            self.answers[exchange.operation] = {
                "status": exchange.status, "content_type": exchange.response_content_type,
                "body": base64.b64encode(exchange.response).decode(), "message_id": message_id.decode()}
            self.path.write_text(json.dumps(self.answers, indent=1))


class WithControl:
    """The simulator's WSGI app plus the /_bench/ control paths and the bare POST sink."""

    def __init__(self, app: Any, arrivals: Arrivals) -> None:
        self.app = app
        self.arrivals = arrivals

    def __call__(self, environ: dict[str, Any], start: Start) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/_bench/reset":
            self.app.reset()  # the simulator keeps every message in memory
        if path.startswith("/_bench/"):
            return _control(environ, start, self.arrivals)
        if path == "/bare":
            _read(environ)
            self.arrivals.add()
            return _answer(start, 200, "application/soap+xml; charset=utf-8", BARE_ANSWER)
        result: Iterable[bytes] = self.app(environ, start)
        return result


def _simulator_app(config_path: Path, record: Path | None, arrivals: Arrivals) -> Any:
    from hub.config import load_config
    from hub.simulation import simulator_argv
    from transport.xta.simulator import XtaSimulator
    from transport.xta.simulator import cli as simulator_cli

    config = load_config(config_path)
    args = simulator_cli.parser().parse_args(simulator_argv(config, port=0, extra=[
        "--max-container-bytes", str(48 * 1024 * 1024)]))
    return WithControl(XtaSimulator(simulator_cli.build_config(args), observer=Recorder(record, arrivals)), arrivals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mode", choices=("simulator", "canned"), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", type=Path, help="hub config (simulator mode)")
    parser.add_argument("--record", type=Path, help="simulator mode: write the canned answers here")
    parser.add_argument("--answers", type=Path, help="canned mode: the recorded answers")
    args = parser.parse_args()
    from bench.harness.keepalive import KeepAliveWSGIServer
    from transport.xta.ns import ACTIONS

    arrivals = Arrivals()
    if args.mode == "canned":
        app: Any = Canned(json.loads(args.answers.read_text()), arrivals, dict(ACTIONS))
    else:
        app = _simulator_app(args.config, args.record, arrivals)
    server = KeepAliveWSGIServer("127.0.0.1", args.port, app)  # HTTP/1.1 keep-alive, as an XTA server
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"listening on http://127.0.0.1:{args.port}", flush=True)
    server.serve_forever(poll_interval=0.1)


if __name__ == "__main__":
    main()
