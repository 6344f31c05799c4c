"""Each XTA fault class drives the right outcome through a real worker on RabbitMQ.

Transient (XTA 9030/9031/9032, HTTP 5xx, dropped connections, outage windows, answers that make no
sense: HTML, text, empty, SOAP 1.1, empty or wrong body, truncated MTOM) -> retry ladder
(``retry_scheduled`` attempt 1, 2, ...) and delivered once the endpoint recovers, or dead-lettered
with the reason after the ladder is exhausted. Permanent (every other code, the size limit, a
service the reader does not offer) -> ``hub.dead`` at once (attempt 1) with the reason headers. An answer lost
or garbled after the server accepted the message -> retry -> 9024 -> delivered once, as a first delivery.
"""

from __future__ import annotations

from typing import Any

import pytest

from hub.status import DEAD_LETTERED, DELIVERED, RETRY_SCHEDULED
from tests.clock import SteppedClock
from tests.integration.helpers import (
    AUTHOR,
    StatusCollector,
    make_config,
    running_worker,
    wait_for,
)
from tests.integration.test_xta_support import (
    application,
    dead_letters,
    outcome,
    publish,
    retries,
    sim_config,
)
from transport.xta.simulator import ChaosConfig, FaultRate, InjectedFault, Outage, serve

pytestmark = pytest.mark.broker

# seconds; two retries, then dead letter. Short: what is tested is that (and why) a retry comes, not
# when; the wait itself is the broker's per-queue TTL (tests/unit/test_topology_plan.py)
LADDER: list[float] = [0.25, 0.25]

TRANSIENT: list[tuple[str, dict[str, Any], InjectedFault]] = [
    # (case, simulator changes, injection)
    ("xta_9030_send", {}, InjectedFault(operation="sendMessage", code="9030")),
    ("xta_9031_create_id", {}, InjectedFault(operation="createMessageId", code="9031")),
    ("xta_9032_lookup", {}, InjectedFault(operation="lookupService", code="9032")),
    ("http_503", {}, InjectedFault(operation="sendMessage", http_status=503)),
    ("dropped_connection", {}, InjectedFault(operation="sendMessage", drop=True)),
    # answers that make no sense are the endpoint's fault (pitfall 11): retried, never dead-lettered at once
    ("garbage_empty_body_create_id", {}, InjectedFault(operation="createMessageId", garbage="empty-body")),
    ("garbage_wrong_body_lookup", {}, InjectedFault(operation="lookupService", garbage="wrong-body")),
    ("garbage_html_send", {}, InjectedFault(operation="sendMessage", garbage="html")),
    ("garbage_text_create_id", {}, InjectedFault(operation="createMessageId", garbage="text")),
    ("garbage_empty_200_send", {}, InjectedFault(operation="sendMessage", garbage="empty")),
    ("garbage_soap11_lookup", {}, InjectedFault(operation="lookupService", garbage="soap11")),
    # accepted, then the answer is cut off: the re-send gets 9024 and counts as delivered
    ("garbage_truncated_mtom_send", {}, InjectedFault(operation="sendMessage", garbage="truncated-mtom")),
]

PERMANENT = [
    # (case, simulator changes, adapter options, expected x-hub-reason, expected x-hub-xta-code)
    ("account_unknown", {"accounts": frozenset({"alp:other"})}, {}, "xta_9012", "9012"),
    ("account_locked", {"account_states": {AUTHOR["identifier"]: "locked"}}, {}, "xta_9011", "9011"),
    ("service_not_booked", {"booked_services": {AUTHOR["identifier"]: frozenset({"urn:other"})}}, {},
     "xta_9013", "9013"),
    ("server_size_limit", {"max_container_bytes": 10_000}, {}, "xta_9023", "9023"),
    ("content_undecryptable", {}, {}, "xta_9052", "9052"),  # reader key replaced below
    ("service_not_offered", {"services": {"azr:000100": frozenset({"urn:other"})}}, {},
     "xta_service_unavailable", None),
    ("hub_size_limit", {}, {"max_container_bytes": 10_000}, "content_too_large", None),
]


def _deliver_one(broker_url, pki, sim_changes, options=None, *, injection=None, seed: int, size: int = 24_000):
    config_sim = sim_config(pki, **sim_changes)
    with serve(config_sim) as sim:
        if injection is not None:
            sim.inject(injection)
        config = make_config(broker_url, pki, sim.url, retry_delays=LADDER,
                             adapter_overrides={"options": options or {}})
        envelope = application("azr:000100", seed, size=size)
        status = StatusCollector(broker_url)
        try:
            with running_worker(config, "alpha"):
                publish(config, [envelope])
                final = outcome(status, envelope.message_id)
            attempts = retries(status, envelope.message_id)
        finally:
            status.close()
        return envelope, final, attempts, sim


@pytest.mark.parametrize("case, sim_changes, injection", TRANSIENT, ids=[c[0] for c in TRANSIENT])
def test_transient_faults_are_retried_and_then_delivered(broker_url, pki, case, sim_changes, injection) -> None:
    seed = 7000 + [c[0] for c in TRANSIENT].index(case)
    envelope, final, attempts, sim = _deliver_one(broker_url, pki, sim_changes, injection=injection, seed=seed)
    assert final.event == DELIVERED, final
    assert attempts[:1] == [1]  # at least one retry was scheduled
    assert len(sim.store) == 1
    assert sim.store.messages()[0].parts[0].data == envelope.content.message.data


def test_outage_window_is_retried_until_the_endpoint_is_back(fresh_broker_url, pki) -> None:
    """The window ends when the test steps the simulator's clock (after a retry was scheduled), so a
    slow start of the worker on a busy machine cannot make the outage pass unseen. (A fresh vhost: its
    ladder of 1 s steps, long enough not to run out before the clock is stepped, differs from LADDER,
    and a retry queue's TTL is fixed when it is declared.)"""
    broker_url = fresh_broker_url
    clock = SteppedClock()
    chaos = ChaosConfig(outages=(Outage(0, 60, "503"),))
    with serve(sim_config(pki, chaos=chaos, clock=clock)) as sim:
        config = make_config(broker_url, pki, sim.url, retry_delays=[1] * 10)  # retries keep coming meanwhile
        envelope = application("azr:000100", 7006)
        status = StatusCollector(broker_url)
        try:
            with running_worker(config, "alpha"):
                publish(config, [envelope])
                wait_for(lambda: status.of(envelope.message_id, RETRY_SCHEDULED), 60, what="a retry in the outage")
                clock.advance(60)
                final = outcome(status, envelope.message_id)
            attempts = retries(status, envelope.message_id)
        finally:
            status.close()
    assert final.event == DELIVERED, final
    assert attempts[:1] == [1]
    assert len(sim.store) == 1
    assert sim.store.messages()[0].parts[0].data == envelope.content.message.data


ACCEPTED_THEN_ANSWER_BROKEN = [
    # (case, adapter options, injection): the server carries sendMessage out, its answer never arrives whole
    ("dropped_answer", {}, InjectedFault(operation="sendMessage", drop=True, after_processing=True)),
    ("truncated_mtom_answer", {}, InjectedFault(operation="sendMessage", garbage="truncated-mtom")),
    ("empty_body_sync_answer", {"send_mode": "sync"}, InjectedFault(operation="sendMessageSync", garbage="empty-body")),
]


@pytest.mark.parametrize("case, options, injection", ACCEPTED_THEN_ANSWER_BROKEN,
                         ids=[c[0] for c in ACCEPTED_THEN_ANSWER_BROKEN])
def test_acceptance_confirmed_by_9024_on_resend_is_a_first_delivery(fresh_broker_url, pki, case, options,
                                                                     injection) -> None:
    """9024 after our own send whose answer we never read is the first confirmed acceptance: delivered
    (not a duplicate), the breaker counts a success, the transport report is followed. Only a replay
    of an application the ledger knows as delivered is a duplicate. (A fresh vhost: the report wait
    queue's TTL differs from the module's.)"""
    broker_url = fresh_broker_url
    seed = 7100 + [c[0] for c in ACCEPTED_THEN_ANSWER_BROKEN].index(case)
    with serve(sim_config(pki)) as sim:
        sim.inject(injection)
        config = make_config(broker_url, pki, sim.url, retry_delays=LADDER,
                             adapter_overrides={"options": options, "report_poll_interval": 0.5})
        envelope = application("azr:000100", seed)
        status = StatusCollector(broker_url)
        try:
            with running_worker(config, "alpha") as worker:
                publish(config, [envelope])
                final = outcome(status, envelope.message_id)
                [report] = wait_for(lambda: status.of(envelope.message_id, "transport_report"), 60,
                                    what="the transport report of the delivery")
                outcomes = list(worker.breaker._recent)  # True = success, False = endpoint failure
                publish(config, [envelope])  # a replay of the delivered application: the ledger's duplicate
                second = wait_for(lambda: status.of(envelope.message_id, DELIVERED)[1:], 60, what="the replay")[0]
            attempts = retries(status, envelope.message_id)
        finally:
            status.close()
    assert final.event == DELIVERED, final
    assert final.detail["duplicate"] is False and final.detail["accepted_on_resend"] is True
    assert attempts == [1]  # the broken answer was retried once; the re-send got 9024
    assert outcomes == [False, True]
    assert report.detail["xta_message_id"] == final.detail["xta_message_id"] and report.detail["traffic_light"] == "green"
    assert second.detail["duplicate"] is True and "accepted_on_resend" not in second.detail
    assert len(sim.store) == 1 and sim.store.stats()["faults"].get("9024") == 1


def test_transient_fault_that_persists_exhausts_the_ladder(broker_url, pki) -> None:
    chaos = ChaosConfig(fault_rates=(FaultRate(1.0, code="9030", operation="sendMessage"),))
    envelope, final, attempts, sim = _deliver_one(broker_url, pki, {"chaos": chaos}, seed=7200)
    assert final.event == DEAD_LETTERED
    assert attempts == [1, 2]
    headers = dead_letters(broker_url, {envelope.message_id})[envelope.message_id]
    assert headers["x-hub-reason"] == "xta_9030" and headers["x-hub-xta-code"] == "9030"
    assert headers["x-hub-attempts"] == 3 and headers["x-hub-error-class"] == "XtaFault"
    assert len(sim.store) == 0


def test_http_errors_that_persist_are_dead_lettered_as_endpoint_unavailable(broker_url, pki) -> None:
    chaos = ChaosConfig(fault_rates=(FaultRate(1.0, http_status=502),))
    envelope, final, attempts, _ = _deliver_one(broker_url, pki, {"chaos": chaos}, seed=7300)
    assert final.event == DEAD_LETTERED and attempts == [1, 2]
    headers = dead_letters(broker_url, {envelope.message_id})[envelope.message_id]
    assert headers["x-hub-reason"] == "endpoint_unavailable" and headers["x-hub-attempts"] == 3


@pytest.mark.parametrize("case, sim_changes, options, reason, code", PERMANENT, ids=[c[0] for c in PERMANENT])
def test_permanent_faults_are_dead_lettered_at_once(broker_url, pki, case, sim_changes, options, reason, code) -> None:
    seed = 7400 + [c[0] for c in PERMANENT].index(case)
    if case == "content_undecryptable":  # the reader's key does not match the directory's certificate
        from transport.security.keys import load_private_key

        sim_changes = {"reader_keys": {"azr:000100": load_private_key(pki["mallory"][0])}}
    envelope, final, attempts, sim = _deliver_one(broker_url, pki, sim_changes, options, seed=seed)
    assert final.event == DEAD_LETTERED, final
    assert attempts == []  # no retry
    headers = dead_letters(broker_url, {envelope.message_id})[envelope.message_id]
    assert headers["x-hub-reason"] == reason
    assert headers["x-hub-attempts"] == 1 and headers["x-hub-adapter"] == "alpha"
    assert headers.get("x-hub-xta-code") == code
    assert len(sim.store) == 0
    if case == "hub_size_limit":
        assert "max_container_bytes" in headers["x-hub-error-message"]
        assert "sendMessage" not in sim.store.stats()["calls"]  # refused before sending


def test_garbage_that_persists_exhausts_the_ladder_as_endpoint_protocol(broker_url, pki) -> None:
    """Nonsense is retried along the ladder like an outage; only then dead-lettered, with its own reason."""
    envelope, final, attempts, sim = _deliver_one(broker_url, pki, {}, injection=InjectedFault(
        operation="sendMessage", garbage=True, count=100), seed=7500)
    assert final.event == DEAD_LETTERED and attempts == [1, 2]
    headers = dead_letters(broker_url, {envelope.message_id})[envelope.message_id]
    assert headers["x-hub-reason"] == "endpoint_protocol" and headers["x-hub-error-class"] == "MalformedAnswer"
    assert headers["x-hub-attempts"] == 3
    assert len(sim.store) == 0
