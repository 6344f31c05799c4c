"""hub_tracker_lag_seconds follows a backlog and returns to 0 once the queue is drained, so
HubTrackerLagHigh (monitoring/alerts.yml) ends with the backlog (real broker, real store)."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from hub.status import ACCEPTED, StatusEvent
from hub.tracking.store import open_store
from tests.integration.helpers import wait_for
from tests.integration.tracking_support import metric, publish, running_consumer, tracker_config

pytestmark = pytest.mark.broker
LATE = 900.0  # seconds: the events were published this long ago (a backlog)


def test_lag_shows_a_backlog_and_goes_back_to_zero_when_it_has_drained(fresh_broker_url: str, tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'tracking.db'}"
    config = tracker_config(fresh_broker_url, store_url)
    store = open_store(store_url)
    stop = threading.Event()

    def backlog() -> None:  # late events, arriving steadily (more often than the idle interval)
        while not stop.is_set():
            mid = f"lag-{uuid.uuid4().hex[:8]}"
            publish(fresh_broker_url, [StatusEvent(mid, ACCEPTED, "portal-a", "azr:000100", "alpha",
                                                   at=time.time() - LATE, attempt=1)])
            stop.wait(0.1)

    feeder = threading.Thread(target=backlog, daemon=True)
    try:
        with running_consumer(config, store) as consumer:
            feeder.start()
            wait_for(lambda: metric(consumer, "hub_tracker_lag_seconds") >= LATE, 30, what="the lag of the backlog")
            stop.set()
            feeder.join(10)
            wait_for(lambda: metric(consumer, "hub_tracker_lag_seconds") == 0, 30, what="the lag back to 0")
            assert metric(consumer, "hub_tracker_events_total", {"event": ACCEPTED}) >= 1
    finally:
        stop.set()
        store.close()
