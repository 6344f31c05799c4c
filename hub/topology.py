"""The broker topology, derived from the configuration and applied idempotently.

    hub.inbound          topic, alternate-exchange hub.unroutable: the entry for any AMQP client;
                         a message for an unknown destination is parked, never dropped
    hub.inbound.checked  topic, no alternate exchange: the hub's Publisher sends here with
                         ``mandatory`` so an unknown destination is returned to the caller
                         (an alternate exchange would swallow the return)
    both carry one binding per authority: routing key = Behördenkennung -> hub.deliver.<adapter>
    hub.deliver.<adapter> quorum queue; delivery limit + at-least-once dead-lettering to hub.dead
                         (and the optional lengths), all by policy
    hub.retry.<adapter>.<n> quorum wait queues, one delay each, dead-lettering back to the adapter queue
    hub.report.<adapter>(.wait) poll requests of the previous release (reports now live in the ledger,
                         hub/reports.py): still consumed and moved into the ledger for one release
    hub.dead             topic exchange -> quorum queue hub.dead (reason in headers)
    hub.unroutable       fanout exchange -> quorum queue hub.unroutable
    hub.status           topic exchange for status events (routing key portal.event.destination)
    hub.tracker          quorum queue bound to hub.status '#': the tracking store's feed
    hub.replies          topic exchange for the authorities' replies (routing key = portal id)
    hub.replies.<portal> quorum queue per configured mailbox, bound with routing key <portal>, so a
                         reply is kept even before the portal consumes
    hub.replies.parked   quorum queue: replies that failed verification, decryption or validation

Every quorum queue is declared with only what cannot change: its type, its initial group size
and its leader locator (``[topology]``). Delivery limits, dead-lettering, TTLs, overflow and lengths
are *policies*, one per queue, named and matched exactly like the queue, set through the management
API (``hub/management.py``): changing a limit in the config and applying again takes effect on the
running queue. Queues declared by an earlier release carry those settings as queue arguments, which
override policies and cannot be removed from a queue: the apply reports them
(``TopologyReport.legacy``) and ``hub topology apply --migrate`` moves such a queue's messages to a
fresh queue of the same name (``hub/topology_migrate.py``).

Bindings the hub made are remembered in the one-message quorum queue ``hub.topology.bindings`` (AMQP cannot
list bindings); the next apply removes those no longer configured and never touches others.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from hub.config import HubConfig, TopologyConfig
from hub.errors import BrokerUnavailable, ConfigError, HubError
from hub.management import TIMEOUT, WORKER_TIMEOUT, ManagementApi, Policy, QueueState

log = logging.getLogger(__name__)

INBOUND = "hub.inbound"
INBOUND_CHECKED = "hub.inbound.checked"
DEAD_EXCHANGE = "hub.dead"
DEAD_QUEUE = "hub.dead"
UNROUTABLE = "hub.unroutable"
STATUS_EXCHANGE = "hub.status"
STATE_QUEUE = "hub.topology.bindings"  # quorum: readable while a majority of the nodes is up
LEGACY_STATE_QUEUE = "hub.topology.state"  # the classic queue earlier releases kept it in (one node)
TRACKER_QUEUE = "hub.tracker"
REPLIES_EXCHANGE = "hub.replies"
REPLIES_PARKED = "hub.replies.parked"
# queue arguments that policies carry now: on an earlier release's queue with one of them the
# argument wins over the hub's policy (dead-lettering), or the lower of the two applies (delivery
# limit, lengths, TTL): a raised limit or a longer delay never takes effect there
POLICY_ARGUMENTS = {
    "x-delivery-limit": "delivery-limit",
    "x-dead-letter-exchange": "dead-letter-exchange",
    "x-dead-letter-routing-key": "dead-letter-routing-key",
    "x-dead-letter-strategy": "dead-letter-strategy",
    "x-overflow": "overflow",
    "x-message-ttl": "message-ttl",
    "x-max-length": "max-length",
    "x-max-length-bytes": "max-length-bytes",
}


def deliver_queue(adapter: str) -> str:
    return f"hub.deliver.{adapter}"


def replies_queue(portal: str) -> str:
    return f"{REPLIES_EXCHANGE}.{portal}"


def retry_queue(adapter: str, level: int) -> str:
    return f"hub.retry.{adapter}.{level}"


def report_queue(adapter: str) -> str:
    return f"hub.report.{adapter}"


def report_wait_queue(adapter: str) -> str:
    return f"hub.report.{adapter}.wait"


@dataclass(frozen=True, order=True)
class Binding:
    exchange: str
    routing_key: str
    queue: str


@dataclass(frozen=True)
class QueueSpec:
    """One quorum queue: the arguments it is declared with (what cannot change) and the policy
    definition that carries the rest (``None``: no policy)."""

    name: str
    arguments: dict[str, Any]
    policy: dict[str, Any] | None = None


@dataclass(frozen=True)
class TopologyPlan:
    queues: tuple[QueueSpec, ...]
    bindings: frozenset[Binding]
    policy_priority: int = 10

    def policies(self) -> dict[str, Policy]:
        """The hub's policy of every queue that has one, by name (the queue's name)."""
        return {q.name: queue_policy(q.name, q.policy, self.policy_priority) for q in self.queues if q.policy}


def queue_policy(queue: str, definition: dict[str, Any], priority: int) -> Policy:
    """The policy of one queue: named like it, matching exactly it."""
    return Policy(queue, f"^{re.escape(queue)}$", "queues", priority, dict(definition))


def is_hub_policy(policy: Policy) -> bool:
    """A policy the hub made (its form), as opposed to an operator's own."""
    return (policy.name.startswith("hub.") and policy.apply_to == "queues"
            and policy.pattern == f"^{re.escape(policy.name)}$")


@dataclass(frozen=True)
class LegacyQueue:
    """A queue an earlier release declared with arguments that policies carry now."""

    name: str
    arguments: dict[str, Any]
    messages: int
    consumers: int

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in sorted(self.arguments.items()))
        return (f"{self.name}: declared by an earlier release with queue arguments {args}; they override "
                f"its policy (a raised limit or a longer delay does not apply) ({self.messages} messages, "
                f"{self.consumers} consumers). Stop its workers and run `hub topology apply --migrate`")


@dataclass
class TopologyReport:
    added: list[Binding] = field(default_factory=list)
    removed: list[Binding] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    policies_set: list[str] = field(default_factory=list)
    policies_removed: list[str] = field(default_factory=list)
    legacy: list[LegacyQueue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    policy_problem: str | None = None  # why policies were not applied (a worker without the API)

    def summary(self) -> str:
        text = (
            f"{len(self.queues)} queues declared ({len(self.created)} new), {len(self.added)} bindings added, "
            f"{len(self.removed)} removed, {len(self.policies_set)} policies set, "
            f"{len(self.policies_removed)} removed"
        )
        if self.legacy:
            text += f"; {len(self.legacy)} queues need migration"
        return text


def _quorum(settings: TopologyConfig) -> dict[str, Any]:
    """The declaration arguments of every quorum queue: fixed for the queue's life."""
    return {
        "x-queue-type": "quorum",
        "x-quorum-initial-group-size": settings.quorum_initial_group_size,
        "x-queue-leader-locator": settings.leader_locator,
    }


def _wait_queue(name: str, delay: float, target: str, settings: TopologyConfig) -> QueueSpec:
    """A quorum queue that holds each message for ``delay`` seconds, then dead-letters it to
    ``target`` (via the default exchange). One delay per queue: expiry happens at the head only."""
    return QueueSpec(name, _quorum(settings), {
        "message-ttl": int(delay * 1000),
        "dead-letter-exchange": "",
        "dead-letter-routing-key": target,
        "dead-letter-strategy": "at-least-once",
        "overflow": "reject-publish",
    })


def plan_topology(config: HubConfig) -> TopologyPlan:
    """The complete desired topology: a pure function of the configuration."""
    settings = config.topology
    queues: list[QueueSpec] = [
        QueueSpec(DEAD_QUEUE, _quorum(settings)),
        QueueSpec(UNROUTABLE, _quorum(settings)),
        QueueSpec(TRACKER_QUEUE, _quorum(settings)),
        QueueSpec(REPLIES_PARKED, _quorum(settings)),
    ]
    bindings: set[Binding] = {Binding(STATUS_EXCHANGE, "#", TRACKER_QUEUE)}
    for portal in sorted(config.mailboxes):
        queues.append(QueueSpec(replies_queue(portal), _quorum(settings)))
        bindings.add(Binding(REPLIES_EXCHANGE, portal, replies_queue(portal)))
    for name, adapter in sorted(config.adapters.items()):
        policy: dict[str, Any] = {
            "delivery-limit": adapter.delivery_limit,
            "dead-letter-exchange": DEAD_EXCHANGE,
            "dead-letter-routing-key": f"{name}.delivery_limit",
            "dead-letter-strategy": "at-least-once",
            "overflow": "reject-publish",
        }
        if adapter.queue_max_length is not None:
            policy["max-length"] = adapter.queue_max_length
        if adapter.queue_max_bytes is not None:
            policy["max-length-bytes"] = adapter.queue_max_bytes
        queues.append(QueueSpec(deliver_queue(name), _quorum(settings), policy))
        for level, delay in enumerate(adapter.retry_delays, start=1):
            queues.append(_wait_queue(retry_queue(name, level), delay, deliver_queue(name), settings))
        if adapter.poll_transport_reports:
            queues.append(QueueSpec(report_queue(name), _quorum(settings)))
            queues.append(_wait_queue(report_wait_queue(name), adapter.report_poll_interval, report_queue(name),
                                      settings))
    for authority in config.authorities:
        for exchange in (INBOUND, INBOUND_CHECKED):
            bindings.add(Binding(exchange, authority.id, deliver_queue(authority.adapter)))
    return TopologyPlan(tuple(queues), frozenset(bindings), settings.policy_priority)


def _declare_exchanges(channel: BlockingChannel) -> None:
    channel.exchange_declare(DEAD_EXCHANGE, "topic", durable=True)
    channel.exchange_declare(UNROUTABLE, "fanout", durable=True)
    channel.exchange_declare(INBOUND, "topic", durable=True, arguments={"alternate-exchange": UNROUTABLE})
    channel.exchange_declare(INBOUND_CHECKED, "topic", durable=True)
    channel.exchange_declare(STATUS_EXCHANGE, "topic", durable=True)
    channel.exchange_declare(REPLIES_EXCHANGE, "topic", durable=True)


def _peek(channel: BlockingChannel, queue: str) -> set[Binding] | None:
    """The binding set in ``queue``'s one message, left there (get + requeue); None when empty."""
    method, _props, body = channel.basic_get(queue, auto_ack=False)
    if method is None:
        return None
    channel.basic_nack(method.delivery_tag, requeue=True)
    try:
        return {Binding(**b) for b in json.loads(body)["bindings"]}
    except (ValueError, KeyError, TypeError):
        return set()


def _read_state(channel: BlockingChannel) -> tuple[set[Binding], bool]:
    """The last applied binding set, and whether the quorum record holds it: else it comes from
    an earlier release's classic record (or there is none), and must be written to the quorum
    record. A 404 for the classic record's node being down closes the channel, like an
    unavailable record."""
    channel.queue_declare(STATE_QUEUE, durable=True, arguments={"x-queue-type": "quorum", "x-max-length": 1})
    found = _peek(channel, STATE_QUEUE)
    if found is not None:
        return found, True
    probe = channel.connection.channel()
    try:
        probe.queue_declare(LEGACY_STATE_QUEUE, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404 and "home node" in exc.reply_text:
            raise
        return set(), False
    legacy = _peek(probe, LEGACY_STATE_QUEUE)
    probe.close()
    return legacy or set(), False


def _drop_legacy_state(channel: BlockingChannel) -> None:
    """Delete an earlier release's classic record once the quorum one holds the set."""
    probe = channel.connection.channel()
    try:
        probe.queue_delete(LEGACY_STATE_QUEUE)
    except pika.exceptions.ChannelClosedByBroker:
        return  # its node is down: the next apply deletes it
    probe.close()


def _write_state(channel: BlockingChannel, bindings: frozenset[Binding]) -> None:
    body = json.dumps({"bindings": [b.__dict__ for b in sorted(bindings)]}).encode()
    channel.basic_publish(
        "", STATE_QUEUE, body, pika.BasicProperties(delivery_mode=2, content_type="application/json"), mandatory=True
    )


def apply_topology(channel: BlockingChannel, plan: TopologyPlan, *, management: ManagementApi | None,
                   remove_stale: bool = True) -> TopologyReport:
    """Declare everything in ``plan``; with ``remove_stale`` also remove bindings and policies the
    hub made earlier that are gone now (operators' `hub topology apply`; workers only declare).

    Policies (through ``management``) come first, so that a new queue is born with its policy. The
    operator's apply sets every policy that differs from the plan and fails when the API cannot be
    used; a worker (``remove_stale=False``) only adds missing policies, never overwrites them (a
    worker on an older config in a rolling deploy must not undo a raised limit), and goes on
    without them when the API is unavailable (``report.policy_problem``, logged).

    An existing queue is taken as it is (a passive declare): its declaration arguments cannot
    change. Arguments an earlier release set, which override policies, are reported
    (``report.legacy``) when the API can read them.

    The channel must be in confirm mode (so the state write is confirmed).

    The record of applied bindings (``hub.topology.bindings``) is a quorum queue. An earlier
    release kept it in the classic queue ``hub.topology.state``, on one node: it is read while the
    new record is empty and deleted by the operator's apply. While it is unavailable (its node
    down) a worker (``remove_stale=False``) declares its topology all the same and leaves the
    record alone (the channel is closed then); the operator's apply, which needs the record to
    remove stale bindings, fails saying so.
    """
    report = TopologyReport()
    states: dict[str, QueueState] | None = None
    try:
        _declare_exchanges(channel)  # first: a user refused by the broker hears it from the broker
        if management is None:
            report.policy_problem = "no management API given"
        else:
            try:
                _same_broker(channel, management)
                _apply_policies(channel, management, plan, report, remove_stale)  # before the queues: born with them
                states = management.queues("hub.")
            except HubError as exc:
                if remove_stale:
                    raise
                report.policy_problem = str(exc)
                log.warning("topology: queue policies not checked (%s); `hub topology apply` sets them", exc)
        _declare(channel, plan, report, states)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 406:  # PRECONDITION_FAILED: an existing exchange has other arguments
            raise ConfigError(
                f"the broker's topology differs from the configuration: {exc.reply_text}. Arguments "
                "cannot change after declaration: revert the setting, or drain and delete the "
                "queue or exchange (its messages!) and apply again") from None
        raise
    unguarded = [name for name in report.created if name in plan.policies()] if report.policy_problem else []
    if unguarded:
        log.error("topology: created %s without their policies (%s): no delivery limit applies and retries do not "
                  "come back until `hub topology apply` sets them", ", ".join(unguarded), report.policy_problem)
    if states is not None:
        _inspect(plan, states, report)
        for legacy in report.legacy:
            log.warning("topology: %s", legacy.describe())
    try:
        _record(channel, plan, report, remove_stale)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 404:
            raise
        if not remove_stale:
            log.warning("topology declared; its record %s is unavailable (%s): not updated", STATE_QUEUE,
                        exc.reply_text)
            return report
        raise BrokerUnavailable(f"the record of applied bindings ({STATE_QUEUE}) is unavailable: "
                                f"{exc.reply_text}; apply again once its node is back") from None
    return report


def _same_broker(channel: BlockingChannel, management: ManagementApi) -> None:
    """The management API must belong to the broker the channel is on: policies set on another
    broker (a guessed address, a wrong ``management_urls``) would leave these queues unguarded."""
    impl = getattr(channel.connection, "_impl", None)
    properties = getattr(impl, "server_properties", None) or {}
    amqp_name = properties.get("cluster_name")
    if isinstance(amqp_name, bytes):
        amqp_name = amqp_name.decode("utf-8", "replace")
    api_name = management.cluster_name()
    if amqp_name and api_name and amqp_name != api_name:
        raise ConfigError(f"the management API at {', '.join(management.bases)} belongs to the cluster '{api_name}', "
                          f"the AMQP connection to '{amqp_name}': set broker.management_urls to the API of the "
                          "nodes in broker.url(s)")


def queue_counts(channel: BlockingChannel, queue: str) -> tuple[int, int] | None:
    """(ready messages, consumers) of ``queue`` now, or None when it does not exist: a passive
    declare on a channel of its own, which the broker closes when the queue is not there (the
    management API's counts lag by seconds)."""
    probe = channel.connection.channel()
    try:
        declared = probe.queue_declare(queue, passive=True).method
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            return None
        raise
    probe.close()
    return int(declared.message_count), int(declared.consumer_count)


def declare_unless_exists(channel: BlockingChannel, name: str, arguments: dict[str, Any]) -> bool:
    """Declare ``name`` with ``arguments`` unless it exists (then it is taken as it is: declaration
    arguments are fixed, an earlier release's differ); True when it was created."""
    if queue_counts(channel, name) is not None:
        return False
    channel.queue_declare(name, durable=True, arguments=arguments)
    return True


def _apply_policies(channel: BlockingChannel, management: ManagementApi, plan: TopologyPlan,
                    report: TopologyReport, remove_stale: bool) -> None:
    """Set the plan's policies; remove the hub's policies of queues no longer configured, except
    while such a queue still holds messages (a wait queue's TTL and dead-lettering return them)."""
    current = management.policies()
    wanted = plan.policies()
    for name, policy in sorted(wanted.items()):
        existing = current.get(name)
        if existing == policy or (existing is not None and not remove_stale):
            continue
        management.put_policy(policy)
        report.policies_set.append(name)
    if remove_stale:
        for name, policy in sorted(current.items()):
            if name not in wanted and is_hub_policy(policy):
                held = (queue_counts(channel, name) or (0, 0))[0]
                if held:
                    report.notes.append(f"{name} is no longer configured but holds {held} messages: its "
                                        "policy stays until it is empty (then apply again, and delete the queue)")
                    continue
                management.delete_policy(name)
                report.policies_removed.append(name)


def _inspect(plan: TopologyPlan, states: dict[str, QueueState], report: TopologyReport) -> None:
    """Queues whose arguments override their policy (an earlier release's), other differences."""
    for spec in plan.queues:
        state = states.get(spec.name)
        if state is None:
            continue
        if state.type != "quorum":
            report.notes.append(f"{spec.name} is a {state.type} queue, not a quorum queue: it is not "
                                "replicated; migrate it (`hub topology apply --migrate`, workers stopped)")
        overriding = {k: v for k, v in state.arguments.items() if k in POLICY_ARGUMENTS}
        if overriding or state.type != "quorum":
            report.legacy.append(LegacyQueue(spec.name, overriding, state.messages, state.consumers))
            continue
        size = state.arguments.get("x-quorum-initial-group-size")
        wanted = spec.arguments.get("x-quorum-initial-group-size")
        if size is not None and size != wanted:
            report.notes.append(f"{spec.name} was created for {size} replicas ({wanted} configured): an existing "
                                "queue keeps its members; change them with `rabbitmq-queues grow` / `shrink`")


def _declare_queue(channel: BlockingChannel, spec: QueueSpec, states: dict[str, QueueState] | None) -> bool:
    """Declare ``spec`` unless it exists (``declare_unless_exists``); True when it was created.
    Whether it exists, the management API said (``states``: no probe channel per queue)."""
    if states is None:
        return declare_unless_exists(channel, spec.name, spec.arguments)
    if spec.name in states:
        channel.queue_declare(spec.name, passive=True)
        return False
    channel.queue_declare(spec.name, durable=True, arguments=spec.arguments)
    return True


def _declare(channel: BlockingChannel, plan: TopologyPlan, report: TopologyReport,
             states: dict[str, QueueState] | None) -> None:
    for spec in plan.queues:
        if _declare_queue(channel, spec, states):
            report.created.append(spec.name)
        report.queues.append(spec.name)
    channel.queue_bind(DEAD_QUEUE, DEAD_EXCHANGE, routing_key="#")
    channel.queue_bind(UNROUTABLE, UNROUTABLE, routing_key="")
    for binding in sorted(plan.bindings):
        channel.queue_bind(binding.queue, binding.exchange, routing_key=binding.routing_key)


def _record(channel: BlockingChannel, plan: TopologyPlan, report: TopologyReport, remove_stale: bool) -> None:
    """Compare with the last applied bindings: report what is new, remove what is gone (operators
    only), remember the set."""
    previous, recorded = _read_state(channel)
    report.added.extend(b for b in sorted(plan.bindings) if b not in previous)
    if not remove_stale:
        if not recorded or not plan.bindings <= previous:  # remember new bindings, keep the old ones
            _write_state(channel, plan.bindings | previous)
        return
    for binding in sorted(previous - plan.bindings):
        channel.queue_unbind(binding.queue, binding.exchange, routing_key=binding.routing_key)
        report.removed.append(binding)
    if not recorded or previous != plan.bindings:
        _write_state(channel, plan.bindings)  # confirmed (confirm mode) before the classic record goes
    if not recorded:
        _drop_legacy_state(channel)


def apply_configured(channel: BlockingChannel, config: HubConfig, *, remove_stale: bool = True) -> TopologyReport:
    """``apply_topology`` of the configured topology, with the configured broker's management API
    (a worker's calls with a short timeout: its reconnect must not wait on a slow API)."""
    timeout = TIMEOUT if remove_stale else WORKER_TIMEOUT
    try:
        management = ManagementApi.from_config(config.broker, timeout=timeout)
    except ConfigError as exc:
        if remove_stale:
            raise
        log.warning("topology: queue policies not checked (%s); `hub topology apply` sets them", exc)
        report = apply_topology(channel, plan_topology(config), management=None, remove_stale=False)
        report.policy_problem = str(exc)
        return report
    with management:
        return apply_topology(channel, plan_topology(config), management=management, remove_stale=remove_stale)
