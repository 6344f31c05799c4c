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
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from hub.errors import ConfigError
from hub.management import ManagementApi
from hub.topology import QueueSpec, TopologyPlan, declare_unless_exists, queue_counts

log = logging.getLogger(__name__)

MIGRATING_SUFFIX = ".migrating"
_DELETE_ATTEMPTS = 5
SETTLE = 1.0  # seconds for publishes routed just before the bindings moved to reach the queue


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
    # a wait queue dead-letters into its target: parked with it, so nothing expires towards a queue
    # that is momentarily gone (legacy or not)
    wanted |= {spec.name for spec in plan.queues if _is_wait_queue(spec) and spec.name in states
               and (spec.policy or {}).get("dead-letter-routing-key") in wanted}
    if not wanted:
        return MigrationReport()
    # a worker consumes its delivery (and report) queue and publishes into its wait queues; the
    # live count (the API's lags by seconds)
    watched = sorted(name for name in set(states) | wanted
                     if name in wanted or name.startswith(("hub.deliver.", "hub.report.")))
    channel = connection.channel()
    channel.confirm_delivery()
    busy = [f"{name} ({counts[1]})" for name in watched if (counts := queue_counts(channel, name)) and counts[1]]
    if busy:
        raise ConfigError("stop the workers first: consumers on " + ", ".join(busy)
                          + " (queues are migrated while no worker runs)")
    for name in wanted:
        _check_fits(specs[name], sum(states[q].messages for q in (name, parking_queue(name)) if q in states))
    # wait queues first when parking (they dead-letter into the others), last when restoring
    order = sorted(wanted, key=lambda name: (not _is_wait_queue(specs[name]), name))
    report = MigrationReport()
    for name in order:
        if name in states:  # (absent: parked by an earlier, interrupted run)
            _park(channel, specs[name], plan)
    for name in reversed(order):
        report.moved[name] = _restore(channel, specs[name], plan)
    channel.close()
    return report


def _check_fits(spec: QueueSpec, messages: int) -> None:
    """The fresh queue refuses publishes beyond its lengths (reject-publish): a backlog above
    ``queue_max_length`` could never move back."""
    limit = (spec.policy or {}).get("max-length")
    if limit is not None and messages > int(limit):
        raise ConfigError(f"{spec.name} holds {messages} messages, more than its configured max length {limit}: "
                          "raise queue_max_length (at least for the migration), then migrate")


def _bindings(plan: TopologyPlan, queue: str) -> list[tuple[str, str]]:
    return sorted((b.exchange, b.routing_key) for b in plan.bindings if b.queue == queue)


def _park(channel: BlockingChannel, spec: QueueSpec, plan: TopologyPlan) -> None:
    parked = parking_queue(spec.name)
    declare_unless_exists(channel, parked, spec.arguments)  # no policy matches it: nothing expires there
    for exchange, key in _bindings(plan, spec.name):
        channel.queue_bind(parked, exchange, routing_key=key)
        channel.queue_unbind(spec.name, exchange, routing_key=key)
    _move_and_delete(channel, spec.name, parked)


def _restore(channel: BlockingChannel, spec: QueueSpec, plan: TopologyPlan) -> int:
    parked = parking_queue(spec.name)
    declare_unless_exists(channel, spec.name, spec.arguments)
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
    """Move everything from ``source`` to ``target``, then delete ``source`` once it stayed empty
    for ``SETTLE`` seconds with no consumer. Quorum queues have no delete-if-empty: nothing routes
    to ``source`` any more (its bindings moved, its workers are stopped, the wait queues that
    dead-letter into it are parked), but a publish routed just before its binding moved may still
    be on its way."""
    time.sleep(SETTLE)
    for _ in range(_DELETE_ATTEMPTS):
        _move(channel, source, target)
        time.sleep(SETTLE)
        declared = channel.queue_declare(source, passive=True).method
        if declared.consumer_count:
            raise ConfigError(f"a consumer appeared on {source} while it was being migrated: stop the workers and "
                              "run `hub topology apply --migrate` again (nothing was lost)")
        if declared.message_count == 0:
            channel.queue_delete(source)
            return
    raise ConfigError(f"{source} keeps receiving messages while being migrated: stop what publishes to it "
                      "and run `hub topology apply --migrate` again (nothing was lost)")
