from __future__ import annotations

from pathlib import Path

from hub.config import load_config
from hub.topology import (
    INBOUND,
    INBOUND_CHECKED,
    Binding,
    deliver_queue,
    plan_topology,
    retry_queue,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "demo.toml"


def test_plan_binds_every_authority_on_both_inbound_exchanges() -> None:
    config = load_config(EXAMPLE, environ={})
    plan = plan_topology(config)
    for a in config.authorities:
        assert Binding(INBOUND, a.id, deliver_queue(a.adapter)) in plan.bindings
        assert Binding(INBOUND_CHECKED, a.id, deliver_queue(a.adapter)) in plan.bindings
    inbound = {b for b in plan.bindings if b.exchange in (INBOUND, INBOUND_CHECKED)}
    assert len(inbound) == 2 * len(config.authorities)


def test_adapter_queue_is_quorum_with_poison_guard_and_retry_ladder() -> None:
    config = load_config(EXAMPLE, environ={})
    queues = {q.name: q.arguments for q in plan_topology(config).queues}
    args = queues[deliver_queue("advis")]
    assert args["x-queue-type"] == "quorum"
    assert args["x-delivery-limit"] == 5
    assert args["x-dead-letter-strategy"] == "at-least-once" and args["x-overflow"] == "reject-publish"
    delays = config.adapters["advis"].retry_delays
    for level, delay in enumerate(delays, start=1):
        wait = queues[retry_queue("advis", level)]
        assert wait["x-message-ttl"] == int(delay * 1000)
        assert wait["x-dead-letter-routing-key"] == deliver_queue("advis")
    assert retry_queue("advis", len(delays) + 1) not in queues


def test_report_polling_queues_follow_the_config() -> None:
    from hub.topology import report_queue, report_wait_queue

    config = load_config(EXAMPLE, environ={"HUB_ADAPTERS__AUSO__POLL_TRANSPORT_REPORTS": "false"})
    queues = {q.name: q.arguments for q in plan_topology(config).queues}
    interval = config.adapters["advis"].report_poll_interval
    assert queues[report_wait_queue("advis")]["x-message-ttl"] == int(interval * 1000)
    assert queues[report_wait_queue("advis")]["x-dead-letter-routing-key"] == report_queue("advis")
    assert report_queue("auso") not in queues
