"""Shared fixtures. Tests that need RabbitMQ use ``broker_url``: it FAILS (never skips) when the
broker is missing, so CI cannot go green without having exercised the real broker."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from tests.standards import standards_path

ROOT = Path(__file__).resolve().parents[1]
AMQP_BASE = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
# RabbitMQ's management API (plugin enabled by scripts/bootstrap.sh): a vhost in ~20 ms instead of
# three rabbitmqctl runs (~1 s, an Erlang VM each) - about 90 vhosts per suite run
MANAGEMENT_PORT = int(os.environ.get("RABBITMQ_MANAGEMENT_PORT", "15672"))


def standards_dir(name: str) -> Path:
    """An official standard set from ../shared/standards (tests/standards.py: skip locally, fail in CI)."""
    return standards_path(name)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Throwaway CA + keys: a portal (signer), four readers, and an unrelated 'mallory'."""
    from transport.security.demopki import make_test_pki

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


def _management(method: str, path: str, body: bytes | None = None) -> bool:
    """One call to the management API; False when the API is not there (then rabbitmqctl does it)."""
    parts = urllib.parse.urlsplit(AMQP_BASE)
    auth = base64.b64encode(f"{urllib.parse.unquote(parts.username or 'guest')}:"
                            f"{urllib.parse.unquote(parts.password or 'guest')}".encode()).decode()
    request = urllib.request.Request(
        f"http://{parts.hostname or '127.0.0.1'}:{MANAGEMENT_PORT}/api/{path}", data=body, method=method,
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return 200 <= answer.status < 300
    except (urllib.error.URLError, OSError):
        return False


def _usable(url: str) -> bool:
    """The new vhost takes a connection (rabbitmqctl's retries covered a moment of not being ready)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            pika.BlockingConnection(pika.URLParameters(url)).close()
            return True
        except Exception:  # noqa: BLE001
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)


def _fresh_vhost() -> Iterator[str]:
    try:
        pika.BlockingConnection(pika.URLParameters(AMQP_BASE)).close()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"RabbitMQ is not reachable at {AMQP_BASE.split('@')[-1]} ({exc!r}); "
                    "start it with `rabbitmq-server -detached` or set AMQP_URL")
    vhost = f"hub-test-{uuid.uuid4().hex[:10]}"
    user = urllib.parse.unquote(urllib.parse.urlsplit(AMQP_BASE).username or "guest")
    base = AMQP_BASE.rsplit("/", 1)[0]
    url = f"{base}/{vhost}"
    quoted = urllib.parse.quote(vhost, safe="")
    by_api = (_management("PUT", f"vhosts/{quoted}")
              and _management("PUT", f"permissions/{quoted}/{urllib.parse.quote(user, safe='')}",
                              b'{"configure": ".*", "write": ".*", "read": ".*"}')
              and _usable(url))
    if not by_api:  # no management API: a new name, in case the API made half of the first one
        _management("DELETE", f"vhosts/{quoted}")
        vhost = f"hub-test-{uuid.uuid4().hex[:10]}"
        url = f"{base}/{vhost}"
        _rabbitmqctl("add_vhost", vhost)
        _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    yield url
    if not (by_api and _management("DELETE", f"vhosts/{quoted}")):
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="module")
def broker_url() -> Iterator[str]:
    """A fresh vhost on the real local RabbitMQ for each test module; deleted afterwards."""
    yield from _fresh_vhost()


@pytest.fixture()
def fresh_broker_url() -> Iterator[str]:
    """A fresh vhost for one test (tests that declare queues with their own arguments)."""
    yield from _fresh_vhost()
