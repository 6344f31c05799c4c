"""The broker topology, derived from the configuration and applied idempotently.

    hub.inbound          topic, alternate-exchange hub.unroutable: the entry for any AMQP client;
                         a message for an unknown destination is parked, never dropped
    hub.inbound.checked  topic, no alternate exchange: the hub's Publisher sends here with
                         ``mandatory`` so an unknown destination is returned to the caller
                         (an alternate exchange would swallow the return)
    both carry one binding per authority: routing key = Behördenkennung -> hub.deliver.<adapter>
    hub.deliver.<adapter> quorum queue; delivery limit + at-least-once dead-lettering to hub.dead
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

Bindings the hub made are remembered in the one-message queue ``hub.topology.state`` (AMQP cannot
list bindings); the next apply removes those no longer configured and never touches others.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from hub.config import HubConfig
from hub.errors import BrokerUnavailable, ConfigError

log = logging.getLogger(__name__)

INBOUND = "hub.inbound"
INBOUND_CHECKED = "hub.inbound.checked"
DEAD_EXCHANGE = "hub.dead"
DEAD_QUEUE = "hub.dead"
UNROUTABLE = "hub.unroutable"
STATUS_EXCHANGE = "hub.status"
STATE_QUEUE = "hub.topology.state"
TRACKER_QUEUE = "hub.tracker"
REPLIES_EXCHANGE = "hub.replies"
REPLIES_PARKED = "hub.replies.parked"
_QUORUM = {"x-queue-type": "quorum"}


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
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class TopologyPlan:
    queues: tuple[QueueSpec, ...]
    bindings: frozenset[Binding]


@dataclass
class TopologyReport:
    added: list[Binding] = field(default_factory=list)
    removed: list[Binding] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.queues)} queues declared, {len(self.added)} bindings added, "
            f"{len(self.removed)} removed"
        )


def _wait_queue(name: str, delay: float, target: str) -> QueueSpec:
    """A quorum queue that holds each message for ``delay`` seconds, then dead-letters it to
    ``target`` (via the default exchange). One delay per queue: expiry happens at the head only."""
    return QueueSpec(name, {
        **_QUORUM,
        "x-message-ttl": int(delay * 1000),
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": target,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    })


def plan_topology(config: HubConfig) -> TopologyPlan:
    """The complete desired topology: a pure function of the configuration."""
    queues: list[QueueSpec] = [
        QueueSpec(DEAD_QUEUE, dict(_QUORUM)),
        QueueSpec(UNROUTABLE, dict(_QUORUM)),
        QueueSpec(TRACKER_QUEUE, dict(_QUORUM)),
        QueueSpec(REPLIES_PARKED, dict(_QUORUM)),
    ]
    bindings: set[Binding] = {Binding(STATUS_EXCHANGE, "#", TRACKER_QUEUE)}
    for portal in sorted(config.mailboxes):
        queues.append(QueueSpec(replies_queue(portal), dict(_QUORUM)))
        bindings.add(Binding(REPLIES_EXCHANGE, portal, replies_queue(portal)))
    for name, adapter in sorted(config.adapters.items()):
        queues.append(
            QueueSpec(
                deliver_queue(name),
                {
                    **_QUORUM,
                    "x-delivery-limit": adapter.delivery_limit,
                    "x-dead-letter-exchange": DEAD_EXCHANGE,
                    "x-dead-letter-routing-key": f"{name}.delivery_limit",
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
            )
        )
        for level, delay in enumerate(adapter.retry_delays, start=1):
            queues.append(_wait_queue(retry_queue(name, level), delay, deliver_queue(name)))
        if adapter.poll_transport_reports:
            queues.append(QueueSpec(report_queue(name), dict(_QUORUM)))
            queues.append(_wait_queue(report_wait_queue(name), adapter.report_poll_interval, report_queue(name)))
    for authority in config.authorities:
        for exchange in (INBOUND, INBOUND_CHECKED):
            bindings.add(Binding(exchange, authority.id, deliver_queue(authority.adapter)))
    return TopologyPlan(tuple(queues), frozenset(bindings))


def _declare_exchanges(channel: BlockingChannel) -> None:
    channel.exchange_declare(DEAD_EXCHANGE, "topic", durable=True)
    channel.exchange_declare(UNROUTABLE, "fanout", durable=True)
    channel.exchange_declare(INBOUND, "topic", durable=True, arguments={"alternate-exchange": UNROUTABLE})
    channel.exchange_declare(INBOUND_CHECKED, "topic", durable=True)
    channel.exchange_declare(STATUS_EXCHANGE, "topic", durable=True)
    channel.exchange_declare(REPLIES_EXCHANGE, "topic", durable=True)


def _read_state(channel: BlockingChannel) -> set[Binding]:
    """Peek at the last applied binding set (get + requeue keeps it for the next apply)."""
    channel.queue_declare(STATE_QUEUE, durable=True, arguments={"x-max-length": 1})
    method, _props, body = channel.basic_get(STATE_QUEUE, auto_ack=False)
    if method is None:
        return set()
    channel.basic_nack(method.delivery_tag, requeue=True)
    try:
        return {Binding(**b) for b in json.loads(body)["bindings"]}
    except (ValueError, KeyError, TypeError):
        return set()


def _write_state(channel: BlockingChannel, bindings: frozenset[Binding]) -> None:
    body = json.dumps({"bindings": [b.__dict__ for b in sorted(bindings)]}).encode()
    channel.basic_publish(
        "", STATE_QUEUE, body, pika.BasicProperties(delivery_mode=2, content_type="application/json"), mandatory=True
    )


def apply_topology(channel: BlockingChannel, plan: TopologyPlan, *, remove_stale: bool = True) -> TopologyReport:
    """Declare everything in ``plan``; with ``remove_stale`` also remove bindings the hub made
    earlier that are gone now (operators' `hub topology apply`; workers only declare).

    The channel must be in confirm mode (so the state write is confirmed). Queue arguments cannot
    change after declaration: a changed argument fails with PRECONDITION_FAILED, by design.

    The record of applied bindings (``hub.topology.state``) is a classic queue: on a cluster it
    lives on one node. While that node is down a worker (``remove_stale=False``) declares its
    topology all the same and leaves the record alone (the channel is closed then); the operator's
    apply, which needs the record to remove stale bindings, fails saying so.
    """
    try:
        report = _declare(channel, plan)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 406:  # PRECONDITION_FAILED: an existing queue/exchange has other arguments
            raise ConfigError(
                f"the broker's topology differs from the configuration: {exc.reply_text}. Queue arguments "
                "cannot change after declaration: revert the setting, or drain and delete the queue "
                "(its messages!) and apply again") from None
        raise
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


def _declare(channel: BlockingChannel, plan: TopologyPlan) -> TopologyReport:
    report = TopologyReport()
    _declare_exchanges(channel)
    for spec in plan.queues:
        channel.queue_declare(spec.name, durable=True, arguments=spec.arguments)
        report.queues.append(spec.name)
    channel.queue_bind(DEAD_QUEUE, DEAD_EXCHANGE, routing_key="#")
    channel.queue_bind(UNROUTABLE, UNROUTABLE, routing_key="")
    for binding in sorted(plan.bindings):
        channel.queue_bind(binding.queue, binding.exchange, routing_key=binding.routing_key)
    return report


def _record(channel: BlockingChannel, plan: TopologyPlan, report: TopologyReport, remove_stale: bool) -> None:
    """Compare with the last applied bindings: report what is new, remove what is gone (operators
    only), remember the set."""
    previous = _read_state(channel)
    report.added.extend(b for b in sorted(plan.bindings) if b not in previous)
    if not remove_stale:
        if not plan.bindings <= previous:  # remember new bindings, keep the old ones for the operator
            _write_state(channel, plan.bindings | previous)
        return
    for binding in sorted(previous - plan.bindings):
        channel.queue_unbind(binding.queue, binding.exchange, routing_key=binding.routing_key)
        report.removed.append(binding)
    if previous != plan.bindings:
        _write_state(channel, plan.bindings)
