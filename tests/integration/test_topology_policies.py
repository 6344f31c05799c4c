"""Queue policies on the real broker (management API): a changed delivery limit applies to the
running queue, workers never overwrite the operator's policies, and queues an earlier release
declared with arguments are reported and migrated without losing a message."""

from __future__ import annotations

import threading
import time
from typing import Any

import pika
import pytest
from click.testing import CliRunner

from hub.config import BrokerConfig, HubConfig
from hub.errors import ConfigError
from hub.management import ManagementApi
from hub.publisher import ConfirmingPublisher
from hub.topology import (
    DEAD_QUEUE,
    INBOUND_CHECKED,
    TopologyReport,
    apply_topology,
    deliver_queue,
    plan_topology,
    retry_queue,
)
from hub.topology_migrate import _park, migrate_queues, parking_queue
from tests.integration.helpers import drain, make_config, wait_for

pytestmark = pytest.mark.broker

QUEUE = deliver_queue("alpha")


def _config(url: str, pki: Any, *, limit: int, delays: list[float] | None = None) -> HubConfig:
    return make_config(url, pki, "http://127.0.0.1:9/xta", adapter_overrides={"delivery_limit": limit},
                       retry_delays=delays or [3600])


def _apply(config: HubConfig, *, remove_stale: bool = True) -> TopologyReport:
    connection = pika.BlockingConnection(pika.URLParameters(config.broker.url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        with ManagementApi.from_config(config.broker) as management:
            return apply_topology(channel, plan_topology(config), management=management, remove_stale=remove_stale)
    finally:
        connection.close()


def _publish(url: str, routing_key: str, body: bytes, message_id: str, exchange: str = "") -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish(exchange, routing_key, body, pika.BasicProperties(message_id=message_id, delivery_mode=2),
                          mandatory=True)
    connection.close()


def _depth(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    depth = connection.channel().queue_declare(queue, passive=True).method.message_count
    connection.close()
    return int(depth)


def _deliveries_until_dead_lettered(url: str, message_id: str) -> int:
    """Publish a poison message and hand it back (nack + requeue) until the broker stops offering
    it; the number of deliveries it got."""
    _publish(url, QUEUE, b"<poison/>", message_id)
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    deliveries = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        method, props, _body = channel.basic_get(QUEUE, auto_ack=False)
        if method is None:
            if _depth(url, QUEUE) == 0:
                break
            time.sleep(0.05)
            continue
        assert props.message_id == message_id, "the queue holds something else"
        deliveries += 1
        assert deliveries < 50, "never dead-lettered: no delivery limit in effect"
        channel.basic_nack(method.delivery_tag, requeue=True)
    connection.close()
    dead = drain(url, DEAD_QUEUE, 1)
    assert [p.message_id for p, _ in dead] == [message_id]
    assert dead[0][0].headers["x-first-death-reason"] == "delivery_limit", dead[0][0].headers
    return deliveries


def test_a_changed_delivery_limit_applies_to_the_running_queue(fresh_broker_url: str, pki: Any) -> None:
    first = _apply(_config(fresh_broker_url, pki, limit=2))
    assert QUEUE in first.created and QUEUE in first.policies_set and first.policy_problem is None
    assert first.legacy == []
    with_two = _deliveries_until_dead_lettered(fresh_broker_url, "poison-1")

    _publish(fresh_broker_url, QUEUE, b"<keep/>", "marker")  # proves the queue is not recreated
    second = _apply(_config(fresh_broker_url, pki, limit=4))
    assert second.policies_set == [QUEUE, deliver_queue("beta")] and second.created == []
    assert _depth(fresh_broker_url, QUEUE) == 1
    assert [p.message_id for p, _ in drain(fresh_broker_url, QUEUE, 1)] == ["marker"]
    with_four = _deliveries_until_dead_lettered(fresh_broker_url, "poison-2")
    assert with_four == with_two + 2, (with_two, with_four)

    assert _apply(_config(fresh_broker_url, pki, limit=4)).policies_set == []  # idempotent
    # a worker on an older config (rolling deploy) does not lower the operator's limit again
    assert _apply(_config(fresh_broker_url, pki, limit=2), remove_stale=False).policies_set == []
    assert _deliveries_until_dead_lettered(fresh_broker_url, "poison-3") == with_four


def test_policies_of_removed_adapters_go_and_operator_policies_stay(fresh_broker_url: str, pki: Any) -> None:
    from hub.management import Policy

    config = _config(fresh_broker_url, pki, limit=3)
    _apply(config)
    with ManagementApi.from_config(config.broker) as management:
        management.put_policy(Policy("ops-limits", "^hub\\.", "queues", 1, {"max-length": 100000}))
        smaller = make_config(fresh_broker_url, pki, "http://127.0.0.1:9/xta", retry_delays=[3600],
                              authorities={"azr:000100": "alpha"})
        smaller.adapters.pop("beta")
        report = _apply(smaller)
        assert report.policies_removed == [deliver_queue("beta"), "hub.report.beta.wait", retry_queue("beta", 1)]
        names = set(management.policies())
    assert "ops-limits" in names and deliver_queue("alpha") in names and deliver_queue("beta") not in names


def _declare_like_an_earlier_release(url: str) -> None:
    """The queues as the release before policies declared them (arguments, no group size)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(QUEUE, durable=True, arguments={
        "x-queue-type": "quorum", "x-delivery-limit": 5, "x-dead-letter-exchange": "hub.dead",
        "x-dead-letter-routing-key": "alpha.delivery_limit", "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish"})
    channel.queue_declare(retry_queue("alpha", 1), durable=True, arguments={
        "x-queue-type": "quorum", "x-message-ttl": 3_600_000, "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": QUEUE, "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish"})
    connection.close()


def _ids(url: str, queue: str, count: int) -> list[str]:
    got = [str(p.message_id) for p, _ in drain(url, queue, count, timeout=120)]
    assert len(got) == count, f"drained {len(got)} of {count}"
    return got


def test_queues_of_an_earlier_release_are_reported_then_migrated(fresh_broker_url: str, pki: Any,
                                                                  tmp_path: Any) -> None:
    url = fresh_broker_url
    _declare_like_an_earlier_release(url)
    config = _config(url, pki, limit=7)
    report = _apply(config)  # the bindings now route to the old queue
    for i in range(50):
        _publish(url, "azr:000100", b"<a/>", f"waiting-{i}", exchange=INBOUND_CHECKED)
    for i in range(10):
        _publish(url, retry_queue("alpha", 1), b"<r/>", f"retrying-{i}")

    assert sorted(q.name for q in report.legacy) == [QUEUE, retry_queue("alpha", 1)]
    legacy = {q.name: q for q in report.legacy}
    assert legacy[QUEUE].arguments["x-delivery-limit"] == 5
    assert "x-queue-type" not in legacy[QUEUE].arguments  # only what overrides a policy
    assert "hub topology apply --migrate" in legacy[QUEUE].describe()

    # the CLI says so, on every run, and succeeds (the old arguments still guard the queue)
    config_file = tmp_path / "hub.toml"
    _write_toml(config, config_file)
    from hub.cli import main

    result = CliRunner().invoke(main, ["--config", str(config_file), "topology", "apply"])
    assert result.exit_code == 0, result.output
    assert f"warning: {QUEUE}: declared by an earlier release with queue arguments" in result.output
    assert "2 queues need migration" in result.output

    # a queue with a consumer is not migrated
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_consume(QUEUE, lambda *a: None)
    wait_for(lambda: _consumers(config.broker, QUEUE) == 1, 30, what="the consumer to show")
    with (pytest.raises(ConfigError, match=rf"stop the workers first: consumers on {QUEUE} \(1\)"),
          ManagementApi.from_config(config.broker) as management):
        migrate_queues(connection, plan_topology(config), management, [QUEUE])
    connection.close()
    wait_for(lambda: _consumers(config.broker, QUEUE) == 0, 30, what="the consumer to go")

    # a portal keeps publishing while the queues are migrated: every message lands somewhere
    published: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def portal() -> None:
        try:
            with ConfirmingPublisher(BrokerConfig(url=url), "portal") as publisher:
                i = 0
                while not stop.is_set():
                    message_id = f"during-{i}"
                    publisher.publish_and_wait(INBOUND_CHECKED, "azr:000100", b"<d/>",
                                               pika.BasicProperties(message_id=message_id, delivery_mode=2),
                                               mandatory=True)
                    published.append(message_id)
                    i += 1
                    time.sleep(0.01)  # a portal's pace, not a flood: the check drains them one by one
        except BaseException as exc:  # noqa: BLE001 - e.g. UnknownDestination: no queue was bound
            errors.append(exc)

    thread = threading.Thread(target=portal, daemon=True)
    thread.start()
    wait_for(lambda: len(published) >= 20, 30, what="the portal to publish")
    result = CliRunner().invoke(main, ["--config", str(config_file), "topology", "apply", "--migrate"])
    after = len(published)
    wait_for(lambda: len(published) >= after + 20 or errors, 30, what="the portal to publish after the migration")
    stop.set()
    thread.join(30)
    assert not thread.is_alive() and errors == [], errors
    assert result.exit_code == 0, result.output
    assert f"migrated {QUEUE}" in result.output and "2 queues migrated" in result.output

    with ManagementApi.from_config(config.broker) as management:
        states = management.queues("hub.")
    for name in (QUEUE, retry_queue("alpha", 1)):
        assert states[name].arguments == {"x-queue-type": "quorum", "x-quorum-initial-group-size": 3,
                                          "x-queue-leader-locator": "balanced"}
        assert parking_queue(name) not in states
    wait_for(lambda: _policy(config.broker, QUEUE) == QUEUE, 30, what="the policy to govern the new queue")
    assert _apply(config).legacy == []

    expected = {f"waiting-{i}" for i in range(50)} | set(published)
    got = _ids(url, QUEUE, _depth(url, QUEUE))
    assert set(got) == expected  # none lost (a message published in the rebinding instant may be twice)
    assert sorted(_ids(url, retry_queue("alpha", 1), 10)) == sorted(f"retrying-{i}" for i in range(10))
    print(f"\nmigration: {len(got)} messages in the delivery queue for {len(expected)} published "
          f"({len(got) - len(expected)} duplicates), 10 in the wait queue")


def test_an_interrupted_migration_resumes(fresh_broker_url: str, pki: Any) -> None:
    url = fresh_broker_url
    _declare_like_an_earlier_release(url)
    config = _config(url, pki, limit=5)
    _apply(config)
    for i in range(30):
        _publish(url, "azr:000100", b"<a/>", f"m-{i}", exchange=INBOUND_CHECKED)
    plan = plan_topology(config)
    spec = next(q for q in plan.queues if q.name == QUEUE)
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    _park(channel, spec, plan)  # the run stops here: the old queue is gone, its messages parked
    assert _depth(url, parking_queue(QUEUE)) == 30
    _publish(url, "azr:000100", b"<a/>", "m-30", exchange=INBOUND_CHECKED)  # the parked queue has the bindings
    with ManagementApi.from_config(config.broker) as management:
        report = migrate_queues(connection, plan, management, [])  # nothing legacy left: the leftover resumes
    connection.close()
    assert report.moved[QUEUE] == 31  # (its wait queue, which dead-letters into it, moved along)
    assert report.moved == {QUEUE: 31, retry_queue("alpha", 1): 0}
    assert sorted(_ids(url, QUEUE, 31)) == sorted(f"m-{i}" for i in range(31))


def _consumers(broker: BrokerConfig, queue: str) -> int:
    with ManagementApi.from_config(broker) as management:
        state = management.queues(queue).get(queue)
    return state.consumers if state else -1


def _policy(broker: BrokerConfig, queue: str) -> str | None:
    with ManagementApi.from_config(broker) as management:
        state = management.queues(queue).get(queue)
    return state.policy if state else None


def _write_toml(config: HubConfig, path: Any) -> None:
    """The config as a file the CLI can read (the test's own make_config, written out)."""
    import tomli_w

    doc = config.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"source"})
    for name, adapter in config.adapters.items():
        doc["adapters"][name] = {**{k: v for k, v in doc["adapters"][name].items()}, **adapter.section}
    for i, authority in enumerate(config.authorities):
        doc["authorities"][i] = {**doc["authorities"][i], **authority.addressing}
    path.write_text(tomli_w.dumps(doc))


def test_without_a_management_api_a_worker_declares_and_the_operator_stops(fresh_broker_url: str, pki: Any) -> None:
    from hub.errors import BrokerUnavailable
    from hub.processes import free_port

    config = _config(fresh_broker_url, pki, limit=3)
    nowhere = ManagementApi((f"http://127.0.0.1:{free_port()}",), "guest", "guest", "/", timeout=2)
    connection = pika.BlockingConnection(pika.URLParameters(fresh_broker_url))
    channel = connection.channel()
    channel.confirm_delivery()
    report = apply_topology(channel, plan_topology(config), management=nowhere, remove_stale=False)
    assert report.policy_problem is not None and "no management API answered" in report.policy_problem
    assert QUEUE in report.created and report.policies_set == []
    with pytest.raises(BrokerUnavailable, match="rabbitmq_management plugin enabled"):
        apply_topology(channel, plan_topology(config), management=nowhere)
    connection.close()
    # the operator's apply later gives the worker-made queue its policy
    assert QUEUE in _apply(config).policies_set
    assert _deliveries_until_dead_lettered(fresh_broker_url, "poison") == 4


def test_the_policy_of_a_removed_wait_queue_stays_while_it_holds_messages(fresh_broker_url: str, pki: Any) -> None:
    """Shortening retry_delays: hub.retry.alpha.2 is no longer configured, but what waits in it must
    still come back (its TTL and dead-lettering are its policy)."""
    url = fresh_broker_url
    _apply(_config(url, pki, limit=5, delays=[1, 15]))
    _publish(url, retry_queue("alpha", 2), b"<r/>", "still-waiting")
    shorter = _apply(_config(url, pki, limit=5, delays=[1]))
    assert retry_queue("alpha", 2) not in shorter.policies_removed
    assert any(note.startswith(f"{retry_queue('alpha', 2)} is no longer configured but holds 1 messages")
               for note in shorter.notes), shorter.notes
    got = drain(url, QUEUE, 1, timeout=60)  # its TTL still returns it
    assert [p.message_id for p, _ in got] == ["still-waiting"]
    assert retry_queue("alpha", 2) in _apply(_config(url, pki, limit=5, delays=[1])).policies_removed


def _messages(broker: BrokerConfig, queue: str) -> int:
    with ManagementApi.from_config(broker) as management:
        state = management.queues(queue).get(queue)
    return state.messages if state else -1
