"""A broker that answers "no" is a configuration error; a broker that goes away is an outage.

Against the real RabbitMQ: a wrong password, an unknown vhost and a real user without permissions
end the worker and the broker commands with exit code 2 and one line naming user, vhost and
host:port (never the password, never "start RabbitMQ"). A connection lost after a successful start
is retried with backoff while /readyz says why the worker is not ready.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from hub.cli_support import EXIT_FAILED, exit_code
from hub.config import BrokerConfig
from hub.errors import BrokerError
from hub.publisher import ConfirmingPublisher
from hub.samples import make_ozg_application
from tests.conftest import _rabbitmqctl
from tests.reliability.support import (
    ROOT,
    WorkerProcess,
    readyz,
    reap_processes,
    simulator_settings,
    wait_readyz,
    write_config,
)
from transport.xta.metadata import Party
from transport.xta.simulator import serve

pytestmark = pytest.mark.broker
EXIT_CONFIG = 2
UNREACHABLE_ENDPOINT = "http://127.0.0.1:9/xta"


@pytest.fixture()
def vhost(fresh_broker_url: str) -> str:
    return fresh_broker_url.rsplit("/", 1)[1]


@pytest.fixture()
def user(vhost: str) -> Iterator[tuple[str, str]]:
    """A real broker user (name, password) with no permissions anywhere; deleted afterwards."""
    name, password = f"hub-test-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    _rabbitmqctl("add_user", name, password)
    try:
        yield name, password
    finally:
        _rabbitmqctl("delete_user", name)


def _hub(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the CLI; a process that retries forever instead of exiting fails the test by timeout."""
    return subprocess.run([sys.executable, "-m", "hub", "--config", str(config), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, check=False)  # callers check the code


def _commands(tmp_path: Path) -> dict[str, tuple[str, ...]]:
    payload = tmp_path / "antrag.xml"
    payload.write_bytes(make_ozg_application(reader=Party("azr:000100"), author=Party("alp:000001"), seed=3)[0])
    return {
        "worker": ("worker", "alpha", "--http-port", "0"),
        "topology": ("topology", "apply"),
        "publish": ("publish", str(payload), "--to", "azr:000100"),
        "dlq": ("dlq", "list"),
    }


def _assert_one_clear_line(result: subprocess.CompletedProcess[str], password: str, *names: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == EXIT_CONFIG, output
    refusals = [line for line in result.stderr.splitlines() if "RabbitMQ" in line]
    assert len(refusals) == 1, output
    line = refusals[0]
    assert line.startswith("error: RabbitMQ at 127.0.0.1:5672 refused"), line
    for name in names:
        assert name in line, (name, line)
    assert password not in output
    for wrong_hint in ("reconnecting", "connection lost", "rabbitmq-server", "Start it", "Traceback"):
        assert wrong_hint not in output, (wrong_hint, output)


@pytest.mark.parametrize("command", ["worker", "topology", "publish", "dlq"])
def test_wrong_password(command: str, vhost: str, pki: Any, tmp_path: Path) -> None:
    password = f"wrong-{uuid.uuid4().hex}"
    config = write_config(tmp_path, f"amqp://guest:{password}@127.0.0.1:5672/{vhost}", pki, UNREACHABLE_ENDPOINT)
    result = _hub(config, *_commands(tmp_path)[command])
    _assert_one_clear_line(result, password, "user 'guest'", f"vhost '{vhost}'", "ACCESS_REFUSED")


@pytest.mark.parametrize("command", ["worker", "topology", "publish", "dlq"])
def test_unknown_vhost(command: str, pki: Any, tmp_path: Path) -> None:
    missing = f"hub-test-missing-{uuid.uuid4().hex[:8]}"
    config = write_config(tmp_path, f"amqp://guest:guest@127.0.0.1:5672/{missing}", pki, UNREACHABLE_ENDPOINT)
    result = _hub(config, *_commands(tmp_path)[command])
    _assert_one_clear_line(result, "guest:guest", "user 'guest'", f"vhost '{missing}'", "not found")


@pytest.mark.parametrize("command", ["worker", "topology", "publish", "dlq"])
def test_user_without_permissions_on_the_vhost(command: str, user: tuple[str, str], vhost: str, pki: Any,
                                               tmp_path: Path) -> None:
    name, password = user
    config = write_config(tmp_path, f"amqp://{name}:{password}@127.0.0.1:5672/{vhost}", pki, UNREACHABLE_ENDPOINT)
    result = _hub(config, *_commands(tmp_path)[command])
    _assert_one_clear_line(result, password, f"user '{name}'", f"vhost '{vhost}'", "NOT_ALLOWED")


@pytest.mark.parametrize("command", ["worker", "topology"])
def test_user_allowed_on_the_vhost_but_refused_to_declare(command: str, user: tuple[str, str], vhost: str,
                                                          pki: Any, tmp_path: Path) -> None:
    """Connecting works, declaring the topology is refused (channel closed with 403)."""
    name, password = user
    _rabbitmqctl("set_permissions", "-p", vhost, name, "^$", "^$", "^$")
    config = write_config(tmp_path, f"amqp://{name}:{password}@127.0.0.1:5672/{vhost}", pki, UNREACHABLE_ENDPOINT)
    result = _hub(config, *_commands(tmp_path)[command])
    _assert_one_clear_line(result, password, f"user '{name}'", f"vhost '{vhost}'", "ACCESS_REFUSED")


def test_a_user_without_the_policymaker_tag_is_told_by_topology_apply(user: tuple[str, str], vhost: str,
                                                                      pki: Any, tmp_path: Path) -> None:
    """AMQP allows everything, the management API refuses the policies: one line, exit 2, the tag named."""
    name, password = user
    _rabbitmqctl("set_permissions", "-p", vhost, name, ".*", ".*", ".*")
    config = write_config(tmp_path, f"amqp://{name}:{password}@127.0.0.1:5672/{vhost}", pki, UNREACHABLE_ENDPOINT)
    result = _hub(config, "topology", "apply")
    output = result.stdout + result.stderr
    assert result.returncode == EXIT_CONFIG, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert f"refused user '{name}' on vhost '{vhost}'" in errors[0] and "'policymaker'" in errors[0], errors[0]
    assert password not in output and "Traceback" not in output
    _rabbitmqctl("set_user_tags", name, "policymaker")
    result = _hub(config, "topology", "apply")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "+ policy hub.deliver.alpha" in result.stdout






def _wait_for_log(worker: WorkerProcess, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in worker.log_path.read_text():
        assert time.monotonic() < deadline, f"{text!r} never logged: {worker.log_path.read_text()}"
        assert worker.alive(), f"worker exited; log: {worker.log_path.read_text()}"
        time.sleep(0.2)


def test_lost_connection_after_start_reconnects_and_readiness_says_why(user: tuple[str, str], vhost: str,
                                                                       pki: Any, tmp_path: Path) -> None:
    """Connections closed by the broker while the user may not reconnect (permissions withdrawn):
    the worker stays up, /readyz is 503 with the reason, and it is ready again once allowed back."""
    name, password = user
    _rabbitmqctl("set_permissions", "-p", vhost, name, ".*", ".*", ".*")
    simulator = serve(simulator_settings(pki))
    try:
        config = write_config(tmp_path, f"amqp://{name}:{password}@127.0.0.1:5672/{vhost}", pki, simulator.url)
        worker = WorkerProcess(config, "alpha", tmp_path).start()
        assert readyz(worker)[0] == 200
        _rabbitmqctl("clear_permissions", "-p", vhost, name)
        _rabbitmqctl("close_all_user_connections", name, "test: connection lost after start")
        detail = wait_readyz(worker, 503, "broker connection lost, reconnecting since")
        assert password not in detail
        # a reconnect refused after a successful start is retried, not fatal
        _wait_for_log(worker, f"refused user '{name}' access to vhost '{vhost}'")
        assert worker.alive() and readyz(worker)[0] == 503
        _rabbitmqctl("set_permissions", "-p", vhost, name, ".*", ".*", ".*")
        assert "connected" in wait_readyz(worker, 200, "connected")
        assert worker.terminate() == 0
        log = worker.log_path.read_text()
        assert "broker connection lost" in log and password not in log
        assert "rabbitmq-server" not in log  # the broker answered: no hint to start it
    finally:
        reap_processes()
        simulator.stop()


def test_a_message_the_broker_refuses_on_publish_is_a_failure_not_an_outage(fresh_broker_url: str) -> None:
    """A real 406 PRECONDITION_FAILED on publish (as for a body above max_message_size; here a user_id
    that is not the login's, which any broker refuses): exit 1 naming the precondition, not exit 3
    "broker unreachable"."""
    with ConfirmingPublisher(BrokerConfig(url=fresh_broker_url), "test-406") as publisher:
        publisher.publish_and_wait("", "nowhere", b"fine", pika.BasicProperties(message_id="fine"))
        refused = publisher.publish("", "nowhere", b"refused", pika.BasicProperties(
            message_id="refused", user_id=f"not-{uuid.uuid4().hex[:8]}"))
        error = refused.exception(timeout=60)
    assert type(error) is BrokerError and exit_code(error) == EXIT_FAILED, repr(error)
    assert "406" in str(error) and "precondition" in str(error)
