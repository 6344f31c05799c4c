"""A three-node RabbitMQ cluster of private nodes, for tests that lose, restart or isolate a node.

Built on tests/support/rabbitmq_node.py: every node is the installed ``rabbitmq-server`` on loopback
ports of its own, with one Erlang cookie for the cluster; the shared broker on 5672 is never touched.
Nodes run with ``cluster_partition_handling = pause_minority`` and a short ``net_ticktime`` (a lost
peer is noticed within ~10 s instead of 60). Each node's outgoing distribution connections leave
from a loopback address of its own (127.0.0.1x), so ``isolate`` can cut one node off the others
with iptables (a real minority partition) while AMQP clients can still reach it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.support.rabbitmq_node import RabbitNode

NET_TICKTIME = 10  # seconds; Erlang's default 60 would make every partition test wait a minute
JOIN_TIMEOUT = 120.0


class Cluster:
    """``size`` private nodes clustered with the first; ``stop()`` removes everything (also the
    iptables rules of an ``isolate`` and the SIGSTOP of a ``pause``)."""

    def __init__(self, size: int = 3, base: Path | None = None) -> None:
        self._owns_base = base is None
        self.base = Path(tempfile.mkdtemp(prefix="hubtest-cluster-")) if base is None else base
        cookie = secrets.token_hex(16).upper()
        tag = secrets.token_hex(3)
        self.nodes = [
            RabbitNode(self.base / f"n{i}", name=f"hubtest-{tag}-{'abc'[i] if i < 3 else i}", cookie=cookie,
                       extra_config="cluster_partition_handling = pause_minority\n",
                       erl_args=(f"-kernel inet_dist_connect_options [{{ip,{{127,0,0,{11 + i}}}}}] "
                                 f"-kernel net_ticktime {NET_TICKTIME}"),
                       plugins=("rabbitmq_management",))
            for i in range(size)
        ]
        self.chain = f"HUBTEST-{tag}"  # our iptables chain, only while a node is isolated
        self.start_seconds: float | None = None
        self._paused: set[str] = set()
        self._isolated: set[str] = set()

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Cluster:
        """Start the nodes in parallel, join the others to the first, wait until all three run."""
        started = time.monotonic()
        errors: list[BaseException] = []

        def boot(node: RabbitNode) -> None:
            try:
                node.start()
            except BaseException as exc:  # noqa: BLE001 - reported below, in the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=boot, args=(n,)) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        seed = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", seed.node)
            node.ctl("start_app")
        self.wait_running(self.nodes)
        self.start_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Heal, resume, stop every node and remove their files (safe to call twice)."""
        with contextlib.suppress(Exception):
            self._remove_rules()
        for node in self.nodes:
            if node.name in self._paused and node.alive():
                with contextlib.suppress(Exception):
                    os.kill(node.beam_pid(), signal.SIGCONT)
        self._paused.clear()
        threads = [threading.Thread(target=n.stop) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self._owns_base:
            shutil.rmtree(self.base, ignore_errors=True)

    def recover(self) -> None:
        """Back to all nodes running after whatever a (failed) test left: heal, resume, restart."""
        self._remove_rules()
        for node in self.nodes:
            if node.name in self._paused:
                self.resume(node)
        for node in self.nodes:
            if not node.alive():
                node.start()
        self.wait_running(self.nodes)

    # --- addresses -------------------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        """One AMQP URL per node (default vhost)."""
        return [n.url for n in self.nodes]

    def vhost_urls(self, vhost: str) -> list[str]:
        """One AMQP URL per node for ``vhost``."""
        quoted = urllib.parse.quote(vhost, safe="")
        return [f"amqp://guest:guest@127.0.0.1:{n.port}/{quoted}" for n in self.nodes]

    def add_vhost(self, vhost: str) -> list[str]:
        """A fresh vhost (its own queues, so accounting sees no other test's messages); its URLs."""
        self.api("PUT", f"vhosts/{urllib.parse.quote(vhost, safe='')}", {})
        self.api("PUT", f"permissions/{urllib.parse.quote(vhost, safe='')}/guest",
                 {"configure": ".*", "write": ".*", "read": ".*"})
        return self.vhost_urls(vhost)

    def node_named(self, erlang_node: str) -> RabbitNode:
        for node in self.nodes:
            if node.node == erlang_node:
                return node
        raise KeyError(erlang_node)

    # --- management API (answered by any running node) -------------------------------------------

    def api(self, method: str, path: str, body: Any = None, *, via: RabbitNode | None = None,
            timeout: float = 10.0) -> Any:
        """One management API call on ``via`` (or the first node that answers); decoded JSON."""
        candidates = [via] if via is not None else [n for n in self.nodes if self._reachable(n)]
        auth = base64.b64encode(b"guest:guest").decode()
        last: Exception | None = None
        for node in candidates:
            request = urllib.request.Request(
                f"http://127.0.0.1:{node.management_port}/api/{path}", method=method,
                data=None if body is None else json.dumps(body).encode(),
                headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=timeout) as answer:
                    raw = answer.read()
                    return json.loads(raw) if raw else None
            except (urllib.error.URLError, OSError) as exc:
                last = exc
        raise RuntimeError(f"management API {method} {path} failed on every node: {last}")

    def _reachable(self, node: RabbitNode) -> bool:
        return node.alive() and node.name not in self._paused and node.name not in self._isolated

    def running(self, via: RabbitNode | None = None) -> set[str]:
        """Erlang names of the nodes the cluster (as ``via`` sees it) reports running."""
        return {n["name"] for n in self.api("GET", "nodes", via=via) if n.get("running")}

    def wait_running(self, nodes: list[RabbitNode], timeout: float = JOIN_TIMEOUT) -> float:
        """Poll until exactly ``nodes`` run (as the first reachable node sees it); seconds waited."""
        want = {n.node for n in nodes}
        return poll(lambda: self.running() == want, timeout,
                     lambda: f"cluster never reported {sorted(want)} running")

    def queue(self, name: str, vhost: str = "/") -> dict[str, Any]:
        """The management API's view of a queue (``leader``, ``members``, ``online``, ``messages``)."""
        result: dict[str, Any] = self.api(
            "GET", f"queues/{urllib.parse.quote(vhost, safe='')}/{urllib.parse.quote(name, safe='')}")
        return result

    def leader(self, queue: str, vhost: str = "/") -> RabbitNode:
        """The node hosting the quorum queue's leader."""
        return self.node_named(self.queue(queue, vhost)["leader"])

    # --- faults ----------------------------------------------------------------------------------

    def kill(self, node: RabbitNode) -> None:
        """SIGKILL the node's Erlang VM (a crash: peers see the connection drop at once)."""
        node.kill()

    def restart(self, node: RabbitNode, timeout: float = JOIN_TIMEOUT) -> float:
        """Start a killed node again and wait until the cluster reports all nodes running; seconds."""
        started = time.monotonic()
        node.start()
        self.wait_running(self.nodes, timeout)
        return time.monotonic() - started

    def pause(self, node: RabbitNode) -> None:
        """SIGSTOP the node's VM: frozen, its peers notice after ~``NET_TICKTIME`` seconds."""
        os.kill(node.beam_pid(), signal.SIGSTOP)
        self._paused.add(node.name)

    def resume(self, node: RabbitNode) -> None:
        os.kill(node.beam_pid(), signal.SIGCONT)
        self._paused.discard(node.name)

    def isolate(self, node: RabbitNode) -> None:
        """Cut ``node`` off from its peers (Erlang distribution only; AMQP still reaches it): with
        pause_minority it stops its broker application until ``heal``."""
        index = self.nodes.index(node)
        ip = f"127.0.0.{11 + index}"
        port = str(node.dist_port)
        _iptables("-N", self.chain, check=False)
        rules = [["-s", ip], ["-d", ip], ["--dport", port], ["--sport", port]]
        for rule in rules:
            _iptables("-A", self.chain, "-p", "tcp", *rule, "-j", "DROP")
        if _iptables("-C", "INPUT", "-j", self.chain, check=False).returncode != 0:
            _iptables("-I", "INPUT", "-j", self.chain)
        self._isolated.add(node.name)

    def heal(self) -> None:
        """Remove every isolation: the nodes reconnect, a paused minority restarts its application."""
        self._remove_rules()

    def _remove_rules(self) -> None:
        if not self._isolated:
            return
        while _iptables("-D", "INPUT", "-j", self.chain, check=False).returncode == 0:
            pass
        _iptables("-F", self.chain, check=False)
        _iptables("-X", self.chain, check=False)
        self._isolated.clear()


def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("iptables")
    if tool is None:
        raise RuntimeError("iptables is needed to isolate a node")
    result = subprocess.run([tool, "-w", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"iptables {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def poll(condition: Callable[[], bool], timeout: float, message: Callable[[], str]) -> float:
    """Call ``condition`` until it holds (errors count as not yet); seconds waited."""
    started = time.monotonic()
    deadline = started + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return time.monotonic() - started
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001 - a node still booting answers with errors
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{message()} within {timeout:.0f}s (last error: {last})")


@contextlib.contextmanager
def running_cluster(size: int = 3) -> Iterator[Cluster]:
    """A started cluster, stopped and removed afterwards whatever happens."""
    cluster = Cluster(size)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
