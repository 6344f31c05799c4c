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


def test_queues_are_declared_with_only_what_cannot_change() -> None:
    """Type, group size and leader locator are the declaration; every queue gets the same."""
    config = load_config(EXAMPLE, environ={"HUB_TOPOLOGY__QUORUM_INITIAL_GROUP_SIZE": "5",
                                           "HUB_TOPOLOGY__LEADER_LOCATOR": "client-local"})
    for queue in plan_topology(config).queues:
        assert queue.arguments == {"x-queue-type": "quorum", "x-quorum-initial-group-size": 5,
                                   "x-queue-leader-locator": "client-local"}, queue.name
    default = plan_topology(load_config(EXAMPLE, environ={})).queues[0].arguments
    assert default["x-quorum-initial-group-size"] == 3 and default["x-queue-leader-locator"] == "balanced"


def test_adapter_queue_policy_guards_poison_and_the_retry_ladder() -> None:
    config = load_config(EXAMPLE, environ={"HUB_ADAPTERS__ADVIS__QUEUE_MAX_LENGTH": "50000"})
    queues = {q.name: q.policy for q in plan_topology(config).queues}
    policy = queues[deliver_queue("advis")]
    assert policy is not None
    assert policy["delivery-limit"] == 5 and policy["dead-letter-exchange"] == "hub.dead"
    assert policy["dead-letter-strategy"] == "at-least-once" and policy["overflow"] == "reject-publish"
    assert policy["max-length"] == 50000 and "max-length-bytes" not in policy
    assert "max-length" not in (queues[deliver_queue("auso")] or {})
    delays = config.adapters["advis"].retry_delays
    for level, delay in enumerate(delays, start=1):
        wait = queues[retry_queue("advis", level)]
        assert wait is not None and wait["message-ttl"] == int(delay * 1000)
        assert wait["dead-letter-exchange"] == "" and wait["dead-letter-routing-key"] == deliver_queue("advis")
    assert retry_queue("advis", len(delays) + 1) not in queues


def test_each_policy_matches_exactly_its_queue() -> None:
    import re

    from hub.topology import is_hub_policy, queue_policy

    plan = plan_topology(load_config(EXAMPLE, environ={"HUB_TOPOLOGY__POLICY_PRIORITY": "42"}))
    policies = plan.policies()
    names = [q.name for q in plan.queues]
    assert set(policies) == {q.name for q in plan.queues if q.policy}
    for name, policy in policies.items():
        assert policy.priority == 42 and policy.apply_to == "queues" and is_hub_policy(policy)
        assert [n for n in names if re.search(policy.pattern, n)] == [name]
        assert not re.search(policy.pattern, name + ".migrating")
    own = queue_policy("hub.deliver.advis", {"delivery-limit": 2}, 1)
    assert not is_hub_policy(own.__class__("hub.deliver.advis", "^hub\\.", "queues", 1, {}))  # an operator's
    assert not is_hub_policy(own.__class__("limits", own.pattern, "queues", 1, {}))


def test_report_polling_queues_follow_the_config() -> None:
    from hub.topology import report_queue, report_wait_queue

    config = load_config(EXAMPLE, environ={"HUB_ADAPTERS__AUSO__POLL_TRANSPORT_REPORTS": "false"})
    queues = {q.name: q.policy or {} for q in plan_topology(config).queues}
    interval = config.adapters["advis"].report_poll_interval
    assert queues[report_wait_queue("advis")]["message-ttl"] == int(interval * 1000)
    assert queues[report_wait_queue("advis")]["dead-letter-routing-key"] == report_queue("advis")
    assert report_queue("auso") not in queues
