"""The operational HTTP endpoint of every long-running process: /metrics, /healthz (liveness: the
main loop ticks), /readyz (readiness, with the reason in the body when not ready)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

ReadinessCheck = Callable[[], tuple[bool, str]]
#: (alive, reason): False only when the process should be restarted (its main loop is stuck)
LivenessCheck = Callable[[], tuple[bool, str]]


class OpsServer:
    """Serves Prometheus exposition and health on a background thread."""

    def __init__(self, registry: CollectorRegistry, ready: ReadinessCheck, host: str = "127.0.0.1", port: int = 0,
                 *, live: LivenessCheck | None = None) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per scrape
        self._registry = registry
        self._ready = ready
        self._live = live
        self._server: BaseWSGIServer = make_server(host, port, self._app, threaded=True)
        self._server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._thread = threading.Thread(target=self._server.serve_forever, name="ops-http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]  # what server_bind stored as server_address
        return f"http://{host}:{port}"

    def start(self) -> OpsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI application (what ``Request.application`` would make of ``_respond``, typed)."""
        with Request(environ) as request:
            return self._respond(request)(environ, start_response)

    def _respond(self, request: Request) -> Response:
        if request.path == "/metrics":
            return Response(generate_latest(self._registry), content_type=CONTENT_TYPE_LATEST)
        if request.path == "/healthz":
            ok, detail = self._live() if self._live is not None else (True, "ok")
            return Response(detail + "\n", status=200 if ok else 503, content_type="text/plain")
        if request.path == "/readyz":
            ok, detail = self._ready()
            return Response(detail + "\n", status=200 if ok else 503, content_type="text/plain")
        return Response("not found\n", status=404, content_type="text/plain")
