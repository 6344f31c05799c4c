"""Readiness says why a worker is not ready, and recovers on its own (issue 10, done-when).

Real processes only: a private RabbitMQ node (tests/support/rabbitmq_node.py; the shared broker
is never stopped), the XTA simulator over loopback, and `hub worker` as a process whose /readyz
is read over HTTP. Four outages, each followed by its recovery: the broker stopped, the circuit
breaker open (the endpoint fails every send), the signing certificate expired (replaced on disk:
the key store reloads it, no restart), the broker's memory alarm (it blocks the worker's publishing).
"""

from __future__ import annotations

import datetime as dt
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tests.integration.helpers import wait_for
from tests.reliability.support import (
    WorkerProcess,
    applications,
    load,
    metric_value,
    publish,
    reap_processes,
    simulator_settings,
    wait_readyz,
    write_config,
)
from tests.support.rabbitmq_node import RabbitNode, rabbit_node
from transport.security.keys import load_certificate, load_private_key
from transport.xta.simulator import InjectedFault, RunningSimulator, serve

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def node() -> Iterator[RabbitNode]:
    """A private broker node (its memory alarm and stops must not touch the shared one on 5672)."""
    with rabbit_node(plugins=("rabbitmq_management",)) as rabbit:
        yield rabbit


@pytest.fixture()
def simulator(pki: Any) -> Iterator[RunningSimulator]:
    running = serve(simulator_settings(pki))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    try:
        yield
    finally:
        reap_processes()






def _certificate(pki: Any, path: Path, *, days_from: int, days_to: int) -> Path:
    """A certificate for the portal's key (key and certificate still match), issued by the test CA."""
    key = load_private_key(pki["portal"][0])
    ca = load_certificate(pki["ca"][1])
    portal = load_certificate(pki["portal"][1])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(portal.subject).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + dt.timedelta(days=days_from)).not_valid_after(now + dt.timedelta(days=days_to))
            .sign(load_private_key(pki["ca"][0]), hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_broker_stopped_not_ready_with_the_reason_then_ready_again(node: RabbitNode, simulator: RunningSimulator,
                                                                 pki: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path, node.url, pki, simulator.url, management_url=node.management_url)
    worker = WorkerProcess(config, "alpha", tmp_path).start()
    assert "consuming hub.deliver.alpha" in wait_readyz(worker, 200, "connected")
    node.stop_app()  # every connection closed, the listener gone
    try:
        body = wait_readyz(worker, 503, "broker connection lost, reconnecting since")
        assert "circuit closed" in body
    finally:
        node.start_app()
    wait_readyz(worker, 200, "consuming hub.deliver.alpha")
    assert worker.terminate() == 0


def test_breaker_open_not_ready_with_the_reason_then_ready_again(node: RabbitNode, simulator: RunningSimulator,
                                                               pki: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path, node.url, pki, simulator.url, management_url=node.management_url,
                          adapter={"breaker": {"consecutive_failures": 3, "cool_down": 10}})
    worker = WorkerProcess(config, "alpha", tmp_path).start()
    wait_readyz(worker, 200, "circuit closed")
    simulator.inject(InjectedFault(operation="sendMessage", http_status=503, count=3))  # then healthy again
    envelopes = applications(3, f"breaker-{tmp_path.name}", readers=("azr:000100",))
    publish(load(config), envelopes)
    body = wait_readyz(worker, 503, "circuit open")
    assert body.startswith("connected; circuit open: the endpoint of alpha failed"), body
    # after the cool-down a probe goes through (the endpoint is healthy again): ready, and delivered
    wait_readyz(worker, 200, "circuit closed", timeout=60)
    deadline = time.monotonic() + 60
    while len(simulator.store.messages()) < len(envelopes) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(simulator.store.messages()) == len(envelopes)
    assert worker.terminate() == 0


def test_expired_signing_certificate_not_ready_with_the_reason_then_ready_after_replacing_it(
        node: RabbitNode, simulator: RunningSimulator, pki: Any, tmp_path: Path) -> None:
    cert = _certificate(pki, tmp_path / "signing.pem", days_from=-30, days_to=-1)
    config = write_config(tmp_path, node.url, pki, simulator.url, management_url=node.management_url,
                          adapter={"signing_cert": str(cert)})
    worker = WorkerProcess(config, "alpha", tmp_path).start(wait_ready=False)
    # the key store's verdict comes at once, the broker connection a moment later (a loaded machine):
    # wait for both, then the only problem left is the key
    body = wait_readyz(worker, 503, "connected")
    assert "adapters.alpha.signing_cert: signing certificate" in body and " expired at " in body, body
    # renewal: the new certificate replaces the file; the key store reloads it (checked every 30 s)
    renewed = _certificate(pki, tmp_path / "renewed.pem", days_from=-1, days_to=365)
    os.replace(renewed, cert)
    wait_readyz(worker, 200, "consuming hub.deliver.alpha", timeout=60)
    assert worker.terminate() == 0


def test_broker_memory_alarm_not_ready_with_the_reason_then_ready_again(node: RabbitNode, simulator: RunningSimulator,
                                                                      pki: Any, tmp_path: Path) -> None:
    """The broker blocks a connection only once it publishes during an alarm: a delivery is held at
    the endpoint (its answer delayed) while the alarm goes on, so the worker's next status event is
    what the broker blocks."""
    config = write_config(tmp_path, node.url, pki, simulator.url, management_url=node.management_url)
    worker = WorkerProcess(config, "alpha", tmp_path).start()
    wait_readyz(worker, 200, "consuming hub.deliver.alpha")
    simulator.inject(InjectedFault(operation="sendMessage", latency=15))  # accepted, answered 15 s later
    publish(load(config), applications(1, f"alarm-{tmp_path.name}", readers=("azr:000100",)))
    deadline = time.monotonic() + 60
    while not simulator.store.messages() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert simulator.store.messages(), "the delivery never reached the endpoint"
    node.memory_alarm(True)
    try:
        body = wait_readyz(worker, 503, "the broker blocks this worker's connection")
        assert body.startswith("connected; "), body
        # the gauge follows on the worker loop's next turn (readiness reads the state itself)
        wait_for(lambda: metric_value(_metrics(worker), "hub_broker_blocked", adapter="alpha") == 1, 30,
                 what="hub_broker_blocked 1")
    finally:
        node.memory_alarm(False)
    wait_readyz(worker, 200, "consuming hub.deliver.alpha")
    wait_for(lambda: metric_value(_metrics(worker), "hub_broker_blocked", adapter="alpha") == 0, 30,
             what="hub_broker_blocked 0")
    assert worker.terminate() == 0


def _metrics(worker: WorkerProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5) as resp:
        return resp.read().decode()
