"""Fault injection of the simulator: error codes at a rate, dropped connections (before and after
processing), added latency, outage windows; by config, by HTTP and from the command line."""

from __future__ import annotations

import time

import pytest
import requests
from xta_testdata import AUTHOR, content, metadata

from hub.errors import EndpointUnavailable, XtaFault
from tests.clock import SteppedClock
from transport.xta.client import XtaClient, XtaEndpoint
from transport.xta.container import build_content_container, generic_container
from transport.xta.simulator import (
    ChaosConfig,
    FaultRate,
    InjectedFault,
    Outage,
    SimulatorConfig,
    serve,
)
from transport.xta.simulator.cli import build_config, parser


def _client(running, timeout: float = 5) -> XtaClient:
    return XtaClient(XtaEndpoint(running.url, timeout=timeout))


def test_error_code_at_a_rate_is_repeatable_with_a_seed() -> None:
    outcomes = []
    for _ in range(2):
        chaos = ChaosConfig(fault_rates=(FaultRate(0.5, code="9030", operation="createMessageId"),), seed=7)
        with serve(SimulatorConfig(chaos=chaos)) as running:
            client, run = _client(running), []
            for _ in range(40):
                try:
                    client.create_message_id(AUTHOR)
                    run.append("ok")
                except XtaFault as fault:
                    assert fault.code == "9030" and fault.transient
                    run.append("9030")
            assert client.check_account_active(AUTHOR)  # other operations unaffected
        outcomes.append(run)
    assert outcomes[0] == outcomes[1]
    assert 8 < outcomes[0].count("9030") < 32


def test_http_status_at_a_rate() -> None:
    chaos = ChaosConfig(fault_rates=(FaultRate(1.0, http_status=502),))
    with serve(SimulatorConfig(chaos=chaos)) as running, pytest.raises(EndpointUnavailable):
        _client(running).create_message_id(AUTHOR)


def test_dropped_connections() -> None:
    with (serve(SimulatorConfig(chaos=ChaosConfig(drop_rate=1.0))) as running,
          pytest.raises(EndpointUnavailable, match="connection failed")):
        _client(running).create_message_id(AUTHOR)


def test_drop_after_processing_then_resend_gets_9024() -> None:
    with serve(SimulatorConfig()) as running:
        client = _client(running)
        message_id = client.create_message_id(AUTHOR)
        container = generic_container(build_content_container(content()))
        running.inject(InjectedFault(operation="sendMessage", drop=True, after_processing=True))
        with pytest.raises(EndpointUnavailable):
            client.send_message(metadata(message_id), container)
        assert running.store.get(message_id) is not None  # accepted, only the answer was lost
        with pytest.raises(XtaFault) as info:
            client.send_message(metadata(message_id), container)
        assert info.value.code == "9024"


def test_drop_before_processing_keeps_the_message_id_usable() -> None:
    with serve(SimulatorConfig()) as running:
        client = _client(running)
        message_id = client.create_message_id(AUTHOR)
        container = generic_container(build_content_container(content()))
        running.inject(InjectedFault(operation="sendMessage", drop=True))
        with pytest.raises(EndpointUnavailable):
            client.send_message(metadata(message_id), container)
        assert running.store.get(message_id) is None
        client.send_message(metadata(message_id), container)


def test_outage_window() -> None:
    """Windows follow the simulator's clock (stepped here), so a busy machine cannot shift them."""
    clock = SteppedClock()
    chaos = ChaosConfig(outages=(Outage(start=0.0, duration=60, mode="503"),
                                 Outage(start=60, duration=30, mode="drop"),
                                 Outage(start=90, duration=30, mode="9031")))
    with serve(SimulatorConfig(chaos=chaos, clock=clock)) as running:
        client = _client(running)
        with pytest.raises(EndpointUnavailable, match="HTTP 503"):
            client.create_message_id(AUTHOR)
        clock.advance(59)
        with pytest.raises(EndpointUnavailable, match="HTTP 503"):  # still inside the first window
            client.create_message_id(AUTHOR)
        clock.advance(1)
        with pytest.raises(EndpointUnavailable, match="connection failed"):
            client.create_message_id(AUTHOR)
        clock.advance(30)
        with pytest.raises(XtaFault) as info:
            client.create_message_id(AUTHOR)
        assert info.value.code == "9031"
        clock.advance(30)
        assert client.create_message_id(AUTHOR)  # the outage is over


def test_latency_injection_and_jitter() -> None:
    with serve(SimulatorConfig(chaos=ChaosConfig(latency=0.2, latency_jitter=0.1, seed=1))) as running:
        client = _client(running)
        started = time.monotonic()
        client.check_account_active(AUTHOR)
        assert time.monotonic() - started >= 0.2  # a lower bound only: a busy machine adds, never removes
        running.inject(InjectedFault(operation="createMessageId", latency=0.5))
        with pytest.raises(EndpointUnavailable, match="timeout"):
            _client(running, timeout=0.4).create_message_id(AUTHOR)


def test_chaos_over_http() -> None:
    with serve(SimulatorConfig()) as running:
        spec = {"fault_rates": [{"rate": 1.0, "code": "9032", "operation": "createMessageId"}], "seed": 3}
        answer = requests.post(f"{running.base_url}/_sim/chaos", json=spec, timeout=5)
        assert answer.status_code == 200 and answer.json()["fault_rates"][0]["code"] == "9032"
        with pytest.raises(XtaFault) as info:
            _client(running).create_message_id(AUTHOR)
        assert info.value.code == "9032"
        assert requests.post(f"{running.base_url}/_sim/chaos", json={"drop_rate": 2}, timeout=5).status_code == 400
        assert requests.post(f"{running.base_url}/_sim/chaos", json={}, timeout=5).status_code == 200
        assert _client(running).create_message_id(AUTHOR)
        drop = requests.post(f"{running.base_url}/_sim/inject", json={"drop": True, "after_processing": True},
                             timeout=5)
        assert drop.status_code == 201
        assert requests.post(f"{running.base_url}/_sim/inject", json={"after_processing": True},
                             timeout=5).status_code == 400


def test_cli_flags_build_the_same_config(tmp_path) -> None:
    args = parser().parse_args([
        "--fault-rate", "9030:0.25:sendMessage", "--fault-rate", "http503:0.1", "--drop-rate", "0.05",
        "--outage", "60:30", "--outage", "120:10:drop", "--latency", "0.1", "--latency-jitter", "0.2",
        "--seed", "42", "--report-delay", "2", "--report-status", "azr:000300=3", "--sync-service", "urn:s",
        "--account-state", "alp:locked=locked", "--service", "azr:000100=urn:a", "--no-mtom-responses",
        "--max-container-bytes", "1000"])
    config = build_config(args)
    assert config.chaos.fault_rates == (FaultRate(0.25, code="9030", operation="sendMessage"),
                                        FaultRate(0.1, http_status=503))
    assert config.chaos.drop_rate == 0.05 and config.chaos.seed == 42
    assert config.chaos.outages == (Outage(60, 30, "503"), Outage(120, 10, "drop"))
    assert (config.latency, config.chaos.latency_jitter) == (0.1, 0.2)
    assert config.report_delay == 2 and config.report_status == {"azr:000300": 3}
    assert config.sync_services == frozenset({"urn:s"}) and config.account_states == {"alp:locked": "locked"}
    assert config.services == {"azr:000100": frozenset({"urn:a"})}
    assert config.mtom_responses is False and config.max_container_bytes == 1000
    with pytest.raises(SystemExit):
        build_config(parser().parse_args(["--fault-rate", "9030:2"]))
