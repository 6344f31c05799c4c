"""A private RabbitMQ node for tests that must stop, restart or partition a broker.

The shared broker on 5672 is never touched: each ``RabbitNode`` runs the installed
``rabbitmq-server`` as its own Erlang node (``hubtest-<random>@localhost``) on free loopback
ports, with its own data, logs, Erlang cookie (``HOME``), config (listener only, no plugins).
It registers with the machine's epmd like any node, so several nodes can later be clustered
(``join_cluster``) by a harness built on this one. Always ``stop()`` it (a fixture's finally):
``stop`` halts the node and kills its process group if it does not go.

For clusters (tests/cluster/harness.py) a node takes extra ``rabbitmq.conf`` lines, Erlang VM
arguments and plugins, and can be SIGKILLed (``kill``: the Erlang VM, not the wrapper script) and
started again on the same ports, data and name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from tests.support.net import free_port

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")  # the Debian package's scripts, without the su wrapper
START_TIMEOUT = 60.0


def _tool(name: str) -> str:
    path = RABBIT_BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install Debian's rabbitmq-server (scripts/bootstrap.sh)")
    return found


# every private node by its AMQP port: a config naming a node finds its management API here
NODES_BY_PORT: dict[int, RabbitNode] = {}


def management_urls_for(urls: Sequence[str]) -> list[str]:
    """``broker.management_urls`` for AMQP URLs of private nodes (with the plugin on)."""
    found = []
    for url in urls:
        node = NODES_BY_PORT.get(urllib.parse.urlsplit(url).port or 5672)
        if node is not None and node.management_url is not None:
            found.append(node.management_url)
    return found


class RabbitNode:
    """One private node; ``start()``, ``stop_app()``/``start_app()`` (listener down/up, node alive),
    ``stop()`` (gone for good, files removed)."""

    def __init__(self, base: Path | None = None, *, name: str | None = None, cookie: str | None = None,
                 extra_config: str = "", erl_args: str = "", plugins: Sequence[str] = ()) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="hubtest-rabbit-")) if base is None else base
        self.name = name or f"hubtest-{secrets.token_hex(4)}"
        self.node = f"{self.name}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.cookie = cookie or secrets.token_hex(16).upper()  # one cookie per cluster
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None  # the node's stdout/stderr file, closed by stop()
        self.startup_seconds: float | None = None
        self._owns_base = base is None
        self.extra_config = extra_config  # more rabbitmq.conf lines (a cluster's partition handling)
        self.erl_args = erl_args  # RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: no spaces inside one term
        self.plugins = tuple(plugins)
        self.management_port = free_port() if "rabbitmq_management" in self.plugins else None
        NODES_BY_PORT[self.port] = self

    @property
    def url(self) -> str:
        """AMQP URL of the default vhost (guest may log in from loopback)."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def management_url(self) -> str | None:
        """Base URL of its management API (``broker.management_urls``), when the plugin is on."""
        return f"http://127.0.0.1:{self.management_port}" if self.management_port else None

    @property
    def env(self) -> dict[str, str]:
        home = self.base / "home"
        return {
            **os.environ,
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_PID_FILE": str(self.base / f"{self.name}.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            # the system's /etc/rabbitmq/rabbitmq.conf listens on 5672: ours must be used instead
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            **({"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": self.erl_args} if self.erl_args else {}),
        }

    def _prepare(self) -> None:
        home = self.base / "home"
        for folder in (home, self.base / "mnesia", self.base / "log"):
            folder.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(self.cookie)
            cookie.chmod(0o400)
        (self.base / "enabled_plugins").write_text(f"[{','.join(self.plugins)}].\n")
        management = (f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {self.management_port}\n"
                      if self.management_port else "")
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
            "loopback_users.guest = true\n" + management + self.extra_config)

    def ctl(self, *args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``rabbitmqctl -n <this node> ARGS`` with this node's cookie."""
        result = subprocess.run([_tool("rabbitmqctl"), "-n", self.node, *args], env=self.env, capture_output=True,
                                text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {self.node} failed: "
                               f"{(result.stderr or result.stdout).strip()[-2000:]}")
        return result

    def start(self, timeout: float = START_TIMEOUT) -> RabbitNode:
        """Start the node and wait until it accepts AMQP connections (``await_startup``)."""
        self._prepare()
        started = time.monotonic()
        if self._log is None:
            self._log = (self.base / "server.out").open("ab")
        self.proc = subprocess.Popen([_tool("rabbitmq-server")], env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = started + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq node {self.node} exited with {self.proc.returncode}; "
                                   f"see {self.base / 'server.out'}")
            # await_startup fails at once until the node has registered with epmd: poll it
            left = deadline - time.monotonic()
            if self.ctl("await_startup", "--timeout", str(max(1, int(min(left, 30)))), check=False,
                        timeout=max(5.0, left + 5)).returncode == 0:
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rabbitmq node {self.node} not up after {timeout:.0f}s")
            time.sleep(0.3)
        self.startup_seconds = time.monotonic() - started
        return self

    def alive(self) -> bool:
        """The node's process (wrapper script and Erlang VM) is running."""
        return self.proc is not None and self.proc.poll() is None

    def beam_pid(self) -> int:
        """PID of the node's Erlang VM (``beam.smp``), a child of the ``rabbitmq-server`` script."""
        assert self.proc is not None, "node not started"
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        for pid in children.read_text().split():
            if Path(f"/proc/{pid}/comm").read_text().strip().startswith("beam"):
                return int(pid)
        raise RuntimeError(f"no Erlang VM under the rabbitmq-server script of {self.node}")

    def kill(self) -> None:
        """SIGKILL the Erlang VM (a crash, no goodbye to the cluster); the wrapper script then exits.
        ``start()`` brings the node back with the same name, ports and data."""
        if not self.alive():
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.beam_pid(), signal.SIGKILL)
        self.proc.wait(30)

    def stop_app(self) -> None:
        """The broker application stops: every connection is closed, the listener is gone (the node
        stays, so ``start_app`` is quick)."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.ctl("await_startup", "--timeout", "60")

    def memory_alarm(self, on: bool) -> None:
        """Raise (a watermark no node can stay under) or clear (back to the default 0.4) the node's
        memory alarm: the broker then blocks, or unblocks, every connection that publishes."""
        self.ctl("set_vm_memory_high_watermark", "0.000001" if on else "0.4")

    def stop(self) -> None:
        """Halt the node (kill its process group if it does not stop) and remove its files."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.ctl("stop", timeout=30, check=False)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)  # the node's own session: beam, epmd-less
                self.proc.wait(10)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._owns_base:
            shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def rabbit_node(plugins: Sequence[str] = ()) -> Iterator[RabbitNode]:
    """A started private node, stopped and removed afterwards whatever happens. Workers on it need
    ``rabbitmq_management`` (their queues' policies) and ``management_url`` in their config."""
    node = RabbitNode(plugins=plugins)
    try:
        yield node.start()
    finally:
        node.stop()
