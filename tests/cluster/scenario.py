"""Hub processes on the cluster: configs listing every node in ``broker.urls`` and one PostgreSQL
ledger shared by every worker (a fresh database per test), a portal that publishes in batches, where each client is connected (as the broker sees
it), a delivery clock that measures failover pauses.

Clients shuffle ``broker.urls`` on every connect and no config turns that off, so a worker
process's node is observed, never assumed: ``client_node`` asks the management API which node
holds the connection whose client port belongs to the worker's PID. Only the in-process portal can
be pinned (``in_configured_order``), so a test knows the node it starts on.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
import tomllib
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomli_w

import hub.broker
from hub.envelope import Envelope
from hub.publisher import ResilientPublisher
from hub.topology import INBOUND_CHECKED
from tests.cluster.harness import Cluster, poll
from tests.reliability.support import WorkerProcess, load, write_config
from tests.support.rabbitmq_node import RabbitNode, management_urls_for

WORKER_CONNECTION = "hub-worker-alpha"  # hub/worker.py names its consuming connection after the adapter
PORTAL_CONNECTION = "cluster-portal"


PG_URL = os.environ.get("HUB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def fresh_ledger() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database for a ledger, dropped afterwards. FAILS (never
    skips) when PostgreSQL is not reachable: the issue's workers share a PostgreSQL ledger."""
    import psycopg

    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_URL} ({str(exc).strip()}); start it or set "
                    "HUB_TEST_POSTGRES_URL")
    name = f"hub_cluster_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def ledger_delivered(ledger_url: str) -> int:
    """How many applications the ledger records as delivered (0 when no worker created its table)."""
    import psycopg

    with psycopg.connect(ledger_url, autocommit=True, connect_timeout=10) as db:
        if db.execute("SELECT to_regclass('hub_deliveries')").fetchone() == (None,):
            return 0
        row = db.execute("SELECT count(*) FROM hub_deliveries WHERE state = 'delivered'").fetchone()
        return int(row[0]) if row else 0


def wait_ledger_delivered(ledger_url: str, count: int, timeout: float = 60.0) -> None:
    """The shared ledger records exactly ``count`` applications as delivered (the workers really
    used it; a mark is written just after the simulator got the message, so polled)."""
    poll(lambda: ledger_delivered(ledger_url) == count, timeout,
         lambda: f"the ledger records {ledger_delivered(ledger_url)} of {count} as delivered")


def node_config(folder: Path, urls: Sequence[str], ledger_url: str, pki: dict[str, tuple[Path, Path]],
                endpoint: str, **adapter: Any) -> Path:
    """The one place a cluster test's hub config is written: ``broker.urls`` lists ``urls`` (all
    nodes: the client picks) and ``ledger.url`` is ``ledger_url``, the PostgreSQL ledger every
    worker of the adapter shares (``fresh_ledger``)."""
    path = write_config(folder, urls[0], pki, endpoint, adapter=adapter or None)
    doc = tomllib.loads(path.read_text())
    assert doc["ledger"]["url"] == f"sqlite:///{folder / 'ledger.db'}", "write_config's ledger path changed"
    doc["ledger"]["url"] = ledger_url
    del doc["broker"]["url"]
    doc["broker"]["urls"] = list(urls)
    management = management_urls_for(urls)  # the private nodes' APIs (policies), not 15672's
    if management:
        doc["broker"]["management_urls"] = management
    path.write_text(tomli_w.dumps(doc))
    return path


def starting_at(urls: Sequence[str], first: int) -> list[str]:
    """All of ``urls``, rotated so that ``urls[first]`` comes first (then the next ones in turn)."""
    return [*urls[first:], *urls[:first]]


class _InOrder:
    """Stands in for hub.broker's shuffler: leaves the list as configured."""

    def shuffle(self, items: list[Any]) -> None:
        return None


def in_configured_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients of this process (the portal) try ``broker.urls`` in the configured order: the test
    knows their first node, and a ResilientPublisher fails over to the next one in the list."""
    monkeypatch.setattr(hub.broker, "_ORDER", _InOrder())


def _sockets(pid: int) -> list[tuple[int, int, str]]:
    """(local port, remote port, TCP state in hex) of the TCP sockets process ``pid`` holds open
    (from /proc: no psutil here; the net tables list the whole namespace, so matched by inode)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                found.append((int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16), fields[3]))
    return found


def _client_ports(pid: int) -> set[int]:
    """Local TCP ports of the sockets process ``pid`` holds open."""
    return {local for local, _remote, _state in _sockets(pid)}


_ESTABLISHED = "01"


def amqp_nodes(cluster: Cluster, pid: int) -> set[str]:
    """Erlang names of the nodes process ``pid`` has an established AMQP connection to, seen from
    the process's own sockets: no management API, which can hang while the cluster is partitioned
    (it waits on the cut-off node). Every broker connection of the process, not one by name."""
    ports = {n.port: n.node for n in cluster.nodes}
    return {ports[remote] for _local, remote, state in _sockets(pid) if state == _ESTABLISHED and remote in ports}


def _connections(cluster: Cluster, vhost: str, pid: int, name: str) -> list[dict[str, Any]]:
    """The management API's open connections ``name`` of process ``pid`` on the vhost."""
    ports = _client_ports(pid)
    listed: list[dict[str, Any]] = cluster.api("GET", f"vhosts/{urllib.parse.quote(vhost, safe='')}/connections")
    return [c for c in listed
            if c.get("peer_port") in ports and (c.get("client_properties") or {}).get("connection_name") == name]


def client_nodes(cluster: Cluster, vhost: str, pid: int, name: str = WORKER_CONNECTION) -> set[str]:
    """Erlang names of the nodes holding an open connection ``name`` of process ``pid``."""
    return {c["node"] for c in _connections(cluster, vhost, pid, name)}


def client_node(cluster: Cluster, vhost: str, pid: int, name: str = WORKER_CONNECTION,
                where: Callable[[RabbitNode], bool] = lambda _node: True, timeout: float = 60.0) -> RabbitNode:
    """The node the client's connection ``name`` is on, once it is on exactly one node for which
    ``where`` holds (polls: the management API lists a new connection after a moment)."""
    found: list[RabbitNode] = []

    def settled() -> bool:
        found[:] = [cluster.node_named(n) for n in client_nodes(cluster, vhost, pid, name)]
        return len(found) == 1 and where(found[0])

    poll(settled, timeout, lambda: f"connection {name} of pid {pid} on {[n.name for n in found]}")
    return found[0]


def move_worker(cluster: Cluster, vhost: str, worker: WorkerProcess, where: Callable[[RabbitNode], bool],
                tries: int = 25) -> RabbitNode:
    """Until the worker's connection is on a node for which ``where`` holds: close it through the
    management API (a broker-side close: the worker reconnects to a freshly shuffled node, the
    process is not restarted). For placing workers before a run; a miss is ~(2/3)^``tries``."""
    assert worker.proc is not None
    pid = worker.proc.pid
    for _ in range(tries):
        node = client_node(cluster, vhost, pid)
        if where(node):
            return node
        closed = set()
        for c in _connections(cluster, vhost, pid, WORKER_CONNECTION):
            closed.add(c["peer_port"])
            cluster.api("DELETE", f"connections/{urllib.parse.quote(c['name'], safe='')}")

        def reconnected(closed: set[int] = closed) -> bool:
            now = _connections(cluster, vhost, pid, WORKER_CONNECTION)
            return len(now) == 1 and now[0]["peer_port"] not in closed

        poll(reconnected, 60, lambda: "the worker did not reconnect after its connection was closed")
    raise AssertionError(f"the worker never landed on a wanted node in {tries} reconnects")


class Portal(threading.Thread):
    """Publishes ``envelopes`` in batches with one resilient publisher over ``broker.urls`` (it
    reconnects on its own, to the next node, when its node goes away). ``published``: envelopes
    confirmed so far (a prefix of ``envelopes``); ``stop()`` ends it after the batch in hand."""

    def __init__(self, config_path: Path, envelopes: list[Envelope], batch: int = 100, gap: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.broker = load(config_path).broker
        self.envelopes = envelopes
        self.batch = batch
        self.gap = gap
        self.error: BaseException | None = None
        self.reconnects = 0
        self.published = 0
        self.sending = threading.Event()  # set while a batch waits for its confirms
        self.first_address: str | None = None  # host:port of the node its first batch went to
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        publisher = ResilientPublisher(self.broker, PORTAL_CONNECTION)
        try:
            for i in range(0, len(self.envelopes), self.batch):
                if self._halt.is_set():
                    break
                batch = self.envelopes[i:i + self.batch]
                self.sending.set()
                publisher.publish_all([(INBOUND_CHECKED, e.destination, e.body(), e.properties(), True)
                                       for e in batch])
                if self.first_address is None and publisher._current is not None:
                    # from the publisher itself: a short-lived connection may never show in the
                    # management API's list (its statistics come every 5 s)
                    self.first_address = publisher._current.address
                self.sending.clear()
                self.published += len(batch)
                time.sleep(self.gap)
        except BaseException as exc:  # noqa: BLE001 - the test asserts on it
            self.error = exc
        finally:
            self.reconnects = publisher.reconnects
            publisher.close()


@dataclass
class DeliveryClock:
    """Samples the simulator's message count, so a pause in deliveries can be measured."""

    store: Any
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), len(self.store)))
            time.sleep(0.05)

    def count(self) -> int:
        return len(self.store)

    def pause_after(self, moment: float) -> float | None:
        """Seconds from ``moment`` to the first delivery after it (None: none yet)."""
        before = max((n for t, n in self.samples if t <= moment), default=0)
        for t, n in self.samples:
            if t > moment and n > before:
                return t - moment
        return None

    def longest_stall(self, start: float, end: float) -> float:
        """The longest time without a new delivery between ``start`` and ``end`` (while work remained)."""
        changes = [start] + [t for (_, prev), (t, n) in itertools.pairwise(self.samples)
                             if start < t <= end and n > prev] + [end]
        return max(later - earlier for earlier, later in itertools.pairwise(changes))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def wait_count(clock: DeliveryClock, at_least: int, timeout: float, portal: Portal | None = None) -> None:
    """Until the simulator holds ``at_least`` messages (fails early when the portal gave up)."""
    def reached() -> bool:
        if portal is not None and portal.error is not None:
            raise AssertionError(f"the portal failed: {portal.error!r}")
        return clock.count() >= at_least

    poll(reached, timeout, lambda: f"only {clock.count()} of {at_least} delivered")


def wait_queues_empty(cluster: Cluster, vhost: str, timeout: float = 60.0) -> None:
    """Every delivery, retry and dead-letter queue of the vhost is empty (management stats lag ~5 s)."""
    def left() -> dict[str, int]:
        return {q["name"]: q.get("messages", 0) for q in cluster.api("GET", f"queues/{vhost}")
                if q["name"].startswith(("hub.deliver.", "hub.retry.", "hub.dead")) and q.get("messages", 0)}

    poll(lambda: not left(), timeout, lambda: f"messages left in queues: {left()}")
