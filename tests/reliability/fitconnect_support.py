"""FIT-Connect side of the fault-injection harness: a hub config whose one adapter is the
``fit-connect`` profile pointed at the simulator, and exact accounting of what the simulator holds
(submitted or accepted submissions, by SHA-256 of their decrypted data) against what was published."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import tomli_w

from hub.config import BrokerConfig
from hub.dlq import DeadLetterFilter, DeadLetterQueue
from hub.envelope import Envelope
from tests.reliability.support import Accounting, WorkerProcess, metric_value
from transport.fitconnect.simulator import (
    FitConnectSimulator,
    FitConnectSimulatorSettings,
    RunningFitConnectSimulator,
    Submission,
)
from transport.fitconnect.simulator.settings import DEFAULT_SERVICE
from transport.fitconnect.simulator.store import ACCEPTED, INCOMPLETE, SUBMITTED

ADAPTER = "fit"
# two authorities, each on its own destination (Zustellpunkt) of the one delivery service
DESTINATIONS = {"azr:000100": "0b5d3c7e-8f1a-4c2b-9d6e-3a7f5b1c9e01",
                "azr:000200": "0b5d3c7e-8f1a-4c2b-9d6e-3a7f5b1c9e02"}
DELIVERED_STATES = (SUBMITTED, ACCEPTED)
CrashAt = Literal["create", "submit"]


class CrashingSimulator(FitConnectSimulator):
    """The simulator as a WSGI app that SIGKILLs the worker at a chosen point: once the service has
    processed a create (``POST /v1/submissions``) or a submit (``PUT /v1/submissions/{id}``)
    successfully and before the answer goes back. The crash windows of a FIT-Connect delivery
    (created but not recorded; submitted but not confirmed) are hit on purpose, not by luck."""

    def __init__(self, settings: FitConnectSimulatorSettings) -> None:
        super().__init__(settings)
        self.worker: WorkerProcess | None = None
        self.fired = threading.Event()
        self._armed: tuple[CrashAt, int] | None = None
        self._lock = threading.Lock()

    def arm(self, at: CrashAt, after: int) -> None:
        """Kill the worker at the first successful ``at`` once ``after`` submissions are in."""
        with self._lock:
            self.fired.clear()
            self._armed = (at, after)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        status: list[str] = []

        def recording(code: str, headers: Any, *args: Any) -> Any:
            status.append(code)
            return start_response(code, headers, *args)

        answer = super().__call__(environ, recording)  # processed; nothing is written before we return
        method, parts = environ["REQUEST_METHOD"], environ["PATH_INFO"].strip("/").split("/")
        at = ("create" if method == "POST" and parts == ["v1", "submissions"] else
              "submit" if method == "PUT" and len(parts) == 3 and parts[:2] == ["v1", "submissions"] else None)
        if at is not None and status and status[0][:1] == "2":
            with self._lock:
                hit = (self._armed is not None and self._armed[0] == at
                       and len([s for s in self.store.all() if s.status in DELIVERED_STATES]) >= self._armed[1])
                if hit:
                    self._armed = None
            if hit:
                assert self.worker is not None, "no worker to kill"
                self.worker.kill()
                self.fired.set()
        return answer


def write_fitconnect_config(folder: Path, broker_url: str, sim: RunningFitConnectSimulator, *,
                            adapter: dict[str, Any] | None = None) -> Path:
    """A TOML config (as operators write them) with the fit-connect adapter ``fit``; the client
    secret goes to a file beside it (mode 0600), never into the config."""
    folder.mkdir(parents=True, exist_ok=True)
    secret = folder / "client.secret"
    secret.write_text(sim.client_secret + "\n")
    secret.chmod(0o600)
    section = {"profile": "fit-connect", "submission_api": sim.url, "token_url": sim.token_url,
               "client_id": sim.client_id, "client_secret_file": str(secret),
               "trust_anchors": [str(sim.trust_anchor)], "service": DEFAULT_SERVICE,
               "timeout": 10, "concurrency": 4, "retry_delays": [1, 2, 4], "delivery_limit": 20,
               "breaker": {"consecutive_failures": 5, "cool_down": 2}, "report_poll_interval": 1,
               **(adapter or {})}
    doc = {
        "broker": {"url": broker_url, "heartbeat": 5, "prefetch": 8},
        "ledger": {"url": f"sqlite:///{folder / 'ledger.db'}"},
        "message_types": [{"code": "OZG.Antrag.130101", "schema": "builtin:xauslaender/ozg-antrag-130101.xsd",
                           "list_uri": "urn:xoev-de:xauslaender:codeliste:nachrichtentyp", "list_version": "26.11",
                           "payload_schema": "http://www.osci.de/xauslaender2611"}],
        "adapters": {ADAPTER: section},
        "authorities": [{"id": aid, "name": f"ABH {aid}", "adapter": ADAPTER, "destination_id": dest}
                        for aid, dest in DESTINATIONS.items()],
    }
    path = folder / "hub.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


def delivered(sim: RunningFitConnectSimulator) -> list[Submission]:
    """The submissions that reached the destination: submitted (or already accepted)."""
    return [s for s in sim.store.all() if s.status in DELIVERED_STATES]


def incomplete(sim: RunningFitConnectSimulator) -> list[Submission]:
    """Created but never submitted: what a crash between create and the ledger record leaves."""
    return sim.store.all(status=INCOMPLETE)


def account(sim: RunningFitConnectSimulator, broker: BrokerConfig) -> Accounting:
    """Delivered submissions counted by SHA-256 of their decrypted data, and the dead letters."""
    acc = Accounting()
    for s in delivered(sim):
        assert s.data is not None, f"submission {s.submission_id} is {s.status} without data"
        acc.delivered[hashlib.sha256(s.data).hexdigest()] += 1
    for d in DeadLetterQueue(broker).list(DeadLetterFilter()):
        acc.dead[d.message_id] = d.reason
    return acc


def wait_accounted(sim: RunningFitConnectSimulator, broker: BrokerConfig, envelopes: list[Envelope],
                   timeout: float) -> Accounting:
    """Wait until every application is delivered or dead-lettered (or time out)."""
    deadline = time.monotonic() + timeout
    while True:
        acc = account(sim, broker)
        if not acc.check(envelopes)[0] or time.monotonic() > deadline:
            return acc
        time.sleep(0.5)


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               state: Callable[[], str] | None = None) -> None:
    """Poll ``condition`` with a generous deadline; on timeout the message adds ``state()``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s" + (f" ({state()})" if state else ""))
        time.sleep(0.2)


def wait_idle(worker: WorkerProcess, quiet: float = 3.0, timeout: float = 60) -> None:
    """Wait until the worker has had nothing in flight for ``quiet`` seconds: a late second
    attempt of an application already counted would land before the final count."""
    deadline = time.monotonic() + timeout
    idle_since: float | None = None
    while time.monotonic() < deadline:
        if metric_value(worker.metrics(), "hub_messages_in_flight") == 0:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= quiet:
                return
        else:
            idle_since = None
        time.sleep(0.2)
    raise AssertionError(f"worker still busy after {timeout}s; log: {worker.log_path}")


def content_mismatches(sim: RunningFitConnectSimulator, envelopes: list[Envelope]) -> list[str]:
    """Message ids whose submission at the simulator differs from what was published: the data
    (the XML message) or the set of attachments, byte for byte after decryption."""
    by_data = {hashlib.sha256(s.data).hexdigest(): s for s in delivered(sim) if s.data is not None}
    wrong = []
    for e in envelopes:
        s = by_data.get(e.content.message.sha256)
        if s is None:
            continue
        if (s.data != e.content.message.data
                or sorted(s.attachments.values()) != sorted(bytes(p.data) for p in e.content.attachments)):
            wrong.append(e.message_id)
    return wrong
