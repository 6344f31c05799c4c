"""Status batches on the real broker ([status] batch_window > 0): a real worker delivering to the XTA
simulator publishes every event of every application (accepted, delivering, delivered and the
transport reports from the report scheduler) in a handful of batch messages on hub.status, which a
portal bound to '<portal>.#' receives and reads like single events."""

from __future__ import annotations

from functools import partial

import pytest

from hub.config import StatusConfig
from hub.status import ACCEPTED, BATCH_CONTENT_TYPE, DELIVERED, DELIVERING, TRANSPORT_REPORT
from tests.integration.helpers import StatusCollector, make_config, running_worker, wait_for
from tests.integration.test_xta_support import application, publish, sim_config
from transport.xta.simulator import serve

pytestmark = pytest.mark.broker
APPS = 24


def _complete(status: StatusCollector, message_id: str) -> bool:
    return bool(status.of(message_id, DELIVERED)) and bool(status.of(message_id, TRANSPORT_REPORT))


def test_every_event_arrives_in_batches_of_the_portal(fresh_broker_url, pki) -> None:
    with serve(sim_config(pki)) as sim:
        config = make_config(fresh_broker_url, pki, sim.url,
                             adapter_overrides={"report_poll_interval": 0.5, "report_first_poll_delay": 0.1})
        config = config.model_copy(update={"status": StatusConfig(batch_window=0.3, batch_max_events=10)})
        apps = [application("azr:000100", 9500 + i, size=2_000) for i in range(APPS)]
        status = StatusCollector(fresh_broker_url, f"{apps[0].portal}.#")
        try:
            with running_worker(config, "alpha") as worker:
                publish(config, apps)
                for app in apps:
                    wait_for(partial(_complete, status, app.message_id), 90,
                             what=f"delivered and the transport report of {app.message_id}")
                batches = worker.events.batcher.batches_published
        finally:
            status.close()
    for app in apps:
        steps = [e.event for e in sorted(status.of(app.message_id), key=lambda e: (e.at, e.precedence))]
        assert steps[:3] == [ACCEPTED, DELIVERING, DELIVERED], steps
        assert status.of(app.message_id, TRANSPORT_REPORT)[0].detail["traffic_light"] == "green"
    events = len(status.events)
    assert events >= 4 * APPS
    assert set(status.content_types) == {BATCH_CONTENT_TYPE}, "an event went out on its own"
    assert all(len(status.of(app.message_id, DELIVERED)) == 1 for app in apps)
    # at most 10 events each: at least 4 * 24 / 10 messages, and far fewer than one per event
    assert 10 <= len(status.content_types) <= events // 2, (len(status.content_types), events)
    assert batches >= 1
