"""SIGKILL the return-channel process around the XTA close, 20 times in a run of 500 replies: no
reply is lost (each one reaches hub.replies.<portal> at least once, always with its XTA MessageID
as the stable message_id), the mailbox ends empty, and duplicates did happen (proof that kills hit
the window between the broker's confirm and the close).

Two kinds of kill, alternating, each in a window made wide on purpose:
- before the close is done: while such a kill is due, a MsgBox close request is held for ``HOLD``
  seconds before the simulator sees it, and dropped if its client has gone meanwhile, as a slow
  network would do. The simulator's own injected latency cannot do this: it delays the *answer*,
  after the close is done.
- after the close is done, before its answer arrived: that injected latency (``InjectedFault``
  on ``close``); a poller that closed before publishing would lose the reply here.
"""

from __future__ import annotations

import io
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pika

from hub.cli_replies import declare_topology
from hub.config import load_config
from hub.topology import REPLIES_PARKED, replies_queue
from tests.integration.return_channel_support import (
    PORTAL_ID,
    REPLY_TYPES,
    in_portal_mailbox,
    reply,
    send,
    take_all,
    write_config,
)
from tests.integration.test_xta_support import sim_config
from tests.reliability.support import ROOT, STARTED
from transport.xta.http_server import NoDelayWSGIServer
from transport.xta.simulator import InjectedFault, RunningSimulator, SimulatorConfig, XtaSimulator

REPLIES = 500
KILLS = 20
HOLD = 0.3  # seconds a close request is held while a kill is due
QUEUE = replies_queue(PORTAL_ID)


class HeldCloses:
    """WSGI middleware in front of the simulator: while ``hold`` > 0, a MsgBox close request waits
    ``hold`` seconds before the simulator sees it, and is dropped unprocessed if its client's
    connection has closed by then (the client was killed)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.hold = 0.0
        self.dropped = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        hold = self.hold
        if hold and environ.get("REQUEST_METHOD") == "POST":
            data = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(data)
            if b"MsgBoxCloseRequest" in data:
                time.sleep(hold)
                if _peer_gone(environ.get("werkzeug.socket")):
                    self.dropped += 1
                    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                    return [b"client gone\n"]
        return self.app(environ, start_response)


def _peer_gone(sock: socket.socket | None) -> bool:
    if sock is None:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def serve_with_held_closes(config: SimulatorConfig) -> tuple[RunningSimulator, HeldCloses]:
    simulator = XtaSimulator(config)
    middleware = HeldCloses(simulator)
    server = NoDelayWSGIServer("127.0.0.1", 0, middleware)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    return RunningSimulator(simulator, server, thread), middleware


class BrokerCount:
    """Published + parked replies in the broker, read on one connection kept open."""

    def __init__(self, url: str) -> None:
        self._connection = pika.BlockingConnection(pika.URLParameters(url))
        self._channel = self._connection.channel()

    def __call__(self) -> int:
        return sum(int(self._channel.queue_declare(q, passive=True).method.message_count)
                   for q in (QUEUE, REPLIES_PARKED))

    def close(self) -> None:
        self._connection.close()


class RepliesProcess:
    """`hub replies` as a real process (restarted after each kill), logging into one file."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hub", "--config", str(self.config_path), "replies", "--http-port", "0"],
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        STARTED.append(self.proc)

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"hub replies exited with {self.proc.returncode}:\n{self.log_tail()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def _above(read: Callable[[], int], floor: int) -> Callable[[], bool]:
    return lambda: read() > floor


def _below(read: Callable[[], int], ceiling: int) -> Callable[[], bool]:
    return lambda: read() < ceiling


def _until(predicate: Callable[[], bool], timeout: float, what: str, tick: Callable[[], None],
           interval: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        tick()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def test_sigkill_between_publish_and_close_loses_no_reply(broker_url, pki, tmp_path) -> None:
    started = time.monotonic()
    sim, held = serve_with_held_closes(sim_config(pki))
    count: BrokerCount | None = None
    try:
        ids = send(pki, sim.url, [reply(REPLY_TYPES[i % 3], seed=1000 + i, ref=f"OZG-ANTRAG-{i:08d}")
                                  for i in range(REPLIES)])
        assert len(set(ids)) == REPLIES and len(in_portal_mailbox(sim)) == REPLIES
        path = write_config(tmp_path, broker_url, pki, sim.url, poll_interval=0.2, batch=50, heartbeat=5)
        declare_topology(load_config(path, environ={}))  # so the test can count before the first start
        count = BrokerCount(broker_url)
        process = RepliesProcess(path, tmp_path / "replies.log")
        rng = random.Random(9)
        for kill in range(KILLS):
            process.start()
            # let it work for a while (spreads the kills over the run) ...
            target = count() + rng.randint(3, 15)
            _until(_above(count, target - 1), 60, "replies to flow", process.check_alive, interval=0.02)
            if kill % 2 == 0:
                # ... then hold the closes and kill right after the next reply reached the broker:
                # published, not closed (a duplicate on restart)
                held.hold = HOLD
                before = count()
                _until(_above(count, before), 30, "the next reply in the broker", process.check_alive)
                process.kill()
                held.hold = 0.0
            else:
                # ... or delay the answer to a close and kill right after the close was done: closed
                # but not acknowledged (nothing may be lost: it was published before the close)
                waiting = len(in_portal_mailbox(sim))
                sim.inject(InjectedFault(operation="close", latency=HOLD, count=3))
                _until(_below(lambda: len(in_portal_mailbox(sim)), waiting), 30, "the next close", process.check_alive)
                process.kill()
        assert in_portal_mailbox(sim), "the mailbox was drained before the last kill: more replies needed"
        process.start()
        _until(lambda: not in_portal_mailbox(sim), 120, "the mailbox to be empty", process.check_alive, interval=0.2)
        assert process.terminate() == 0, process.log_tail()
        total = count()
    finally:
        if count is not None:
            count.close()
        sim.stop()

    published = take_all(broker_url, QUEUE, total)
    parked = take_all(broker_url, REPLIES_PARKED, 0, timeout=5)
    assert not parked, [p.headers.get("x-hub-reason") for p, _b in parked]
    assert len(published) == total
    seen = Counter(props.message_id for props, _body in published)
    lost = set(ids) - set(seen)
    assert not lost, f"{len(lost)} replies lost"
    assert set(seen) == set(ids)  # nothing but the loaded replies, each under its XTA MessageID
    bodies: dict[str, bytes] = {}
    for props, body in published:
        assert props.headers["x-hub-xta-message-id"] == props.message_id
        assert bodies.setdefault(props.message_id, body) == body  # a duplicate is the same reply
    duplicates = sum(n - 1 for n in seen.values())
    print(f"\n{REPLIES} replies, {KILLS} kills: {duplicates} duplicates, {held.dropped} closes dropped with "
          f"their killed client, {time.monotonic() - started:.0f}s")
    assert duplicates > 0, "no kill landed between publish and close"
    assert held.dropped > 0
