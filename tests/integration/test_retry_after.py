"""An endpoint's Retry-After moves a retry to a wait queue that is long enough, while the attempt
count goes on one by one: real RabbitMQ, a worker, the FIT-Connect simulator answering 429."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from hub.config import load_config
from hub.publisher import ConfirmingPublisher, publish_envelope
from hub.status import DEAD_LETTERED, DELIVERED, RETRY_SCHEDULED
from tests.integration.helpers import StatusCollector, running_worker, wait_for
from tests.reliability.fitconnect_support import write_fitconnect_config
from tests.reliability.support import applications
from transport.fitconnect.simulator import (
    FitConnectSimulatorSettings,
    RunningFitConnectSimulator,
    serve,
)
from transport.fitconnect.simulator.settings import DestinationSpec, FaultSettings

pytestmark = pytest.mark.broker

DESTINATION = "0b5d3c7e-8f1a-4c2b-9d6e-3a7f5b1c9e01"
RETRY_AFTER = 3  # seconds: longer than level 1 (1 s), shorter than level 2 (4 s)


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFitConnectSimulator]:
    state = tmp_path_factory.mktemp("fit-connect-state")
    with serve(FitConnectSimulatorSettings(
            state_dir=state,
            destinations=(DestinationSpec(id=DESTINATION), DestinationSpec(id="0b5d3c7e-8f1a-4c2b-9d6e-3a7f5b1c9e02")),
            faults=FaultSettings(retry_after=RETRY_AFTER))) as running:
        yield running


def test_retry_after_picks_the_wait_queue_and_keeps_the_attempt_count(
        broker_url: str, tmp_path: Path, simulator: RunningFitConnectSimulator) -> None:
    # two levels only: had each 429 used up a level of its own (Retry-After 3 s > level 1), the
    # second one would be the third attempt and go to the dead letters
    config = load_config(write_fitconnect_config(tmp_path, broker_url, simulator, adapter={
        "retry_delays": [1, 4], "breaker": {"consecutive_failures": 10, "cool_down": 1}}), environ={})
    [envelope] = applications(1, "retry-after", readers=("azr:000100",))
    status = StatusCollector(broker_url)
    try:
        with running_worker(config, "fit"):
            simulator.faults.refuse_next(2)  # the next two API calls: 429 with Retry-After
            with ConfirmingPublisher(config.broker, "test-portal") as publisher:
                publish_envelope(publisher, envelope).result(timeout=10)
            wait_for(partial(status.of, envelope.message_id, DELIVERED), 60, what="delivery after two 429s")
    finally:
        status.close()
        simulator.faults.clear()
    retries = status.of(envelope.message_id, RETRY_SCHEDULED)
    assert [e.detail["attempts"] for e in retries] == [1, 2]
    assert not status.of(envelope.message_id, DEAD_LETTERED)
    # each wait lasted at least Retry-After (level 2: 4 s), not level 1's 1 s
    events = sorted(status.of(envelope.message_id), key=lambda e: e.at)
    scheduled = [e.at for e in events if e.event == RETRY_SCHEDULED]
    delivered_at = next(e.at for e in events if e.event == DELIVERED)
    assert scheduled[1] - scheduled[0] >= RETRY_AFTER
    assert delivered_at - scheduled[1] >= RETRY_AFTER
