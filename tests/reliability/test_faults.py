"""Fault injection on the real broker, with exact accounting: every application published is
delivered exactly once at the simulator, or sits in the dead-letter queue with a reason."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hub.dlq import DeadLetterFilter, DeadLetterQueue
from tests.reliability.support import (
    WorkerProcess,
    account,
    applications,
    cli,
    free_port,
    load,
    metric_value,
    publish,
    readyz,
    simulator_settings,
    wait_accounted,
    write_config,
)
from transport.xta.simulator import InjectedFault, serve

pytestmark = pytest.mark.broker


@pytest.fixture()
def simulator(pki):
    running = serve(simulator_settings(pki))
    yield running
    running.stop()




def _assert_exact(acc, envelopes, *, allow_dead: bool = False) -> None:
    lost, dup, both = acc.check(envelopes)
    assert lost == [], f"{len(lost)} applications lost"
    assert dup == [], f"{len(dup)} applications delivered more than once"
    assert both == [], f"{len(both)} applications both delivered and dead-lettered"
    if not allow_dead:
        assert acc.dead == {}, f"unexpected dead letters: {acc.dead}"


def test_sigkill_worker_repeatedly_loses_and_duplicates_nothing(broker_url, pki, simulator, tmp_path: Path) -> None:
    config_path = write_config(tmp_path, broker_url, pki, simulator.url, adapter={"delivery_limit": 20})
    config = load(config_path)
    workers = [WorkerProcess(config_path, "alpha", tmp_path).start(), WorkerProcess(config_path, "beta", tmp_path).start()]
    envelopes = applications(1000, "sigkill")
    publish(config, envelopes)
    rng = random.Random(7)
    kills = 0
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            acc = account(simulator.store, config.broker)
            if not acc.check(envelopes)[0]:
                break
            time.sleep(rng.uniform(0.4, 1.2))
            victim = workers[kills % 2]
            victim.kill()
            kills += 1
            victim.start(wait_ready=False)
        acc = wait_accounted(simulator.store, config.broker, envelopes, timeout=60)
    finally:
        for w in workers:
            w.kill()
    print(f"\nSIGKILL run: {kills} kills, {sum(w.starts for w in workers)} worker starts, "
          f"{sum(acc.delivered.values())} received, {len(acc.dead)} dead-lettered")
    assert kills >= 5, "the run ended before the workers were killed often enough to mean anything"
    _assert_exact(acc, envelopes)
    assert sum(acc.delivered.values()) == 1000


def test_broker_restart_mid_run_everything_recovers(broker_url, pki, simulator, tmp_path: Path) -> None:
    ctl = shutil.which("rabbitmqctl")
    assert ctl, "rabbitmqctl is needed to restart the broker"
    config_path = write_config(tmp_path, broker_url, pki, simulator.url)
    config = load(config_path)
    workers = [WorkerProcess(config_path, "alpha", tmp_path).start(), WorkerProcess(config_path, "beta", tmp_path).start()]
    envelopes = applications(1000, "restart")
    errors: list[BaseException] = []

    def portal() -> None:  # a portal publishing steadily across the restart
        try:
            for i in range(0, len(envelopes), 50):
                publish(config, envelopes[i:i + 50])
                time.sleep(0.3)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    publisher = threading.Thread(target=portal)
    publisher.start()
    try:
        time.sleep(2.0)
        subprocess.run([ctl, "stop_app"], check=True, capture_output=True, timeout=120)
        time.sleep(3.0)
        subprocess.run([ctl, "start_app"], check=True, capture_output=True, timeout=120)
        subprocess.run([ctl, "await_startup"], check=True, capture_output=True, timeout=120)
        publisher.join(300)
        assert not errors, f"the publisher did not recover: {errors}"
        acc = wait_accounted(simulator.store, config.broker, envelopes, timeout=180)
        for w in workers:
            assert w.alive(), "a worker died instead of reconnecting"
            assert w.starts == 1
            assert metric_value(w.metrics(), "hub_consumer_connected") == 1
    finally:
        for w in workers:
            w.kill()
    _assert_exact(acc, envelopes)


def test_endpoint_outage_waits_in_ladder_and_breaker_opens_and_closes(broker_url, pki, tmp_path: Path) -> None:
    port = free_port()
    settings = simulator_settings(pki)
    running = serve(settings, port=port)
    simulator = running.simulator
    config_path = write_config(tmp_path, broker_url, pki, running.url,
                               adapter={"retry_delays": [1, 2, 4, 8, 16, 32, 64]})
    config = load(config_path)
    worker = WorkerProcess(config_path, "alpha", tmp_path).start()
    envelopes = applications(60, "outage", readers=("azr:000100", "azr:000200"))
    try:
        running.stop()  # the endpoint goes down: connections refused
        publish(config, envelopes)
        time.sleep(30)
        metrics = worker.metrics()
        assert metric_value(metrics, "hub_circuit_breaker_transitions_total", state="open") >= 1
        assert metric_value(metrics, "hub_messages_processed_total", outcome="retry_scheduled") >= 1
        assert metric_value(metrics, "hub_messages_processed_total", outcome="delivered") == 0
        running = serve(settings, port=port, simulator=simulator)  # back, same state
        acc = wait_accounted(running.store, config.broker, envelopes, timeout=120)
        metrics = worker.metrics()
    finally:
        if worker is not None:
            worker.kill()
        running.stop()
    _assert_exact(acc, envelopes)
    assert metric_value(metrics, "hub_circuit_breaker_transitions_total", state="closed") >= 1
    assert metric_value(metrics, "hub_circuit_breaker_state") == 0


def test_permanent_faults_dead_lettered_then_replayed_without_loss(broker_url, pki, tmp_path: Path) -> None:
    strict = tmp_path / "strict.xsd"
    # a schema that demands an element the applications do not have (a schema update gone wrong)
    strict.write_text('<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" '
                      'targetNamespace="http://www.osci.de/xauslaender2611" elementFormDefault="unqualified">'
                      '<xs:element name="ozg.antrag.130101"><xs:complexType><xs:sequence>'
                      '<xs:element name="pflichtfeldNeu" type="xs:string"/></xs:sequence></xs:complexType>'
                      '</xs:element></xs:schema>')
    sim_settings = simulator_settings(pki, accounts=frozenset({"alp:someone-else"}))
    running = serve(sim_settings)
    broken = write_config(tmp_path / "broken", broker_url, pki, running.url)
    schema_broken = write_config(tmp_path / "schema", broker_url, pki, running.url, schema=str(strict))
    fixed = write_config(tmp_path / "fixed", broker_url, pki, running.url)
    config = load(fixed)
    no_account = applications(20, "perm-9012", readers=("azr:000100",))
    virus = applications(20, "perm-9060", readers=("azr:000200",))
    schema_bad = applications(20, "perm-schema", readers=("azr:000300",))
    everything = no_account + virus + schema_bad
    try:
        # phase 1: 9012 (no account) for alpha's first batch; the worker is not ready (its
        # checkAccountActive fails) but consumes, and dead-letters what it cannot deliver
        w = WorkerProcess(broken, "alpha", tmp_path).start(wait_ready=False)
        w.wait_connected()
        assert "not active" in readyz(w)[1]
        publish(config, no_account)
        wait_accounted(running.store, config.broker, no_account, timeout=60)
        w.terminate()
        running.stop()
        # phase 2: account fixed, but the server flags a virus (9060) on the next 20 sends
        running = serve(simulator_settings(pki), port=int(running.url.split(":")[2].split("/")[0]))
        running.inject(InjectedFault(operation="sendMessage", code="9060", count=20))
        w = WorkerProcess(broken, "alpha", tmp_path).start()
        publish(config, virus)
        wait_accounted(running.store, config.broker, virus, timeout=60)
        w.terminate()
        # phase 3: beta runs with the broken schema
        w = WorkerProcess(schema_broken, "beta", tmp_path).start()
        publish(config, schema_bad)
        wait_accounted(running.store, config.broker, schema_bad, timeout=60)
        w.terminate()

        dead = {d.message_id: d for d in DeadLetterQueue(config.broker).list(DeadLetterFilter())}
        assert {dead[e.message_id].reason for e in no_account} == {"xta_9012"}
        assert {dead[e.message_id].reason for e in virus} == {"xta_9060"}
        assert {dead[e.message_id].reason for e in schema_bad} == {"schema_violation"}
        assert all(d.attempts == 1 for d in dead.values()), "permanent faults must not be retried"
        assert len(running.store.messages()) == 0

        # causes fixed: correct schema, account present, no more virus alarms; workers on the fixed config
        workers = [WorkerProcess(fixed, "alpha", tmp_path).start(), WorkerProcess(fixed, "beta", tmp_path).start()]
        # an interrupted replay: killed while it works
        replay = subprocess.Popen([sys.executable, "-m", "hub", "--config", str(fixed), "dlq", "replay", "--all"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=Path(__file__).parents[2])
        start = time.monotonic()
        while len(running.store.messages()) < 3 and time.monotonic() - start < 30 and replay.poll() is None:
            time.sleep(0.01)
        replay.kill()
        replay.wait()
        # whatever the killed replay had moved is on its way through the workers: once they are
        # idle, every application is delivered or still a dead letter, none is gone
        acc = wait_accounted(running.store, config.broker, everything, timeout=30)
        assert not acc.check(everything)[0], "the interrupted replay lost a message"
        # (interruption at exact points — before and after the ack — is pinned in tests/integration/test_dlq.py)
        result = cli(fixed, "dlq", "replay", "--all")
        assert result.returncode == 0, result.stderr
        acc = wait_accounted(running.store, config.broker, everything, timeout=120)
        for w in workers:
            w.terminate()
    finally:
        running.stop()
    _assert_exact(acc, everything)
    assert sum(acc.delivered.values()) == len(everything)


def test_poison_message_is_dead_lettered_after_delivery_limit(broker_url, pki, simulator, tmp_path: Path) -> None:
    config_path = write_config(tmp_path, broker_url, pki, simulator.url, profile="tests.reliability.poison:PoisonAdapter",
                               adapter={"delivery_limit": 3})
    config = load(config_path)
    envelopes = applications(60, "poison", readers=("azr:000100", "azr:000200"), marker="POISON-PILL")
    worker = WorkerProcess(config_path, "alpha", tmp_path).start()
    publish(config, envelopes)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:  # a supervisor that restarts the worker whenever it dies
            if not worker.alive():
                worker.start(wait_ready=False)
            acc = account(simulator.store, config.broker)
            if not acc.check(envelopes)[0]:
                break
            time.sleep(0.2)
    finally:
        worker.kill()
    acc = account(simulator.store, config.broker)
    _assert_exact(acc, envelopes, allow_dead=True)
    assert acc.dead == {envelopes[0].message_id: "delivery_limit"}
    assert worker.starts >= 3
    assert sum(acc.delivered.values()) == len(envelopes) - 1


def test_sigterm_finishes_in_flight_work_within_bound(broker_url, pki, tmp_path: Path) -> None:
    running = serve(simulator_settings(pki, latency=1.0))  # every XTA call takes a second
    worker = None
    try:
        config_path = write_config(tmp_path, broker_url, pki, running.url, adapter={"concurrency": 4, "timeout": 10})
        config = load(config_path)
        worker = WorkerProcess(config_path, "alpha", tmp_path).start()
        envelopes = applications(40, "sigterm", readers=("azr:000100",))
        publish(config, envelopes)
        time.sleep(2.5)  # deliveries are in flight now
        started = time.monotonic()
        code = worker.terminate(timeout=60)
        took = time.monotonic() - started
        assert code == 0, f"worker exited with {code}"
        assert took < 30, f"graceful shutdown took {took:.1f}s"
        delivered_at_stop = len(running.store.messages())
        assert 0 < delivered_at_stop < len(envelopes)
        second = WorkerProcess(config_path, "alpha", tmp_path).start()  # the rest after a restart
        try:
            acc = wait_accounted(running.store, config.broker, envelopes, timeout=120)
        finally:
            second.kill()
    finally:
        if worker is not None:
            worker.kill()
        running.stop()
    _assert_exact(acc, envelopes)
