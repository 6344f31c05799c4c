"""Serve the FIT-Connect simulator over real HTTP on loopback, in a background thread.

A threaded werkzeug server with TCP_NODELAY on each accepted socket (Nagle + delayed ACK would add
~40 ms per small exchange) that closes open keep-alive connections on stop, so a stopped simulator
really stops answering.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any, Self

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from transport.fitconnect.simulator.app import FitConnectSimulator
from transport.fitconnect.simulator.conformance import Violation
from transport.fitconnect.simulator.faults import Faults
from transport.fitconnect.simulator.settings import FitConnectSimulatorSettings
from transport.fitconnect.simulator.store import Submission, SubmissionStore


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log_error(self, format: str, *args: Any) -> None:
        pass  # dropped connections are deliberate


class _Server(ThreadedWSGIServer):
    def __init__(self, host: str, port: int, app: Any) -> None:
        super().__init__(host, port, app, handler=_QuietHandler)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._open_lock:
            self._open.add(sock)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        with self._open_lock:
            open_sockets, self._open = list(self._open), set()
        for sock in open_sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class RunningFitConnectSimulator:
    """A simulator serving in a background thread: its URLs, credentials, state and controls."""

    def __init__(self, app: FitConnectSimulator, server: _Server, thread: threading.Thread) -> None:
        self.app = app
        self._server, self._thread = server, thread
        host, port = server.socket.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self.token_url = f"{self.url}/token"
        app.service.base_url = self.url

    @property
    def trust_anchor(self) -> Path:
        return self.app.service.pki.trust_anchor

    @property
    def client_id(self) -> str:
        return self.app.settings.client_id

    @property
    def client_secret(self) -> str:
        return self.app.settings.client_secret

    @property
    def store(self) -> SubmissionStore:
        return self.app.store

    @property
    def faults(self) -> Faults:
        return self.app.faults

    @property
    def violations(self) -> list[Violation]:
        return self.app.violations

    def signature_key_path(self, destination_id: str) -> Path:
        """PEM of the destination's private signature key: to sign receiver SETs in tests."""
        return self.app.service.keys[destination_id].signature.key_path

    def receiver_accept(self, submission_id: str) -> Submission:
        return self.app.receiver_accept(submission_id)

    def receiver_reject(self, submission_id: str, problems: list[dict[str, Any]]) -> Submission:
        return self.app.receiver_reject(submission_id, problems)

    def invalidate_tokens(self) -> None:
        self.app.invalidate_tokens()

    def stop(self) -> None:
        """Stop accepting, close open keep-alive connections, release the port."""
        self._server.shutdown()
        self._server.close_open_connections()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve(settings: FitConnectSimulatorSettings, *, app: FitConnectSimulator | None = None) -> RunningFitConnectSimulator:
    """Start the simulator on ``settings.host:settings.port`` (0 = a free port); returns once it accepts.

    Passing the ``app`` of a stopped simulator serves it again with all its state (a restart)."""
    app = app or FitConnectSimulator(settings)
    server = _Server(settings.host, settings.port, app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name=f"fit-connect-simulator-{server.server_address[1]}", daemon=True)
    thread.start()
    return RunningFitConnectSimulator(app, server, thread)
