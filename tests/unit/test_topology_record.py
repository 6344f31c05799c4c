"""The record of applied bindings (``hub.topology.bindings``, a quorum queue; an earlier release's
classic ``hub.topology.state`` homed on one node). While it is unavailable a worker still declares
its whole topology (and starts); the operator's apply, which needs the record to remove stale
bindings, fails saying so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pika.exceptions
import pytest

from hub.config import load_config
from hub.errors import BrokerUnavailable
from hub.topology import STATE_QUEUE, apply_topology, plan_topology

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "demo.toml"


class _Probe:
    """The channel an existence probe runs on: no queue exists yet."""

    def queue_declare(self, name: str, passive: bool = False) -> None:
        assert passive
        raise pika.exceptions.ChannelClosedByBroker(404, f"NOT_FOUND - no queue '{name}' in vhost '/'")


class _Connection:
    def channel(self) -> _Probe:
        return _Probe()


class _Channel:
    """Records declarations; the state queue's home node is down (404, the channel closes)."""

    def __init__(self) -> None:
        self.queues: list[str] = []
        self.bindings: list[tuple[str, str, str]] = []
        self.is_open = True
        self.connection = _Connection()

    def exchange_declare(self, *args: Any, **kwargs: Any) -> None:
        assert self.is_open

    def queue_declare(self, name: str, **kwargs: Any) -> None:
        assert self.is_open
        if name == STATE_QUEUE:
            self.is_open = False
            raise pika.exceptions.ChannelClosedByBroker(
                404, f"NOT_FOUND - home node 'rabbit@mq1' of durable queue '{STATE_QUEUE}' in vhost '/' is down")
        self.queues.append(name)

    def queue_bind(self, queue: str, exchange: str, routing_key: str) -> None:
        assert self.is_open
        self.bindings.append((exchange, routing_key, queue))


def test_a_worker_declares_everything_while_the_record_is_unavailable() -> None:
    plan = plan_topology(load_config(EXAMPLE, environ={}))
    channel = _Channel()
    report = apply_topology(channel, plan, management=None, remove_stale=False)
    assert channel.queues == [q.name for q in plan.queues] == report.queues
    assert {(b.exchange, b.routing_key, b.queue) for b in plan.bindings} <= set(channel.bindings)


def test_the_operators_apply_says_the_record_is_unavailable() -> None:
    plan = plan_topology(load_config(EXAMPLE, environ={}))
    with pytest.raises(BrokerUnavailable, match=rf"{STATE_QUEUE}\) is unavailable: NOT_FOUND - home node"):
        apply_topology(_Channel(), plan, management=None)


def test_a_worker_without_a_management_address_declares_without_policies() -> None:
    """A broker on another AMQP port and no broker.management_urls: the operator's apply stops with
    the configuration error, a worker declares its topology and says why its policies are unchecked."""
    from hub.errors import ConfigError
    from hub.topology import apply_configured

    config = load_config(EXAMPLE, environ={"AMQP_URL": "amqp://hub:pw@mq.example:5673/hub"})
    channel = _OpenRecordChannel()
    report = apply_configured(channel, config, remove_stale=False)
    assert report.policy_problem is not None and "broker.management_urls: not set" in report.policy_problem
    assert channel.queues == [q.name for q in plan_topology(config).queues]
    with pytest.raises(ConfigError, match="broker.management_urls: not set"):
        apply_configured(_OpenRecordChannel(), config)


class _OpenRecordChannel(_Channel):
    """Like ``_Channel``, but the record is there (empty) and takes writes."""

    def queue_declare(self, name: str, **kwargs: Any) -> None:
        if name != STATE_QUEUE:
            super().queue_declare(name, **kwargs)

    def basic_get(self, queue: str, auto_ack: bool = False) -> tuple[None, None, None]:
        return None, None, None

    def basic_publish(self, *args: Any, **kwargs: Any) -> None:
        pass
