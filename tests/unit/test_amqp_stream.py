"""BodyStream against a stand-in connection whose output buffer drains only when the test says so:
the frames it writes are the AMQP frames of the whole body, in order, never more than one frame
above the high-water mark, and nothing more is written once the channel is closed. BodyAssembler
fed pika's own frames: a large body comes out as one buffer, equal to what was sent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pika
import pytest
from pika import exceptions, frame, spec

from hub.amqp_stream import BodyAssembler, BodyStream, body_frame, body_length

FRAME_MAX_BODY = 1000
HIGH_WATER = 3000


class _Channel:
    channel_number = 7
    is_open = True


class _Connection:
    """What BodyStream uses of a pika connection; the 'socket' drains only in ``drain``."""

    _body_max_length = FRAME_MAX_BODY
    is_closed = False
    is_closing = False

    def __init__(self) -> None:
        self.buffered: list[bytes] = []
        self.written: list[bytes] = []
        self.timers: list[Callable[[], None]] = []
        self.peak = 0
        self.ioloop = self

    def call_later(self, _delay: float, callback: Callable[[], None]) -> None:
        self.timers.append(callback)

    def _output_marshaled_frames(self, frames: list[bytes]) -> None:
        self.buffered.extend(frames)
        self.peak = max(self.peak, self._get_write_buffer_size())

    def _get_write_buffer_size(self) -> int:
        return sum(len(f) for f in self.buffered)

    def drain(self) -> None:
        self.written.extend(self.buffered)
        self.buffered.clear()

    def run_timers(self) -> None:
        timers, self.timers = self.timers, []
        for timer in timers:
            timer()


def _decode(data: bytes) -> list[Any]:
    frames = []
    while data:
        used, decoded = frame.decode_frame(data)
        assert used, "an incomplete frame"
        frames.append(decoded)
        data = data[used:]
    return frames


def _stream(connection: _Connection, channel: _Channel, chunks: list[Any],
            done: list[BaseException | None]) -> BodyStream:
    method = spec.Basic.Publish(exchange="x", routing_key="k", mandatory=True)
    properties = pika.BasicProperties(message_id="m-1", delivery_mode=2)
    return BodyStream(connection, channel, method, properties, chunks, done.append, high_water=HIGH_WATER)


def test_the_body_goes_out_as_frames_of_the_parts_in_order_within_the_high_water_mark() -> None:
    parts: list[Any] = [bytes(range(256)) * 10, memoryview(b"0123456789"), b"\xab" * 4000, b"", b"end"]
    whole = b"".join(bytes(p) for p in parts)
    connection, channel = _Connection(), _Channel()
    done: list[BaseException | None] = []
    stream = _stream(connection, channel, parts, done)
    stream.start()
    rounds = 0
    while not done:
        assert connection.timers, "the stream stalled without asking to be resumed"
        connection.drain()
        connection.run_timers()
        rounds += 1
    connection.drain()
    assert done == [None]
    assert rounds >= 2, "the stream never waited for the buffer to drain"
    assert connection.peak <= HIGH_WATER + FRAME_MAX_BODY + 8

    frames = _decode(b"".join(connection.written))
    assert isinstance(frames[0].method, spec.Basic.Publish) and frames[0].method.routing_key == "k"
    assert frames[0].method.mandatory is True
    assert frames[1].body_size == len(whole) and frames[1].properties.message_id == "m-1"
    bodies = frames[2:]
    assert all(f.channel_number == 7 for f in frames) and all(isinstance(f, frame.Body) for f in bodies)
    assert all(len(f.fragment) == FRAME_MAX_BODY for f in bodies[:-1])
    assert b"".join(f.fragment for f in bodies) == whole
    assert stream.frames_written == len(bodies) == -(-len(whole) // FRAME_MAX_BODY)


def test_nothing_more_is_written_once_the_channel_is_closed() -> None:
    connection, channel = _Connection(), _Channel()
    done: list[BaseException | None] = []
    stream = _stream(connection, channel, [b"x" * 20_000], done)
    stream.start()
    assert not done
    written = len(connection.buffered)
    channel.is_open = False
    connection.drain()
    connection.run_timers()
    assert len(connection.written) == written and not connection.buffered
    assert len(done) == 1 and isinstance(done[0], ConnectionError)


def test_body_frame_and_length_count_bytes_not_items() -> None:
    wide = memoryview(bytearray(8)).cast("I")  # 2 items of 4 bytes
    assert body_length([b"abc", wide]) == 11
    used, decoded = frame.decode_frame(body_frame(3, [memoryview(b"ab"), b"cd"]))
    assert used == 7 + 4 + 1 and decoded.fragment == b"abcd" and decoded.channel_number == 3


def _content_frames(body: bytes, frame_body: int) -> list[Any]:
    method = frame.Method(1, spec.Basic.Deliver(consumer_tag="c", delivery_tag=1, routing_key="k"))
    header = frame.Header(1, len(body), pika.BasicProperties(message_id="m"))
    return [method, header, *(frame.Body(1, body[i:i + frame_body]) for i in range(0, len(body), frame_body))]


def test_a_large_body_is_received_into_one_buffer_and_a_small_one_as_pika_does() -> None:
    assembler = BodyAssembler(threshold=1000)
    large = bytes(range(256)) * 20
    results = [assembler.process(f) for f in _content_frames(large, 300)]
    assert results[:-1] == [None] * (len(results) - 1)
    method, header, body = results[-1]
    assert isinstance(body, bytearray) and body == large
    assert header.properties.message_id == "m" and method.method.delivery_tag == 1

    small = b"x" * 1000  # not above the threshold: pika's own list-and-join, as bytes
    *_, (_, _, body) = [assembler.process(f) for f in _content_frames(small, 300)]
    assert type(body) is bytes and body == small


def test_a_body_longer_than_its_header_says_is_refused() -> None:
    assembler = BodyAssembler(threshold=10)
    frames = _content_frames(b"y" * 100, 60)
    frames[-1] = frame.Body(1, b"z" * 50)  # 110 bytes where the header announced 100
    for f in frames[:-1]:
        assert assembler.process(f) is None
    with pytest.raises(exceptions.BodyTooLongError):
        assembler.process(frames[-1])


def test_empty_parts_add_no_frame_even_after_a_full_last_frame() -> None:
    """A body of exactly k frames followed by an empty part (a 0-byte attachment): a frame after the
    last byte would be an unexpected frame to the broker, which closes the connection."""
    for parts in ([b"x" * 2 * FRAME_MAX_BODY, b""], [b"", b"y" * FRAME_MAX_BODY, b"", b""], [b"", b""]):
        connection, channel = _Connection(), _Channel()
        done: list[BaseException | None] = []
        _stream(connection, channel, list(parts), done).start()
        connection.drain()
        assert done == [None]
        bodies = _decode(b"".join(connection.written))[2:]
        assert [len(f.fragment) for f in bodies] == [FRAME_MAX_BODY] * (sum(map(len, parts)) // FRAME_MAX_BODY)


def test_a_failure_half_way_ends_the_stream_and_closes_the_connection() -> None:
    class _Breaking(_Connection):
        closed_with: tuple[int, str] | None = None

        def _output_marshaled_frames(self, frames: list[bytes]) -> None:
            if len(self.buffered) >= 3:
                raise OSError("transport broke")
            super()._output_marshaled_frames(frames)

        def close(self, code: int, text: str) -> None:
            self.closed_with = (code, text)

    connection, channel = _Breaking(), _Channel()
    done: list[BaseException | None] = []
    stream = _stream(connection, channel, [b"z" * 10_000], done)
    stream.start()  # never raises: the method and header frames are already out
    assert len(done) == 1 and isinstance(done[0], OSError)
    assert connection.closed_with is not None and connection.closed_with[0] == 320
    stream.abort()
    stream.pump()  # aborted: nothing more happens
    assert len(done) == 1
