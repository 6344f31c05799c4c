"""Headers are untrusted and answers get lost: the worker neither crashes, misroutes nor duplicates."""

from __future__ import annotations

import pytest

from hub.publisher import ConfirmingPublisher
from hub.status import DEAD_LETTERED, DELIVERED, RETRY_SCHEDULED
from hub.topology import INBOUND_CHECKED
from tests.integration.helpers import (
    StatusCollector,
    make_config,
    running_worker,
    wait_for,
)
from tests.integration.test_xta_support import application, sim_config
from transport.xta.simulator import InjectedFault, serve

pytestmark = pytest.mark.broker


def _publish_with_headers(config, envelope, extra) -> None:
    with ConfirmingPublisher(config.broker, "test-portal") as publisher:
        props = envelope.properties(extra)
        publisher.publish_and_wait(INBOUND_CHECKED, envelope.destination, envelope.body(), props, mandatory=True)


@pytest.mark.parametrize("forged", [-1, "abc", 2**40, 99])
def test_forged_attempt_header_cannot_misroute_a_retry(fresh_broker_url, pki, forged) -> None:
    with serve(sim_config(pki)) as sim:
        sim.inject(InjectedFault(operation="sendMessage", code="9030", count=1))  # one transient failure
        config = make_config(fresh_broker_url, pki, sim.url, retry_delays=[0.5, 1])
        app = application("azr:000100", 7001)
        status = StatusCollector(fresh_broker_url)
        try:
            with running_worker(config, "alpha"):
                _publish_with_headers(config, app, {"x-hub-attempt": forged, "x-hub-first-failure": "garbage"})
                wait_for(lambda: status.of(app.message_id, DELIVERED) or status.of(app.message_id, DEAD_LETTERED),
                         30, what="an outcome")
        finally:
            status.close()
        received = sim.store.messages()
    [retry] = status.of(app.message_id, RETRY_SCHEDULED) or [None]
    if isinstance(forged, int) and forged > 2:  # beyond the ladder: clamped to its end, so it dead-letters
        assert status.of(app.message_id, DEAD_LETTERED) and not received
    else:  # nonsense is ignored: first retry, then delivered
        assert retry is not None and retry.detail["attempts"] == 1
        assert status.of(app.message_id, DELIVERED) and len(received) == 1


def test_string_test_flag_is_refused_not_misread(fresh_broker_url, pki) -> None:
    with serve(sim_config(pki)) as sim:
        config = make_config(fresh_broker_url, pki, sim.url)
        app = application("azr:000100", 7002)
        status = StatusCollector(fresh_broker_url)
        try:
            with running_worker(config, "alpha"):
                _publish_with_headers(config, app, {"x-test": "false"})
                [event] = wait_for(lambda: status.of(app.message_id, DEAD_LETTERED), 30, what="dead letter")
        finally:
            status.close()
    assert event.detail["reason"] == "envelope"
    assert not sim.store.messages()


def test_lost_answer_after_acceptance_is_delivered_exactly_once(fresh_broker_url, pki) -> None:
    with serve(sim_config(pki)) as sim:
        # the server accepts the message, then the connection drops before the answer arrives
        sim.inject(InjectedFault(operation="sendMessage", drop=True, after_processing=True, count=1))
        config = make_config(fresh_broker_url, pki, sim.url, retry_delays=[0.5, 1])
        app = application("azr:000100", 7003)
        status = StatusCollector(fresh_broker_url)
        try:
            with running_worker(config, "alpha"):
                _publish_with_headers(config, app, {})
                [event] = wait_for(lambda: status.of(app.message_id, DELIVERED), 30, what="delivery")
        finally:
            status.close()
        received = sim.store.messages()
    assert status.of(app.message_id, RETRY_SCHEDULED), "the lost answer must have looked transient"
    # the re-send under the same id got 9024: the first confirmation of our own accepted send, not a duplicate
    assert event.detail["duplicate"] is False and event.detail["accepted_on_resend"] is True
    assert len(received) == 1 and received[0].message_id == event.detail["xta_message_id"]
