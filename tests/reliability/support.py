"""Fault-injection harness: worker processes we can SIGKILL, a simulator we can take down, and
exact accounting of where every published application ended up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from hub.config import BrokerConfig, HubConfig, load_config
from hub.dlq import DeadLetterFilter, DeadLetterQueue
from hub.envelope import Envelope, new_envelope
from hub.publisher import ResilientPublisher
from hub.samples import make_attachment, make_ozg_application
from hub.topology import INBOUND_CHECKED
from tests.support.net import free_port as free_port  # noqa: PLC0414 - re-exported: tests import it from here
from transport.content import ContentPart
from transport.security.keys import load_certificate, load_private_key
from transport.xta.metadata import Party
from transport.xta.simulator import SimulatorConfig

ROOT = Path(__file__).resolve().parents[2]
AUTHOR = {"identifier": "alp:000001", "name": "Testportal", "category": "Ausländerportal"}
READERS = ("azr:000100", "azr:000200", "azr:000300")


def write_config(folder: Path, broker_url: str, pki: dict[str, tuple[Path, Path]], endpoint: str, *,
                 adapter: dict[str, Any] | None = None, schema: str = "builtin:xauslaender/ozg-antrag-130101.xsd",
                 profile: str = "xta2", management_url: str | None = None) -> Path:
    """A TOML config (as operators write them) with adapters 'alpha' and 'beta'. A broker on a
    port other than 5672 needs ``management_url`` (the queues' policies)."""
    key, cert = pki["portal"]
    adapters = {
        name: {"profile": profile, "endpoint": endpoint, "timeout": 10, "concurrency": 4, "signing_key": str(key),
               "signing_cert": str(cert), "author": AUTHOR, "retry_delays": [1, 2, 4], "delivery_limit": 5,
               "breaker": {"consecutive_failures": 5, "cool_down": 2}, **(adapter or {})}
        for name in ("alpha", "beta")
    }
    doc = {
        "broker": {"url": broker_url, "heartbeat": 5, "prefetch": 8,
                   **({"management_urls": [management_url]} if management_url else {})},
        "ledger": {"url": f"sqlite:///{folder / 'ledger.db'}"},
        "message_types": [{"code": "OZG.Antrag.130101", "schema": schema,
                           "list_uri": "urn:xoev-de:xauslaender:codeliste:nachrichtentyp", "list_version": "26.11",
                           "payload_schema": "http://www.osci.de/xauslaender2611"}],
        "adapters": adapters,
        "authorities": [{"id": aid, "name": f"ABH {aid}", "adapter": "alpha" if aid != "azr:000300" else "beta",
                         "certificate": str(pki[aid.replace(':', '-')][1])} for aid in READERS],
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hub.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


def simulator_settings(pki: dict[str, tuple[Path, Path]], **overrides: Any) -> SimulatorConfig:
    return SimulatorConfig(
        reader_keys={aid: load_private_key(pki[aid.replace(":", "-")][0]) for aid in READERS},
        trusted_signers=(load_certificate(pki["ca"][1]),), **overrides)


STARTED: list[subprocess.Popen[bytes]] = []  # every process started, so teardown can reap them all


def reap_processes() -> None:
    """Kill whatever a test left running (also when it failed half-way)."""
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


class WorkerProcess:
    """`hub worker ADAPTER` as a real process, with its own metrics port."""

    def __init__(self, config_path: Path, adapter: str, log_dir: Path) -> None:
        self.config_path = config_path
        self.adapter = adapter
        self.port = free_port()
        self.log_path = log_dir / f"worker-{adapter}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, wait_ready: bool = True) -> WorkerProcess:
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "--config", str(self.config_path), "worker", self.adapter,
             "--http-port", str(self.port)], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        STARTED.append(self.proc)
        self.starts += 1
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}; log: {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"worker not up after {timeout}s; log: {self.log_path}")

    def wait_connected(self, timeout: float = 60) -> None:
        """Consuming, whether or not ready (a worker whose XTA account is refused is not ready)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, f"worker exited; log: {self.log_path}"
            try:
                if metric_value(self.metrics(), "hub_consumer_connected") == 1:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"worker not consuming after {timeout}s; log: {self.log_path}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and wait: the graceful-shutdown bound is part of what is tested."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout)
        return self.proc.returncode

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
            return resp.read().decode()


def http_get(url: str, timeout: float = 30.0) -> tuple[int, str]:
    """(HTTP status, body) of a GET, also for 4xx/5xx answers (health probes answer 503 with a reason)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def readyz(worker: WorkerProcess) -> tuple[int, str]:
    return http_get(f"http://127.0.0.1:{worker.port}/readyz")


def wait_readyz(worker: WorkerProcess, status: int, text: str, timeout: float = 120) -> str:
    """Poll the worker's /readyz until it answers ``status`` with ``text`` in its body; the body."""
    deadline = time.monotonic() + timeout
    seen: tuple[int, str] | None = None
    while time.monotonic() < deadline:
        assert worker.alive(), f"worker exited; log: {worker.log_path.read_text()[-3000:]}"
        try:
            seen = readyz(worker)
        except OSError:  # not listening yet
            seen = None
        if seen is not None and seen[0] == status and text in seen[1]:
            return seen[1]
        time.sleep(0.2)
    raise AssertionError(f"/readyz never answered {status} with {text!r} within {timeout}s; last: {seen!r}")


def metric_value(exposition: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in exposition.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def applications(count: int, tag: str, readers: tuple[str, ...] = READERS, marker: str | None = None) -> list[Envelope]:
    envelopes = []
    for i in range(count):
        reader = readers[i % len(readers)]
        seed = abs(hash((tag, i))) % (2**61)
        attachment, filename, ctype = make_attachment(seed, size=2000)
        xml, message_id = make_ozg_application(reader=Party(reader, "ABH"), author=Party(**AUTHOR), seed=seed,
                                               attachment=attachment)
        if marker and i == 0:
            marked = xml.replace(b"</xau:ozg.antrag.130101>", f"<!-- {marker} --></xau:ozg.antrag.130101>".encode())
            assert marked != xml, "marker not placed"
            xml = marked
        envelopes.append(new_envelope(destination=reader, message_type="OZG.Antrag.130101", message=xml,
                                      portal="reliability", message_id=message_id, filename="antrag.xml",
                                      attachments=(ContentPart(attachment, ctype, filename),)))
    return envelopes


def publish(config: HubConfig | BrokerConfig, envelopes: list[Envelope]) -> None:
    broker = config.broker if isinstance(config, HubConfig) else config
    publisher = ResilientPublisher(broker, "reliability-portal")
    try:
        publisher.publish_all([(INBOUND_CHECKED, e.destination, e.body(), e.properties(), True) for e in envelopes])
    finally:
        publisher.close()


@dataclass
class Accounting:
    delivered: Counter[str] = field(default_factory=Counter)  # message sha256 -> times received
    dead: dict[str, str] = field(default_factory=dict)  # message_id -> reason

    def check(self, envelopes: list[Envelope]) -> tuple[list[str], list[str], list[str]]:
        """(lost, duplicated, both delivered and dead) message ids."""
        lost, dup, both = [], [], []
        for e in envelopes:
            n = self.delivered[e.content.message.sha256]
            if n > 1:
                dup.append(e.message_id)
            if n == 0 and e.message_id not in self.dead:
                lost.append(e.message_id)
            if n >= 1 and e.message_id in self.dead:
                both.append(e.message_id)
        return lost, dup, both


def account(store: Any, broker: BrokerConfig) -> Accounting:
    acc = Accounting()
    for m in store.messages():
        summary = m.summary()
        acc.delivered[summary["parts"][0]["sha256"]] += 1
    for d in DeadLetterQueue(broker).list(DeadLetterFilter()):
        acc.dead[d.message_id] = d.reason
    return acc


def wait_accounted(store: Any, broker: BrokerConfig, envelopes: list[Envelope], timeout: float,
                   tick: Any = None) -> Accounting:
    """Wait until every application is delivered or dead-lettered (or time out), calling ``tick``."""
    deadline = time.monotonic() + timeout
    while True:
        acc = account(store, broker)
        lost, _dup, _both = acc.check(envelopes)
        if not lost or time.monotonic() > deadline:
            return acc
        if tick is not None:
            tick()
        time.sleep(0.5)


def cli(config_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub", "--config", str(config_path), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, check=False)  # callers check the code


def load(config_path: Path) -> HubConfig:
    return load_config(config_path, environ={})


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)[:4000]
