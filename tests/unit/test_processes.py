"""hub/processes.py, what `hub demo` and `hub stack` rely on to never leave a child behind: a child
dies with its parent even when the parent is SIGKILLed, a child that ignores SIGTERM is killed, the
waits report a dead child with its log line, give up at their deadline and end at once on a stop
request."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hub.processes import (
    ProcessError,
    StartInterrupted,
    free_port,
    port_taken,
    spawn,
    stop_all,
    wait_for_exit,
    wait_for_http,
)

PY = sys.executable


def _gone(pid: int) -> bool:
    """Ended: no such process, or a zombie nobody has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _eventually(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def http_200() -> Iterator[str]:
    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ready"
    finally:
        server.shutdown()
        server.server_close()


def test_a_child_dies_with_its_parent_even_on_sigkill(tmp_path: Path) -> None:
    parent_code = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from hub.processes import spawn\n"
        f"p = spawn(['sleep', '600'], env=os.environ, log=Path({str(tmp_path / 'child.log')!r}))\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(600)\n")
    parent = subprocess.Popen([PY, "-c", parent_code], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    child = 0
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert not _gone(child)
        parent.kill()  # no handler runs: only the kernel's parent-death signal can end the child
        parent.wait(timeout=30)
        assert _eventually(lambda: _gone(child)), f"child {child} outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child and not _gone(child):
            os.kill(child, signal.SIGKILL)


def test_stop_all_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(600)"
    stubborn = spawn([PY, "-c", code], env=os.environ, log=log)
    polite = spawn(["sleep", "600"], env=os.environ, log=tmp_path / "polite.log")
    try:
        assert _eventually(lambda: "ready" in log.read_text())
        stop_all([stubborn, polite], timeout=2)
        assert polite.returncode == -signal.SIGTERM
        assert stubborn.returncode == -signal.SIGKILL
    finally:
        for p in (stubborn, polite):
            if p.poll() is None:
                p.kill()


def test_wait_for_http_names_a_child_that_died_and_its_last_log_line(tmp_path: Path) -> None:
    log = tmp_path / "dying.log"
    dying = spawn([PY, "-c", "print('cannot bind: address in use'); raise SystemExit(3)"], env=os.environ, log=log)
    with pytest.raises(ProcessError) as caught:
        wait_for_http(f"http://127.0.0.1:{free_port()}/", 60, process=dying, name="worker-x", log=log)
    assert "worker-x exited with code 3 during start-up" in str(caught.value)
    assert "cannot bind: address in use" in str(caught.value)


def test_wait_for_http_returns_on_200_and_gives_up_at_its_deadline(http_200: str) -> None:
    wait_for_http(http_200, 30)
    started = time.monotonic()
    with pytest.raises(ProcessError, match="not ready at .* within 1s"):
        wait_for_http(f"http://127.0.0.1:{free_port()}/", 1, name="nothing")
    assert time.monotonic() - started < 30


def test_a_stop_request_ends_the_waits_at_once(tmp_path: Path) -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    with pytest.raises(StartInterrupted):
        wait_for_http(f"http://127.0.0.1:{free_port()}/", 600, stop=stop)
    assert time.monotonic() - started < 60  # not the 600 s deadline
    sleeper = spawn(["sleep", "600"], env=os.environ, log=tmp_path / "sleep.log")
    try:
        with pytest.raises(StartInterrupted):
            wait_for_exit(sleeper, 600, name="sleep", stop=stop)
    finally:
        stop_all([sleeper])


def test_wait_for_exit_stops_a_run_once_child_past_its_deadline(tmp_path: Path) -> None:
    done = spawn([PY, "-c", "raise SystemExit(4)"], env=os.environ, log=tmp_path / "done.log")
    assert wait_for_exit(done, 60, name="quick") == 4
    hanging = spawn(["sleep", "600"], env=os.environ, log=tmp_path / "hang.log")
    try:
        with pytest.raises(ProcessError, match="hanging did not finish within 1s"):
            wait_for_exit(hanging, 1, name="hanging")
        assert hanging.poll() is not None, "the hanging child was left running"
    finally:
        if hanging.poll() is None:
            hanging.kill()


def test_free_port_is_free_and_a_listening_port_is_taken() -> None:
    port = free_port()
    assert not port_taken(port)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        assert port_taken(held.getsockname()[1])
