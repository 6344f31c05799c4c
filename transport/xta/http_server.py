"""A threaded werkzeug WSGI server for test endpoints: TCP_NODELAY, quiet, closable.

Without TCP_NODELAY on the accepted sockets, Nagle's algorithm and the client's delayed ACK add
~40 ms to every small request/response exchange. ``close_open_connections`` ends keep-alive
connections on stop, so a stopped server really stops answering.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler


class QuietRequestHandler(WSGIRequestHandler):
    """No access log lines on stderr (werkzeug logs each request at INFO otherwise)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class NoDelayWSGIServer(ThreadedWSGIServer):
    """Threaded werkzeug server: TCP_NODELAY on each accepted socket; open sockets closed on stop."""

    def __init__(self, host: str, port: int, app: Any) -> None:
        super().__init__(host, port, app, handler=QuietRequestHandler)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
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
