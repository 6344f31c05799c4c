"""Serve the FIT-Connect simulator over real HTTP on loopback, in a background thread.

The server is the shared one of transport/http_server.py (TCP_NODELAY, quiet, keep-alive connections
closed on stop, so a stopped simulator really stops answering).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from transport.fitconnect.simulator.app import FitConnectSimulator
from transport.fitconnect.simulator.conformance import Violation
from transport.fitconnect.simulator.faults import Faults
from transport.fitconnect.simulator.settings import FitConnectSimulatorSettings
from transport.fitconnect.simulator.store import Submission, SubmissionStore
from transport.http_server import NoDelayWSGIServer, RunningServer, start_in_thread


class RunningFitConnectSimulator(RunningServer):
    """A simulator serving in a background thread: its URLs, credentials, state and controls."""

    def __init__(self, app: FitConnectSimulator, server: NoDelayWSGIServer, thread: threading.Thread) -> None:
        super().__init__(server, thread)
        self.app = app
        self.url = self.base_url
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


def serve(settings: FitConnectSimulatorSettings, *, app: FitConnectSimulator | None = None) -> RunningFitConnectSimulator:
    """Start the simulator on ``settings.host:settings.port`` (0 = a free port); returns once it accepts.

    Passing the ``app`` of a stopped simulator serves it again with all its state (a restart)."""
    app = app or FitConnectSimulator(settings)
    server = NoDelayWSGIServer(settings.host, settings.port, app)
    return RunningFitConnectSimulator(app, server, start_in_thread(server, "fit-connect-simulator"))
