"""The tracker's real consume loop ticks (not only the fake-clock tests of the Heartbeat): with a
stall limit of 2 s, /healthz stays 200 through 6 s of an idle queue and through a stream of
batches written to the store (real broker, real SQLite store, the tracker's own HTTP server)."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from hub.status import ACCEPTED, StatusEvent
from hub.tracking.service import TrackerService
from tests.integration.helpers import wait_for
from tests.integration.tracking_support import events_seen, publish, tracker_config
from tests.reliability.support import http_get

pytestmark = pytest.mark.broker
STALL = 2.0  # seconds: far below every wait of the loop while idle (0.25 s) or writing small batches




def _alive_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert http_get(f"{url}/healthz") == (200, "ok\n")
        time.sleep(0.5)


def test_the_tracker_loop_ticks_while_idle_and_while_writing(fresh_broker_url: str, tmp_path: Path) -> None:
    config = tracker_config(fresh_broker_url, f"sqlite:///{tmp_path / 'tracking.db'}", batch_size=5)
    service = TrackerService(config, http_port=0)
    service.consumer.heartbeat.stall_after = STALL  # the one /healthz asks
    stop = threading.Event()
    sent = [0]

    def feed() -> None:  # a steady stream: batches keep being written while /healthz is asked
        while not stop.is_set():
            publish(fresh_broker_url, [StatusEvent(f"live-{uuid.uuid4().hex[:8]}", ACCEPTED, "portal-a",
                                                   "azr:000100", "alpha", at=time.time(), attempt=1)
                                       for _ in range(7)])
            sent[0] += 7
            stop.wait(0.2)

    feeder = threading.Thread(target=feed, daemon=True)
    service.start()
    try:
        assert service.consumer.connected.wait(30), service.consumer.readiness()
        _alive_for(service.url, 3 * STALL)  # idle: nothing delivered
        feeder.start()
        _alive_for(service.url, 3 * STALL)
        stop.set()
        feeder.join(30)
        wait_for(lambda: events_seen(service.consumer) >= sent[0] > 0, 60, what="every event written")
        assert http_get(f"{service.url}/healthz") == (200, "ok\n")
    finally:
        stop.set()
        service.close(timeout=30)
