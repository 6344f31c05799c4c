"""A small threaded WSGI server that keeps HTTP/1.1 connections alive, for the benchmark endpoints.

The test endpoints (transport/http_server.py) run on werkzeug's development server, which
answers every request with ``Connection: close``: every XTA call then pays a TCP connect, a server
thread and a close, three times per application for the hub (createMessageId, sendMessage,
getTransportReport) and once for the bare path. A production XTA server keeps connections alive,
and the hub's client pools them (transport/xta/httpio.py), so the benchmark endpoint does too.

Requests must carry ``Content-Length`` (the hub's XTA client and ``http.client`` send it); a chunked
request is answered 411 and the connection closed. The whole request body is read before the app
runs, so the next request on the connection always starts at its request line.
"""

from __future__ import annotations

import io
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

MAX_BODY = 256 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: KeepAliveWSGIServer

    def do_GET(self) -> None:
        self._wsgi()

    def do_POST(self) -> None:
        self._wsgi()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _wsgi(self) -> None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.send_error(411, "Content-Length required")
            self.close_connection = True
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= MAX_BODY:
            self.send_error(413)
            self.close_connection = True
            return
        body = self.rfile.read(length)
        path, _, query = self.path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command, "SCRIPT_NAME": "", "PATH_INFO": unquote(path), "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
            "SERVER_NAME": self.server.server_address[0], "SERVER_PORT": str(self.server.server_address[1]),
            "SERVER_PROTOCOL": self.request_version, "REMOTE_ADDR": self.client_address[0],
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
        }
        for key, value in self.headers.items():
            name = key.upper().replace("-", "_")
            if name not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                environ[f"HTTP_{name}"] = value
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answer["status"], answer["headers"] = status, headers
            return lambda _data: None

        chunks = self.server.app(environ, start_response)
        try:
            data = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        code, _, reason = answer["status"].partition(" ")
        self.send_response(int(code), reason)
        for key, value in answer["headers"]:
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class KeepAliveWSGIServer(ThreadingHTTPServer):
    """One thread per connection, connections kept alive, TCP_NODELAY (no Nagle delay on replies)."""

    daemon_threads = True

    def __init__(self, host: str, port: int, app: Any) -> None:
        self.app = app
        super().__init__((host, port), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr
