"""Large messages written frame by frame (hub/amqp_stream.py) on a real RabbitMQ: the body arrives
byte-identical, small publishes from other threads wait their turn instead of cutting into its
frames (the broker would close the connection), and a broker that stops reading (memory alarm)
holds the publisher at the high-water mark instead of letting it buffer the whole payload again."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from concurrent.futures import Future

import pika
import pytest

from hub.amqp_stream import HIGH_WATER, assemble_into_one_buffer
from hub.config import BrokerConfig
from hub.errors import BrokerUnavailable, PublishNotConfirmed
from hub.publisher import ConfirmingPublisher
from tests.integration.helpers import drain, wait_for
from tests.support.rabbitmq_node import RabbitNode, rabbit_node

pytestmark = pytest.mark.broker
QUEUE = "stream.test"
FRAME_LIMIT = HIGH_WATER + 131072  # the high-water mark plus one frame of the broker's frame_max


def _declare(url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    finally:
        connection.close()


def _props(message_id: str) -> pika.BasicProperties:
    return pika.BasicProperties(message_id=message_id, delivery_mode=2, content_type="application/octet-stream")


def _large(seed: int, size: int) -> list[bytes | memoryview]:
    """A body in three pieces of odd sizes, one of them a memoryview: frames must span them."""
    block = hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1)
    return [block[:size // 3 + 1], memoryview(block)[size // 3 + 1:size // 2 + 7], block[size // 2 + 7:size]]


@pytest.fixture(scope="module")
def node() -> Iterator[RabbitNode]:
    """A private broker node (its memory alarm and stops must not touch the shared one on 5672)."""
    with rabbit_node() as rabbit:
        yield rabbit


def test_large_bodies_arrive_whole_and_small_publishes_from_other_threads_keep_their_order(
        fresh_broker_url: str) -> None:
    _declare(fresh_broker_url)
    expected: list[tuple[str, bytes]] = []
    futures: list[Future[None]] = []
    lock = threading.Lock()
    with ConfirmingPublisher(BrokerConfig(url=fresh_broker_url), "stream-test") as publisher:
        def small(thread: int) -> None:
            for n in range(40):
                body = f"small {thread}-{n}".encode()
                with lock:  # the queue order is the publish order: record both under one lock
                    futures.append(publisher.publish("", QUEUE, body, _props(f"s-{thread}-{n}")))
                    expected.append((f"s-{thread}-{n}", body))

        threads = [threading.Thread(target=small, args=(t,)) for t in range(2)]
        for t in threads:
            t.start()
        for n in range(3):
            chunks = _large(n, 9_000_000 + n)
            with lock:
                futures.append(publisher.publish("", QUEUE, chunks, _props(f"L-{n}")))
                expected.append((f"L-{n}", b"".join(bytes(c) for c in chunks)))
        for t in threads:
            t.join()
        for future in futures:
            future.result(timeout=120)
        assert publisher.is_open, "the broker closed the connection: a frame cut into a streamed message"

    got = [(props.message_id, body) for props, body in drain(fresh_broker_url, QUEUE, len(expected), timeout=120)]
    assert [m for m, _ in got] == [m for m, _ in expected]
    for (message_id, body), (_, want) in zip(got, expected, strict=True):
        assert body == want, f"{message_id}: body differs ({len(body)} bytes, {len(want)} sent)"


def test_a_broker_that_stops_reading_holds_the_stream_at_the_high_water_mark(node: RabbitNode) -> None:
    _declare(node.url)
    size = 48 * 1024 * 1024
    with ConfirmingPublisher(BrokerConfig(url=node.url), "stream-alarm") as publisher:
        publisher.publish_and_wait("", QUEUE, b"before", _props("before"))
        node.memory_alarm(True)
        try:
            # the broker says connection.blocked to a connection that publishes during the alarm
            probe = publisher.publish("", QUEUE, b"probe", _props("probe"))
            wait_for(lambda: publisher.blocked, timeout=60, what="connection.blocked from the broker")
            large = publisher.publish("", QUEUE, _large(1, size), _props("large"))
            held = publisher.publish("", QUEUE, b"after", _props("after"))
            stream = wait_for(lambda: publisher._stream, timeout=30, what="the stream to start")
            # the broker reads no more: the stream stops at the mark and waits for the socket
            wait_for(lambda: stream.frames_written and stream.peak_buffer >= HIGH_WATER - 131072,
                     timeout=60, what="the output buffer to reach the high-water mark")
            sent = stream.frames_written
            threading.Event().wait(2.0)
            assert not large.done() and not held.done()
            assert stream.peak_buffer <= FRAME_LIMIT
            assert stream.frames_written * 131064 < size * 0.75, f"{stream.frames_written} frames of {size} bytes"
            assert stream.frames_written - sent < 64, "the stream kept writing while the broker read nothing"
        finally:
            node.memory_alarm(False)
        for future in (probe, large, held):
            future.result(timeout=120)
    got = drain(node.url, QUEUE, 4, timeout=120)
    assert [p.message_id for p, _ in got] == ["before", "probe", "large", "after"]
    assert got[2][1] == b"".join(bytes(c) for c in _large(1, size))


def test_a_connection_lost_during_a_stream_fails_it_and_the_held_publishes(node: RabbitNode) -> None:
    _declare(node.url)
    publisher = ConfirmingPublisher(BrokerConfig(url=node.url), "stream-lost")
    stopped = False
    try:
        node.memory_alarm(True)
        probe = publisher.publish("", QUEUE, b"probe", _props("probe"))
        wait_for(lambda: publisher.blocked, timeout=60, what="connection.blocked from the broker")
        large = publisher.publish("", QUEUE, _large(2, 48 * 1024 * 1024), _props("large"))
        held = publisher.publish("", QUEUE, b"after", _props("after"))
        wait_for(lambda: publisher._stream is not None and publisher._stream.frames_written, timeout=30,
                 what="the stream to start")
        node.stop_app()
        stopped = True
        for future in (probe, large, held):
            with pytest.raises((BrokerUnavailable, PublishNotConfirmed)):
                future.result(timeout=60)
        assert publisher._stream is None
    finally:
        publisher.close(timeout=0)
        if stopped:
            node.start_app()
        node.memory_alarm(False)


def test_a_consumer_channel_receives_a_large_body_into_one_buffer(fresh_broker_url: str) -> None:
    """The worker's channel set-up (assemble_into_one_buffer): pika's assembler is really replaced."""
    _declare(fresh_broker_url)
    chunks = _large(5, 3_000_000)
    with ConfirmingPublisher(BrokerConfig(url=fresh_broker_url), "stream-receive") as publisher:
        publisher.publish_and_wait("", QUEUE, chunks, _props("large"))
        publisher.publish_and_wait("", QUEUE, b"small", _props("small"))
    connection = pika.BlockingConnection(pika.URLParameters(fresh_broker_url))
    try:
        channel = connection.channel()
        assemble_into_one_buffer(channel)
        got = [wait_for(lambda: channel.basic_get(QUEUE, auto_ack=True)[2], timeout=30, what=f"message {n}")
               for n in range(2)]
    finally:
        connection.close()
    assert isinstance(got[0], bytearray) and got[0] == b"".join(bytes(c) for c in chunks)
    assert type(got[1]) is bytes and got[1] == b"small"
