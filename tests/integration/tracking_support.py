"""Shared by the tracker tests: realistic application lives as status events, a fresh PostgreSQL
database per module, publishing to hub.status, and a consumer on a thread."""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pytest
from prometheus_client import CollectorRegistry

from hub.config import HubConfig, parse_config
from hub.status import (
    ACCEPTED,
    DEAD_LETTERED,
    DELIVERED,
    DELIVERING,
    REPLAYED,
    REPLY_RECEIVED,
    RETRY_SCHEDULED,
    TRANSPORT_REPORT,
    StatusEvent,
    event_id_for,
)
from hub.topology import STATUS_EXCHANGE, TRACKER_QUEUE
from hub.tracking.consumer import StatusConsumer, TrackerMetrics
from hub.tracking.model import TrackingStore

PG_URL = os.environ.get("HUB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def fresh_pg_database() -> Iterator[tuple[str, str]]:
    """(url, name) of a new, empty PostgreSQL database, dropped afterwards. FAILS when PostgreSQL
    is not reachable (never skips)."""
    import psycopg

    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_URL} ({str(exc).strip()}); start it or set "
                    "HUB_TEST_POSTGRES_URL")
    name = f"hub_tracker_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_URL.rsplit('/', 1)[0]}/{name}", name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def pg_admin(sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement on the admin database (``test``): outages of the store's database."""
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=10) as conn:
        cur = conn.execute(sql, params or None)
        return list(cur.fetchall()) if cur.description else []


def tracker_config(broker_url: str, store_url: str, *, tokens_file: Path | None = None,
                   batch_size: int = 50, base: Path = Path("/")) -> HubConfig:
    tracker: dict[str, Any] = {"store": store_url, "batch_size": batch_size, "port": 0}
    if tokens_file is not None:
        tracker["tokens_file"] = str(tokens_file)
    return parse_config({"broker": {"url": broker_url, "heartbeat": 10}, "tracker": tracker}, base=base, environ={})


@dataclass(frozen=True)
class Life:
    """One application's status events in the order they happened, and what the store must say."""

    name: str
    message_id: str
    events: tuple[StatusEvent, ...]
    state: str
    attempts: int
    reason: str | None
    transport_report: str | None
    replies: int
    correlation_id: str
    transport_message_id: str


def lives(portal: str, t0: float, destination: str = "azr:000100", adapter: str = "alpha") -> list[Life]:
    """A delivered application with a reply, a retried-then-delivered one, a dead-lettered-then-
    replayed one: the three lives of the issue, with the top-level fields the worker sends."""
    tag = uuid.uuid4().hex[:8]
    out: list[Life] = []

    def ev(mid: str, event: str, at: float, **kw: Any) -> StatusEvent:
        return StatusEvent(mid, event, portal, destination, adapter, at=at, correlation_id=f"corr-{mid}", **kw)

    # 1. delivered first time; transport report open then green; the authority replies
    mid, xta, ref = f"a-{tag}", f"urn:de:xta:messageid:a-{tag}", f"ANTRAG-{tag}"
    reply_xta = f"urn:de:xta:messageid:reply-{tag}"
    out.append(Life("delivered", mid, (
        ev(mid, ACCEPTED, t0, attempt=1),
        ev(mid, DELIVERING, t0 + 0.1, attempt=1, transport_message_id=xta, application_ref=ref),
        ev(mid, DELIVERED, t0 + 0.9, attempt=1, transport_message_id=xta, detail={"xta_message_id": xta}),
        ev(mid, TRANSPORT_REPORT, t0 + 30, attempt=1, transport_message_id=xta, detail={"traffic_light": "open"}),
        ev(mid, TRANSPORT_REPORT, t0 + 90, attempt=1, transport_message_id=xta, detail={"traffic_light": "green"}),
        StatusEvent("", REPLY_RECEIVED, portal, destination, None, at=t0 + 3600, transport_message_id=reply_xta,
                    application_ref=ref, event_id=event_id_for(REPLY_RECEIVED, reply_xta),
                    detail={"reply_id": reply_xta, "message_type": "OZG.Statusmeldung.130104", "reply_uuid": None}),
    ), DELIVERED, 1, None, "green", 1, f"corr-{mid}", xta))

    # 2. a transient failure, delivered on the second attempt (the failure shares the delivering
    #    event's time stamp: PRECEDENCE puts it after)
    mid, xta = f"b-{tag}", f"urn:de:xta:messageid:b-{tag}"
    out.append(Life("retried", mid, (
        ev(mid, ACCEPTED, t0 + 1, attempt=1),
        ev(mid, DELIVERING, t0 + 1.2, attempt=1, transport_message_id=xta),
        ev(mid, RETRY_SCHEDULED, t0 + 1.2, attempt=1, transport_message_id=xta, reason="endpoint_unavailable",
           detail={"reason": "endpoint_unavailable", "error": "EndpointUnavailable", "attempts": 1}),
        ev(mid, ACCEPTED, t0 + 6.2, attempt=2),
        ev(mid, DELIVERING, t0 + 6.3, attempt=2, transport_message_id=xta),
        ev(mid, DELIVERED, t0 + 7, attempt=2, transport_message_id=xta, detail={"xta_message_id": xta}),
        ev(mid, TRANSPORT_REPORT, t0 + 60, attempt=2, transport_message_id=xta, detail={"traffic_light": "yellow"}),
    ), DELIVERED, 2, "endpoint_unavailable", "yellow", 0, f"corr-{mid}", xta))

    # 3. dead-lettered (permanent), replayed by an operator, then delivered
    mid, xta = f"c-{tag}", f"urn:de:xta:messageid:c-{tag}"
    out.append(Life("replayed", mid, (
        ev(mid, ACCEPTED, t0 + 2, attempt=1),
        ev(mid, DELIVERING, t0 + 2.1, attempt=1, transport_message_id=xta),
        ev(mid, DEAD_LETTERED, t0 + 2.5, attempt=1, transport_message_id=xta, reason="xta_9012",
           detail={"reason": "xta_9012", "error": "XtaFault", "attempts": 1}),
        ev(mid, REPLAYED, t0 + 600, reason="xta_9012", detail={"previous_reason": "xta_9012"}),
        ev(mid, ACCEPTED, t0 + 600.5, attempt=1),
        ev(mid, DELIVERING, t0 + 600.6, attempt=1, transport_message_id=xta),
        ev(mid, DELIVERED, t0 + 601, attempt=1, transport_message_id=xta, detail={"xta_message_id": xta}),
    ), DELIVERED, 1, "xta_9012", None, 0, f"corr-{mid}", xta))
    return out


def publish(broker_url: str, events: Sequence[StatusEvent | bytes]) -> None:
    """Publish events (or raw bodies) to hub.status with confirms, as the worker does."""
    conn = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for item in events:
            if isinstance(item, bytes):
                ch.basic_publish(STATUS_EXCHANGE, "bogus.event.x", item,
                                 pika.BasicProperties(delivery_mode=2, content_type="application/json"),
                                 mandatory=True)
            else:
                ch.basic_publish(item.exchange, item.routing_key, item.body(), item.properties(), mandatory=True)
    finally:
        conn.close()


@contextlib.contextmanager
def running_consumer(config: HubConfig, store: TrackingStore, *, batch_size: int | None = None
                     ) -> Iterator[StatusConsumer]:
    """A StatusConsumer on its own thread (as in `hub tracker`), stopped and joined afterwards."""
    consumer = StatusConsumer(config, store, TrackerMetrics(CollectorRegistry()), batch_size=batch_size)
    thread = threading.Thread(target=consumer.run, name="test-tracker", daemon=True)
    thread.start()
    try:
        assert consumer.connected.wait(30), f"tracker consumer did not connect: {consumer.readiness()}"
        yield consumer
    finally:
        consumer.stop()
        thread.join(60)
        assert not thread.is_alive(), "tracker consumer did not stop"


def queue_depth(broker_url: str, queue: str = TRACKER_QUEUE) -> int:
    """Messages waiting in ``queue`` (after a consumer stopped: those it had not acked)."""
    conn = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


def metric(consumer: StatusConsumer, name: str, labels: dict[str, str] | None = None) -> float:
    return consumer.metrics.registry.get_sample_value(name, labels or {}) or 0.0


def events_seen(consumer: StatusConsumer) -> float:
    """Valid events the consumer has written (duplicates included), over every event name."""
    total = 0.0
    for family in consumer.metrics.registry.collect():
        if family.name == "hub_tracker_events":
            total += sum(s.value for s in family.samples if s.name == "hub_tracker_events_total")
    return total
