from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Response
from xta_testdata import AUTHOR

from transport.xta.client import XtaClient, XtaEndpoint
from transport.xta.simulator import RunningSimulator, SimulatorConfig, serve


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    running = serve(SimulatorConfig(accounts=frozenset({AUTHOR.identifier})))
    yield running
    running.stop()


@pytest.fixture
def client(sim: RunningSimulator) -> Iterator[XtaClient]:
    xta = XtaClient(XtaEndpoint(sim.url, timeout=5.0))
    yield xta
    xta.close()


CannedAnswer = tuple[int, str, bytes]  # HTTP status, content type, body


@pytest.fixture(scope="module")
def far_side() -> Iterator[tuple[str, list[CannedAnswer]]]:
    """A plain HTTP server answering each POST with the next canned (status, content type, body)."""
    answers: list[CannedAnswer] = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        status, ctype, body = answers.pop(0)
        return Response(body, status=status, content_type=ctype)(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/xta", answers
    server.shutdown()
    server.server_close()
