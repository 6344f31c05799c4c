"""SIGKILL the return-channel process around the XTA close, 20 times in a run of 500 replies: no
reply is lost (each one reaches hub.replies.<portal> at least once, always with its XTA MessageID
as the stable message_id), the mailbox ends empty, and every kill that landed between the publish
and the close gave a duplicate of exactly the reply whose close it cut off.

Two kinds of kill, each in a window made wide on purpose:
- in the publish -> close window (15 of the 20): the next MsgBox close request is held before the
  simulator sees it; the test kills the process while it is held, and the held close is dropped
  unprocessed once its client's connection is gone, as a slow network would do. The test knows
  which kills landed in the window (a close was held and dropped with its killed client) and for
  which reply (the close request's LastMsgReceived). At least 10 must land, and each of those
  replies must reach the portal's queue at least once more than its close was dropped: it was
  published before its close (else the cut-off close would leave it published only once, on the
  restart), and it was not lost. The simulator's own injected latency cannot do this: it delays
  the *answer*, after the close is done.
- after the close is done, before its answer arrived (5 of the 20): that injected latency
  (``InjectedFault`` on ``close``); a poller that closed before publishing would lose the reply here.

What a process test cannot see is *when* the broker confirmed: that the poller waits for the
confirm before it closes (and closes nothing that was not confirmed) is proven by the unit tests
(tests/unit/test_replies.py: test_publish_then_event_then_commit_in_that_order,
test_no_commit_when_the_publish_is_not_confirmed, test_no_commit_when_parking_is_not_confirmed)
and tests/integration/test_return_channel.py (nothing closed while the broker cannot take it).
"""

from __future__ import annotations

import io
import os
import random
import re
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
from transport.http_server import NoDelayWSGIServer
from transport.xta.simulator import InjectedFault, RunningSimulator, SimulatorConfig, XtaSimulator

REPLIES = 500
KILLS = 20
IN_WINDOW_KILLS = 15  # kills aimed at the publish -> close window (the other 5: after the close)
HOLD_MAX = 20.0  # seconds a close may be held: the test kills its client long before that
ANSWER_DELAY = 0.3  # seconds the answer to a close is delayed while a kill after the close is due
QUEUE = replies_queue(PORTAL_ID)
_LAST_RECEIVED = re.compile(rb"LastMsgReceived[^>]*>([^<]+)<")


class HeldCloses:
    """WSGI middleware in front of the simulator: once ``arm()`` ed, the next MsgBox close request
    is held before the simulator sees it (``holding`` is set), and dropped unprocessed as soon as its
    client's connection has closed (the client was killed), or passed on after ``HOLD_MAX``;
    ``released`` is set either way. ``dropped`` lists the XTA MessageIDs of every dropped close."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.armed = False
        self.holding = threading.Event()
        self.released = threading.Event()
        self.dropped: list[str] = []

    def arm(self) -> None:
        self.holding.clear()
        self.released.clear()
        self.armed = True

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self.armed and environ.get("REQUEST_METHOD") == "POST":
            data = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(data)
            if b"MsgBoxCloseRequest" in data and self.armed:
                self.armed = False
                ids = [m.decode().strip() for m in _LAST_RECEIVED.findall(data)]
                self.holding.set()
                try:
                    if _wait_until_gone(environ.get("werkzeug.socket"), HOLD_MAX):
                        self.dropped.extend(ids)
                        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                        return [b"client gone\n"]
                finally:
                    self.released.set()
        return self.app(environ, start_response)


def _wait_until_gone(sock: socket.socket | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _peer_gone(sock):
            return True
        time.sleep(0.01)
    return False


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
        in_window = 0
        for kill in range(KILLS):
            process.start()
            # let it work for a while (spreads the kills over the run) ...
            target = count() + rng.randint(3, 15)
            _until(_above(count, target - 1), 60, "replies to flow", process.check_alive, interval=0.02)
            if kill % 4 != 3:
                # ... then hold the next close and kill while it is held: published, not closed (a
                # duplicate on restart)
                dropped = len(held.dropped)
                held.arm()
                _until(held.holding.is_set, 60, "a close to hold", process.check_alive)
                process.kill()
                _until(held.released.is_set, HOLD_MAX + 30, "the held close to end", lambda: None)
                in_window += len(held.dropped) > dropped
            else:
                # ... or delay the answer to a close and kill right after the close was done: closed
                # but not acknowledged (nothing may be lost: it was published before the close)
                waiting = len(in_portal_mailbox(sim))
                sim.inject(InjectedFault(operation="close", latency=ANSWER_DELAY, count=3))
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
    print(f"\n{REPLIES} replies, {KILLS} kills: {in_window} in the publish -> close window, {duplicates} duplicates, "
          f"{len(held.dropped)} closes dropped with their killed client, {time.monotonic() - started:.0f}s")
    assert sum(1 for k in range(KILLS) if k % 4 != 3) == IN_WINDOW_KILLS
    assert in_window >= 10, f"only {in_window} of {IN_WINDOW_KILLS} kills landed between publish and close"
    assert len(held.dropped) == in_window  # one reply per close
    assert duplicates >= in_window
    cut_off = Counter(held.dropped)
    short = {i: (seen[i], n) for i, n in cut_off.items() if seen[i] < n + 1}
    assert not short, f"replies whose close was cut off but that were not published again: {short}"
