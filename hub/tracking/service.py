"""The tracker process (`hub tracker`): the status consumer plus the tracking HTTP server.

The consumer writes ``hub.tracker`` into the store on its own thread; a threaded werkzeug server
answers the API, the page, ``/metrics``, ``/healthz`` and ``/readyz`` from the same store. Ready
means: consuming, the store answers (the last write succeeded and a cheap probe query works), and
the tokens file is usable. ``/readyz`` is answered without a token, so its reasons are generic
("tracking store unreachable"); the details (hosts, users, driver messages) go to the log only.
Alive (``/healthz``) means the consumer's loop ticks. ``hub_tracker_applications{state}`` is counted
in the store at most once a minute, off the scrape's path (``ApplicationStates``). Stopping finishes
the batch in hand before the connection closes.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from werkzeug.serving import BaseWSGIServer, make_server

from hub.config import HubConfig
from hub.errors import ConfigError, HubError
from hub.health import CachedCheck
from hub.metrics import register_build_info
from hub.tracking.consumer import (
    STORE_UNREACHABLE,
    StatusConsumer,
    TrackerConsumerFailed,
    TrackerMetrics,
)
from hub.tracking.model import Scope, TrackingStore

log = logging.getLogger("hub.tracker")

_PROBE = "hub-readiness-probe"  # an id no application has: the probe is one index lookup
STOP_TIMEOUT = 60.0  # seconds to wait for the batch in hand on shutdown


def config_base(config: HubConfig) -> Path:
    """The folder relative store paths (``sqlite:///var/...``) are resolved against."""
    return config.source.parent if config.source else Path.cwd()


def open_tracking_store(config: HubConfig) -> TrackingStore:
    """The configured store ([tracker] store), schema migrations applied."""
    from hub.tracking.store import open_store

    return open_store(config.tracker.store, base=config_base(config))


class ApplicationStates(Collector):
    """``hub_tracker_applications{state}``: applications per state from the store's counts query
    (one GROUP BY over every application), cached: a scrape never waits for the store. The query
    shares the store's connection and lock with ingest and the API, so a slow or hung database
    would otherwise hold /metrics past Prometheus' scrape timeout (up=0, HubTargetDown) instead of
    showing as store errors. A scrape starts a refresh on its own thread when the counts are older
    than ``every`` seconds and none is running, waits at most ``wait`` seconds for it, and answers
    with the newest counts. No sample (absent, not 0: an alert must not read "nothing
    dead-lettered") while ``store_ok`` says the store is failing (no query is sent then either),
    after a failed refresh, or when the counts are older than ``3 * every``; a failed refresh is
    logged at most once per ``log_every`` seconds."""

    NAME = "hub_tracker_applications"

    def __init__(self, store: TrackingStore, *, store_ok: Callable[[], bool] = lambda: True, every: float = 60.0,
                 wait: float = 1.0, log_every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._store_ok = store_ok
        self._every = every
        self._wait = wait
        self._log_every = log_every
        self._clock = clock
        self._lock = threading.Lock()  # guards the fields below, never held during the query
        self._counts: dict[str, int] | None = None
        self._counted_at: float | None = None  # when the query behind ``_counts`` started
        self._tried_at: float | None = None  # when the last refresh started
        self._running = False
        self._logged_at: float | None = None

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # no query at registration: the store is asked only when /metrics is

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self.current()
        if counts is None:
            return
        family = GaugeMetricFamily(self.NAME, "Applications in the tracking store, by state", labels=["state"])
        for state, count in counts.items():
            family.add_metric([state], count)
        yield family

    def current(self) -> dict[str, int] | None:
        """The counts a scrape reports (None: no sample); starts a refresh when they are due."""
        if not self._store_ok():
            return None  # the consumer's writes fail: no query on a struggling store, no stale counts
        done: threading.Event | None = None
        with self._lock:
            now = self._clock()
            if not self._running and (self._tried_at is None or now - self._tried_at >= self._every):
                self._running, self._tried_at, done = True, now, threading.Event()
                threading.Thread(target=self._refresh, args=(now, done), name="tracker-application-states",
                                 daemon=True).start()
        if done is not None:
            done.wait(self._wait)  # a store that answers at once: this scrape already sees the new counts
        with self._lock:
            if self._counts is None or self._counted_at is None or self._clock() - self._counted_at > 3 * self._every:
                return None
            return dict(self._counts)

    def _refresh(self, started: float, done: threading.Event) -> None:
        try:
            counts: dict[str, int] | None = self._store.counts(Scope.operator())
        except Exception as exc:  # noqa: BLE001 - any store trouble: no sample, never a failed scrape
            counts = None
            if self._logged_at is None or started - self._logged_at >= self._log_every:
                self._logged_at = started
                log.warning("hub_tracker_applications not available: tracking store did not answer (%s)",
                            type(exc).__name__)
        with self._lock:
            self._counts, self._counted_at = counts, started if counts is not None else None
            self._running = False
        done.set()


class TrackerService:
    """Consumer thread + HTTP server over one store; ``start`` / ``close``."""

    def __init__(self, config: HubConfig, *, http_port: int | None = None, store: TrackingStore | None = None,
                 batch_size: int | None = None) -> None:
        from hub.tracking.api import TrackingHttp
        from hub.tracking.auth import TokenRegistry

        self.config = config
        tokens = TokenRegistry.from_file(config.tracker.tokens_file)  # before the store: nothing to close on error
        self.tokens = tokens
        self.store = store if store is not None else open_tracking_store(config)
        self.registry = CollectorRegistry()
        self.metrics = TrackerMetrics(self.registry)
        register_build_info(self.registry, "tracker")
        self.consumer = StatusConsumer(config, self.store, self.metrics, batch_size=batch_size)
        self.registry.register(ApplicationStates(self.store, store_ok=lambda: self.consumer.store_problem is None))
        self._store_check = CachedCheck("tracking store", self._probe_store, ttl=10.0)
        self._store_said: str | None = None  # the last store problem logged (logged once per change)
        app = TrackingHttp(self.store, tokens, page_size=config.tracker.page_size, registry=self.registry,
                           ready=self.ready, live=self.consumer.heartbeat,
                           secure_cookies=config.tracker.secure_cookies)
        port = config.tracker.port if http_port is None else http_port
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        try:
            self._server: BaseWSGIServer = make_server(config.tracker.host, port, app, threaded=True)
        except OSError as exc:
            if store is None:
                self.store.close()
            raise ConfigError(f"tracker.port: cannot listen on {config.tracker.host}:{port} "
                              f"({exc.strerror or type(exc).__name__})") from None
        self._server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._http_thread = threading.Thread(target=self._server.serve_forever, name="tracker-http", daemon=True)
        self._consumer_thread = threading.Thread(target=self.consumer.run, name="tracker-consumer", daemon=True)
        self._closed = False

    @property
    def url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"http://{host}:{port}"

    @property
    def consumer_alive(self) -> bool:
        return self._consumer_thread.is_alive()

    def start(self) -> TrackerService:
        self._consumer_thread.start()
        self._http_thread.start()
        return self

    def ready(self) -> tuple[bool, str]:
        """(ready, generic reason) for /readyz."""
        ok, detail = self.consumer.readiness()
        if not ok:
            return ok, detail
        store_ok, store_detail = self._store_check()
        if not store_ok:
            if store_detail != self._store_said:
                log.warning("tracker not ready: %s", store_detail)
                self._store_said = store_detail
            return False, STORE_UNREACHABLE
        self._store_said = None
        if self.tokens.problem is not None:
            return False, self.tokens.problem
        return True, detail

    def _probe_store(self) -> None:
        self.store.trace(_PROBE, Scope(_PROBE))  # raises TrackingStoreUnavailable when it cannot answer

    def close(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop consuming (the batch in hand is written and acked first), then the server, then the store."""
        if self._closed:
            return
        self._closed = True
        self.consumer.stop()
        if self._consumer_thread.is_alive():
            self._consumer_thread.join(timeout)
            if self._consumer_thread.is_alive():
                log.warning("tracker consumer did not stop within %.0fs; unacked events come back", timeout)
        if self._http_thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(Exception):  # closing a store that already failed
            self.store.close()


def run_tracker(config: HubConfig, *, http_port: int | None = None, stop: threading.Event,
                on_start: Callable[[TrackerService], None] | None = None) -> None:
    """Run the tracker until ``stop`` is set (SIGTERM/SIGINT in `hub tracker`). Raises the error
    that ended the consumer, if one did (a ConfigError: broker refused login or vhost at start, or
    its queue disagrees with the configuration; anything unexpected), so the process never exits 0
    with its consumer dead."""
    service = TrackerService(config, http_port=http_port)
    try:
        service.start()
        if on_start is not None:
            on_start(service)
        while not stop.wait(0.5):
            if not service.consumer_alive:
                break
    finally:
        service.close()
    error: HubError | None = service.consumer.error
    if error is None and not stop.is_set():  # the thread ended by itself, and said nothing
        error = TrackerConsumerFailed("tracker consumer stopped unexpectedly; see the log")
    if error is not None:
        raise error
