"""Shared fixtures. Tests that need RabbitMQ use ``broker_url``: it FAILS (never skips) when the
broker is missing, so CI cannot go green without having exercised the real broker."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from tests.standards import standards_path

ROOT = Path(__file__).resolve().parents[1]
AMQP_BASE = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def standards_dir(name: str) -> Path:
    """An official standard set from ../shared/standards (tests/standards.py: skip locally, fail in CI)."""
    return standards_path(name)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Throwaway CA + keys: a portal (signer), four readers, and an unrelated 'mallory'."""
    from transport.security.testpki import make_test_pki

    return make_test_pki(tmp_path_factory.mktemp("pki"),
                         ["portal", "azr-000100", "azr-000200", "azr-000300", "mallory"])


def _rabbitmqctl(*args: str, attempts: int = 5) -> None:
    """Run rabbitmqctl; retried because a just-created vhost can take a moment to be usable."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.fail("rabbitmqctl not found: integration tests need a local RabbitMQ (see README)")
    for attempt in range(attempts):
        result = subprocess.run([ctl, "-q", *args], capture_output=True, timeout=60, text=True, check=False)
        if result.returncode == 0:
            return
        time.sleep(0.5 * (attempt + 1))
    pytest.fail(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")


def _fresh_vhost() -> Iterator[str]:
    try:
        pika.BlockingConnection(pika.URLParameters(AMQP_BASE)).close()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"RabbitMQ is not reachable at {AMQP_BASE.split('@')[-1]} ({exc!r}); "
                    "start it with `rabbitmq-server -detached` or set AMQP_URL")
    vhost = f"hub-test-{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    base = AMQP_BASE.rsplit("/", 1)[0]
    yield f"{base}/{vhost}"
    _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="module")
def broker_url() -> Iterator[str]:
    """A fresh vhost on the real local RabbitMQ for each test module; deleted afterwards."""
    yield from _fresh_vhost()


@pytest.fixture()
def fresh_broker_url() -> Iterator[str]:
    """A fresh vhost for one test (tests that declare queues with their own arguments)."""
    yield from _fresh_vhost()
