"""Child processes of `hub demo` and `hub stack`: start, wait until ready, stop.

Both commands start hub processes and Prometheus as children and must never leave them behind:
every child gets SIGTERM when the starting thread dies (PR_SET_PDEATHSIG, so even a SIGKILL of the
parent ends them), ``stop_all`` ends them with SIGTERM then SIGKILL, and the waits notice a child
that died, a deadline, or a stop request (Ctrl-C during start-up) instead of sleeping through it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from hub.errors import HubError

HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class ProcessError(HubError):
    """A child process died during start-up or did not become ready in time."""


class StartInterrupted(HubError):
    """A stop was requested (SIGINT, SIGTERM, SIGHUP) while the children were starting."""


def free_port(host: str = HOST) -> int:
    """A port nobody listens on right now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_taken(port: int, host: str = HOST) -> bool:
    """Whether ``port`` cannot be bound on ``host`` (someone listens there)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url`` answers 200 now."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except OSError:  # URLError and HTTPError are OSErrors
        return False


def last_line(log: Path | None) -> str:
    """The last non-empty line of a child's log, for an error message."""
    if log is None:
        return "(no log)"
    try:
        lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A preexec_fn: SIGTERM this child when the thread that started it dies (Linux only)."""

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork: the child only calls it
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def spawn(argv: list[str], *, env: Mapping[str, str], log: Path, cwd: Path | None = None,
          new_session: bool = False) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr appended to ``log``; it is SIGTERMed if this thread dies.
    ``new_session`` keeps a terminal's Ctrl-C from reaching it: the parent stops it in order."""
    log.parent.mkdir(parents=True, exist_ok=True)
    preexec = _die_with_parent(os.getpid()) if sys.platform.startswith("linux") else None
    with log.open("ab") as handle:
        return subprocess.Popen(argv, env=dict(env), stdout=handle, stderr=subprocess.STDOUT, cwd=cwd,
                                # preexec only calls prctl/getppid/kill: no lock another thread may hold
                                start_new_session=new_session, preexec_fn=preexec)  # noqa: PLW1509


def _sleep(stop: threading.Event | None, seconds: float) -> None:
    if stop is None:
        time.sleep(seconds)
    elif stop.wait(seconds):
        raise StartInterrupted("stop requested during start-up")


def wait_for_http(url: str, timeout: float, *, process: subprocess.Popen[bytes] | None = None,
                  name: str | None = None, log: Path | None = None, stop: threading.Event | None = None) -> None:
    """Return once ``url`` answers 200; raise ProcessError if ``process`` exits first or ``timeout``
    passes, StartInterrupted as soon as ``stop`` is set."""
    what = name or f"process for {url}"
    where = f" (log: {log})" if log is not None else ""
    deadline = time.monotonic() + timeout
    while True:
        if stop is not None and stop.is_set():
            raise StartInterrupted("stop requested during start-up")
        if process is not None and process.poll() is not None:
            raise ProcessError(f"{what} exited with code {process.returncode} during start-up"
                               + (f" (log: {log}: {last_line(log)})" if log is not None else ""))
        if http_ok(url):
            return
        if time.monotonic() >= deadline:
            raise ProcessError(f"{what} not ready at {url} within {timeout:.0f}s{where}")
        _sleep(stop, 0.2)


def wait_for_exit(process: subprocess.Popen[bytes], timeout: float, *, name: str, log: Path | None = None,
                  stop: threading.Event | None = None) -> int:
    """The exit code of a run-once child; ProcessError if it is still running after ``timeout``
    (it is killed then), StartInterrupted as soon as ``stop`` is set."""
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if time.monotonic() >= deadline:
            stop_all([process], timeout=5)
            raise ProcessError(f"{name} did not finish within {timeout:.0f}s"
                               + (f" (log: {log}: {last_line(log)})" if log is not None else ""))
        _sleep(stop, 0.2)
    return process.returncode


def stop_all(processes: Iterable[subprocess.Popen[bytes]], timeout: float = 20.0) -> None:
    """SIGTERM every process still running, wait up to ``timeout`` in all, SIGKILL what is left."""
    procs = list(processes)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
