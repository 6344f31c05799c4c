"""Serving test endpoints over real HTTP(S) on loopback: the server, the running handle, WSGI helpers.

Shared by the protocol simulators (XTA, FIT-Connect) and the benchmarks. The server is a threaded
werkzeug server with TCP_NODELAY on each accepted socket: without it Nagle's algorithm and the
client's delayed ACK add ~40 ms to every small request/response exchange. ``close_open_connections``
ends keep-alive connections on stop, so a stopped server really stops answering.

With an ``ssl_context`` each accepted socket is wrapped *without* handshaking in the accept loop: the
handshake happens on the connection's own thread (first read), so a client that never completes it
(or is refused for a missing/wrong client certificate) cannot stall the server.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import threading
from typing import Any, NoReturn, Self

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.wrappers import Request, Response


class QuietRequestHandler(WSGIRequestHandler):
    """No access log lines on stderr (werkzeug logs each request at INFO otherwise)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log_error(self, format: str, *args: Any) -> None:
        pass  # refused TLS handshakes and dropped connections are expected in tests


class NoDelayWSGIServer(ThreadedWSGIServer):
    """Threaded werkzeug server: TCP_NODELAY on each accepted socket; open sockets closed on stop."""

    def __init__(self, host: str, port: int, app: Any, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(host, port, app, handler=QuietRequestHandler)
        self.ssl_context = ssl_context  # werkzeug reads it (https scheme, SSL_CLIENT_CERT, SSL errors)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._open_lock:
            self._open.add(sock)
        return sock, addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            try:
                request.settimeout(30)
                request.do_handshake()
                request.settimeout(None)
            except (OSError, ValueError):
                return  # refused or broken handshake: nothing to serve
        super().finish_request(request, client_address)

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


def start_in_thread(server: NoDelayWSGIServer, name: str) -> threading.Thread:
    """Run ``server`` in a daemon thread named after ``name`` and its port; it accepts on return
    (the socket listens from construction on)."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name=f"{name}-{server.server_address[1]}", daemon=True)
    thread.start()
    return thread


class RunningServer:
    """A server serving in a background thread: ``base_url``, and ``stop`` (also on leaving a with-block)."""

    def __init__(self, server: NoDelayWSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        host, port = server.socket.getsockname()[:2]  # what server_bind stored as server_address
        scheme = "https" if server.ssl_context is not None else "http"
        self.base_url = f"{scheme}://{host}:{port}"

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


def serve_until_signal(running: RunningServer) -> None:
    """Block until SIGINT or SIGTERM, then stop ``running``: the foreground mode of the simulator CLIs."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    running.stop()


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> Response:
    """``value`` as a JSON response (non-ASCII kept as UTF-8, as the simulators' clients expect)."""
    return Response(json.dumps(value, ensure_ascii=False), status=status, headers=headers,
                    content_type=content_type)


class ConnectionDropped(Exception):
    """The connection was closed on purpose (fault injection); the WSGI app answers nothing more.

    Control flow inside a simulator's request handling, not an error of the hub: never leaves the app."""


def drop_connection(request: Request) -> NoReturn:
    """Close the TCP connection without an answer (the client sees a reset / remote disconnect)."""
    sock = request.environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    raise ConnectionDropped()
