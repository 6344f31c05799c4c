"""Stage timings and retries by level, from a real delivery: RabbitMQ, a worker, the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hub.publisher import ConfirmingPublisher, publish_envelope
from hub.stages import STAGES
from tests.integration.helpers import make_config, running_worker, wait_for
from tests.integration.test_delivery import _application, _sim_config
from transport.xta.simulator import InjectedFault, RunningSimulator, serve

pytestmark = pytest.mark.broker


@pytest.fixture()
def simulator(pki: Any) -> Iterator[RunningSimulator]:
    running = serve(_sim_config(pki))
    try:
        yield running
    finally:
        running.stop()


def _count(worker: Any, name: str, **labels: str) -> float:
    return worker.metrics.registry.get_sample_value(name, {"adapter": "alpha", **labels}) or 0.0


def test_a_delivery_is_timed_in_every_stage(broker_url: str, pki: Any, simulator: RunningSimulator) -> None:
    config = make_config(broker_url, pki, simulator.url)
    with running_worker(config, "alpha") as worker:
        with ConfirmingPublisher(config.broker, "test-portal") as publisher:
            publish_envelope(publisher, _application("azr:000100", 71)).result(timeout=30)
        wait_for(lambda: _count(worker, "hub_messages_processed_total", outcome="delivered") == 1, 30,
                 what="the delivery")
        counts = {stage: _count(worker, "hub_stage_duration_seconds_count", stage=stage) for stage in STAGES}
        sums = {stage: _count(worker, "hub_stage_duration_seconds_sum", stage=stage) for stage in STAGES}
    # the ledger is asked three times: lookup, allocate, mark delivered; the transport is called twice
    # (createMessageId for the id the ledger records, then sendMessage): network time is "send", never "ledger"
    assert counts == {"decode": 1, "ledger": 3, "parse": 1, "validate": 1, "lookup": 1, "sign": 1,
                      "encrypt": 1, "send": 2}, counts
    assert all(sums[stage] > 0 for stage in STAGES), sums
    assert _count(worker, "hub_retries_total", level="1") == 0


def test_a_retry_counts_its_level_and_a_failed_send_is_timed_too(broker_url: str, pki: Any,
                                                                simulator: RunningSimulator) -> None:
    config = make_config(broker_url, pki, simulator.url, retry_delays=[1, 2])
    simulator.inject(InjectedFault(operation="sendMessage", http_status=503, count=2))
    with running_worker(config, "alpha") as worker:
        with ConfirmingPublisher(config.broker, "test-portal") as publisher:
            publish_envelope(publisher, _application("azr:000100", 72)).result(timeout=30)
        wait_for(lambda: _count(worker, "hub_messages_processed_total", outcome="delivered") == 1, 60,
                 what="the delivery after two retries")
        assert _count(worker, "hub_retries_total", level="1") == 1
        assert _count(worker, "hub_retries_total", level="2") == 1
        assert _count(worker, "hub_retries_total", level="3") == 0
        # createMessageId once (the id is kept across retries), then two failed sends and one accepted
        assert _count(worker, "hub_stage_duration_seconds_count", stage="send") == 4
        assert _count(worker, "hub_stage_duration_seconds_count", stage="decode") == 3
