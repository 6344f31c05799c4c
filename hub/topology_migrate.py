"""Migrating queues an earlier release declared with arguments that policies carry now.

A queue's declaration arguments can never change, and they override the hub's policy: a delivery
limit raised in the config would not apply to such a queue. ``hub topology apply --migrate`` gives
each one a fresh queue of the same name, declared as ``hub.topology`` declares queues now:

1. *park*: a quorum queue ``<name>.migrating`` takes the queue's bindings (bound first, then the
   old ones removed, so a portal's publish always finds a queue), every message is moved into it
   (published with confirms, then acknowledged at the source), and the emptied queue is deleted;
2. *restore*: the queue is declared anew (its policy applies at once), takes the bindings back, the
   messages are moved back, and ``<name>.migrating`` is deleted.

Wait queues are parked before the queues they dead-letter into and restored after them, so no
message expires towards a queue that is momentarily gone (a parked message has no TTL). The queues'
workers must be stopped (a queue with consumers is refused). Messages are moved at least once: a
crash between a publish and its acknowledgement leaves a copy in both queues, which the delivery
ledger makes harmless (a second copy of a delivered application is not sent again). A crash
anywhere leaves every message in one of the two durable queues; running the command again resumes
(any ``<name>.migrating`` left over is restored).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from hub.errors import ConfigError
from hub.management import ManagementApi
from hub.topology import QueueSpec, TopologyPlan

log = logging.getLogger(__name__)

MIGRATING_SUFFIX = ".migrating"
_DELETE_ATTEMPTS = 5


def parking_queue(queue: str) -> str:
    return queue + MIGRATING_SUFFIX


@dataclass
class MigrationReport:
    moved: dict[str, int] = field(default_factory=dict)  # queue -> messages it holds after the migration

    def summary(self) -> str:
        if not self.moved:
            return "no queue needed migration"
        return f"{len(self.moved)} queues migrated, {sum(self.moved.values())} messages moved"


def _is_wait_queue(spec: QueueSpec) -> bool:
    return bool(spec.policy and "message-ttl" in spec.policy)


def migrate_queues(connection: BlockingConnection, plan: TopologyPlan, management: ManagementApi,
                   queues: Iterable[str]) -> MigrationReport:
    """Give every queue in ``queues`` (and any left half-migrated) a fresh declaration."""
    specs = {spec.name: spec for spec in plan.queues}
    states = management.queues("hub.")
    wanted = set(queues) | {name for name in specs if parking_queue(name) in states}
    unknown = sorted(wanted - set(specs))
    if unknown:
        raise ConfigError(f"not queues of the configured topology: {', '.join(unknown)}")
    # a worker consumes its delivery (and report) queue and publishes into its wait queues
    busy = [f"{name} ({state.consumers})" for name, state in sorted(states.items())
            if state.consumers and (name in wanted or name.startswith(("hub.deliver.", "hub.report.")))]
    if wanted and busy:
        raise ConfigError("stop the workers first: consumers on " + ", ".join(busy)
                          + " (queues are migrated while no worker runs)")
    # wait queues first when parking (they dead-letter into the others), last when restoring
    order = sorted(wanted, key=lambda name: (not _is_wait_queue(specs[name]), name))
    report = MigrationReport()
    channel = connection.channel()
    channel.confirm_delivery()
    for name in order:
        if name in states:  # (absent: parked by an earlier, interrupted run)
            _park(channel, specs[name], plan)
    for name in reversed(order):
        report.moved[name] = _restore(channel, specs[name], plan)
    channel.close()
    return report


def _bindings(plan: TopologyPlan, queue: str) -> list[tuple[str, str]]:
    return sorted((b.exchange, b.routing_key) for b in plan.bindings if b.queue == queue)


def _declare(channel: BlockingChannel, spec: QueueSpec, name: str) -> None:
    probe = channel.connection.channel()
    try:
        probe.queue_declare(name, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 404:
            raise
        channel.queue_declare(name, durable=True, arguments=spec.arguments)
        return
    probe.close()


def _park(channel: BlockingChannel, spec: QueueSpec, plan: TopologyPlan) -> None:
    parked = parking_queue(spec.name)
    _declare(channel, spec, parked)  # no policy matches it: nothing expires or dead-letters there
    for exchange, key in _bindings(plan, spec.name):
        channel.queue_bind(parked, exchange, routing_key=key)
        channel.queue_unbind(spec.name, exchange, routing_key=key)
    _move_and_delete(channel, spec.name, parked)


def _restore(channel: BlockingChannel, spec: QueueSpec, plan: TopologyPlan) -> int:
    parked = parking_queue(spec.name)
    _declare(channel, spec, spec.name)
    for exchange, key in _bindings(plan, spec.name):
        channel.queue_bind(spec.name, exchange, routing_key=key)
        channel.queue_unbind(parked, exchange, routing_key=key)
    _move_and_delete(channel, parked, spec.name)
    depth = channel.queue_declare(spec.name, passive=True).method.message_count
    log.info("migrated %s: %d messages", spec.name, depth)
    return int(depth)


def _move(channel: BlockingChannel, source: str, target: str) -> int:
    moved = 0
    while True:
        method, properties, body = channel.basic_get(source, auto_ack=False)
        if method is None:
            return moved
        # confirm mode: returns once the target's replicas have it (raises on nack or no route)
        channel.basic_publish("", target, body, properties, mandatory=True)
        channel.basic_ack(method.delivery_tag)
        moved += 1


def _move_and_delete(channel: BlockingChannel, source: str, target: str) -> None:
    """Move everything from ``source`` to ``target``, then delete ``source`` once it is empty (a
    message that arrived meanwhile is moved in the next round). Quorum queues have no
    delete-if-empty: nothing routes to ``source`` any more (its bindings moved, its workers are
    stopped, the wait queues that dead-letter into it are parked), so empty stays empty."""
    for _ in range(_DELETE_ATTEMPTS):
        _move(channel, source, target)
        if channel.queue_declare(source, passive=True).method.message_count == 0:
            channel.queue_delete(source)
            return
    raise ConfigError(f"{source} keeps receiving messages while being migrated: stop what publishes to it "
                      "and run `hub topology apply --migrate` again (nothing was lost)")
