"""A threaded werkzeug WSGI server for test endpoints: TCP_NODELAY, quiet, closable, optional TLS.

Without TCP_NODELAY on the accepted sockets, Nagle's algorithm and the client's delayed ACK add
~40 ms to every small request/response exchange. ``close_open_connections`` ends keep-alive
connections on stop, so a stopped server really stops answering.

With an ``ssl_context`` each accepted socket is wrapped *without* handshaking in the accept loop: the
handshake happens on the connection's own thread (first read), so a client that never completes it
(or is refused for a missing/wrong client certificate) cannot stall the server.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler


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
