"""Building blocks for integration tests on the real broker and a real simulator over loopback."""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
from prometheus_client import CollectorRegistry

from hub.config import HubConfig, parse_config
from hub.metrics import WorkerMetrics
from hub.status import StatusEvent, events_from_message
from hub.topology import STATUS_EXCHANGE

AUTHORITIES = {"azr:000100": "alpha", "azr:000200": "alpha", "azr:000300": "beta"}
AUTHOR = {"identifier": "alp:000001", "name": "Testportal", "category": "Ausländerportal"}


def make_config(broker_url: str, pki: dict[str, tuple[Path, Path]], endpoint: str, *,
                authorities: dict[str, str] | None = None, heartbeat: int = 30,
                adapter_overrides: dict[str, Any] | None = None, retry_delays: list[float] | None = None,
                ledger: Path | None = None) -> HubConfig:
    """A config with adapters 'alpha' and 'beta' both pointing at ``endpoint``."""
    key, cert = pki["portal"]
    adapters = {}
    for name in ("alpha", "beta"):
        adapters[name] = {
            "endpoint": endpoint, "timeout": 20, "concurrency": 2, "signing_key": str(key),
            "signing_cert": str(cert), "author": AUTHOR, "retry_delays": retry_delays or [1, 2],
            **(adapter_overrides or {}),
        }
    raw = {
        "broker": {"url": broker_url, "heartbeat": heartbeat, "prefetch": 8},
        "ledger": {"url": f"sqlite:///{ledger or Path(tempfile.mkdtemp(prefix='hub-ledger-')) / 'ledger.db'}"},
        "message_types": [{
            "code": "OZG.Antrag.130101", "schema": "builtin:xauslaender/ozg-antrag-130101.xsd",
            "list_uri": "urn:xoev-de:xauslaender:codeliste:nachrichtentyp", "list_version": "26.11",
            "payload_schema": "http://www.osci.de/xauslaender2611"}],
        "adapters": adapters,
        "authorities": [
            {"id": aid, "name": f"ABH {aid}", "adapter": adapter,
             "certificate": str(pki[aid.replace(':', '-')][1])}
            for aid, adapter in (authorities or AUTHORITIES).items()],
    }
    return parse_config(raw, base=Path("/"), environ={})


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextlib.contextmanager
def running_worker(config: HubConfig, adapter: str) -> Iterator[Any]:
    """An AdapterWorker on a thread (as in `hub worker`), stopped and joined afterwards."""
    from hub.runtime import build_pipeline
    from hub.worker import AdapterWorker

    worker = AdapterWorker(config, adapter, build_pipeline(config, adapter), WorkerMetrics(CollectorRegistry()))
    thread = threading.Thread(target=worker.run, name=f"test-worker-{adapter}", daemon=True)
    thread.start()
    try:
        assert worker.connected.wait(20), "worker did not connect"
        yield worker
    finally:
        worker.stop()
        thread.join(60)
        worker.pipeline.close()
        assert not thread.is_alive(), "worker did not stop"


class StatusCollector:
    """Collects status events from hub.status on its own connection/thread."""

    def __init__(self, broker_url: str, binding: str = "#") -> None:
        self.events: list[StatusEvent] = []
        self.content_types: list[str | None] = []  # one per message: batches carry several events
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(broker_url, binding), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "status collector did not start"

    def _run(self, url: str, binding: str) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(url))
        ch = conn.channel()
        ch.exchange_declare(STATUS_EXCHANGE, "topic", durable=True)
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(q, STATUS_EXCHANGE, binding)

        def on(_ch: Any, method: Any, props: Any, body: bytes) -> None:
            with self._lock:
                self.content_types.append(props.content_type)
                self.events.extend(events_from_message(props.content_type, body))

        ch.basic_consume(q, on, auto_ack=True)
        self._ready.set()
        while not self._stop.is_set():
            conn.process_data_events(time_limit=0.1)
        conn.close()

    def of(self, message_id: str, event: str | None = None) -> list[StatusEvent]:
        with self._lock:
            return [e for e in self.events if e.message_id == message_id and (event is None or e.event == event)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def drain(broker_url: str, queue: str, expected: int, timeout: float = 20.0) -> list[tuple[Any, bytes]]:
    """Take ``expected`` messages off ``queue`` (acked), waiting up to ``timeout``."""
    conn = pika.BlockingConnection(pika.URLParameters(broker_url))
    ch = conn.channel()
    got: list[tuple[Any, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            time.sleep(0.1)
            continue
        got.append((props, body))
    conn.close()
    return got
