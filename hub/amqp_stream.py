"""Large AMQP messages without a second copy: published frame by frame, received into one buffer.

pika's ``basic_publish`` marshals a whole message at once: every body frame is a fresh copy of its
slice of the body, and all of them wait in the connection's output buffer until the socket takes
them. For a 40 MB application that is a second copy of the payload in the publisher (a third
when the caller first joined its parts into one body). ``BodyStream`` writes the same frames
(AMQP 0-9-1 section 4.2.6: method, content header, body frames of at most ``frame_max - 8``
bytes) straight from the caller's parts, one frame at a time, and stops while the output buffer
holds more than ``high_water`` bytes, resuming on the I/O loop a moment later. The publisher then
holds the payload once plus at most ``high_water`` + one frame.

The content frames of one message must follow each other on their channel with no other frame
of that channel in between; ``ConfirmingPublisher`` holds back its other publishes while a
stream runs. Frames of channel 0 (heartbeats) may interleave; the spec allows that.

Receiving has the same problem the other way round: pika collects a message's body frames in a
list and joins them when the last one arrives, so for a moment the consumer holds the body twice.
``BodyAssembler`` (installed on a channel with ``assemble_into_one_buffer``) allocates the body
once when the content header announces its size and copies each frame into it as it arrives; the
consumer gets that ``bytearray``.

This uses internals of the pinned pika (1.4.4): the connection's ``_body_max_length`` and
``_output_marshaled_frames``, the transport's ``get_write_buffer_size()`` through
``_get_write_buffer_size``, and the channel's ``_content_assembler`` with the hooks of
``ContentFrameAssembler``; ``tests/integration/test_publish_stream.py`` guards them.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Sequence
from typing import Any

import pika
from pika import exceptions, frame, spec
from pika.channel import ContentFrameAssembler

STREAM_THRESHOLD = 1024 * 1024  # bodies above this are streamed; below it one basic_publish is cheaper
HIGH_WATER = 2 * 1024 * 1024  # bytes in the output buffer above which the stream waits
RESUME_DELAY = 0.002  # seconds between checks while the socket is full

_BODY_FRAME = 3
_FRAME_END = bytes((spec.FRAME_END,))
_HEAD = struct.Struct(">BHI")

Chunk = bytes | bytearray | memoryview


def body_length(chunks: Sequence[Chunk]) -> int:
    """Total bytes of a body given as parts (memoryviews count their bytes, not their items)."""
    return sum(c.nbytes if isinstance(c, memoryview) else len(c) for c in chunks)


def body_frame(channel_number: int, fragment: Sequence[Chunk]) -> bytes:
    """One marshalled AMQP body frame holding ``fragment`` (its pieces joined once)."""
    size = body_length(fragment)
    return b"".join((_HEAD.pack(_BODY_FRAME, channel_number, size), *fragment, _FRAME_END))


class BodyStream:
    """One message written to ``connection`` frame by frame; runs on the connection's I/O thread only.

    ``on_done(None)`` when the last frame is in the output buffer, ``on_done(error)`` when the
    channel or connection closed first (the broker then never saw a whole message; its confirm
    never comes, and the publisher fails the message's future when it learns of the close)."""

    def __init__(self, connection: Any, channel: Any, publish: spec.Basic.Publish,
                 properties: pika.BasicProperties, chunks: Sequence[Chunk],
                 on_done: Callable[[BaseException | None], None], *, high_water: int = HIGH_WATER) -> None:
        self._connection = connection
        self._channel = channel
        self._publish = publish
        self._properties = properties
        # empty parts carry nothing: a frame for one after the last byte would be a protocol error
        self._chunks = [view for view in (memoryview(c).cast("B") for c in chunks) if view.nbytes]
        self._length = body_length(self._chunks)
        self._on_done = on_done
        self._high_water = high_water
        self._index = 0  # chunk being sent
        self._offset = 0  # bytes of that chunk already sent
        self.frames_written = 0
        self._aborted = False
        self.peak_buffer = 0  # largest output buffer seen after a write, for tests and benchmarks

    def start(self) -> None:
        """Send the method and content header frames, then as many body frames as the buffer allows."""
        number = self._channel.channel_number
        head = [frame.Method(number, self._publish).marshal(), frame.Header(number, self._length, self._properties).marshal()]
        self._connection._output_marshaled_frames(head)
        self.pump()

    def pump(self) -> None:
        """Write body frames until the buffer is above the high-water mark or the body is sent.
        Never raises: the method and header frames are out, so a failure half-way leaves the
        channel in the middle of a message; the connection is closed then (the broker drops the
        partial message, the publisher fails what was not confirmed)."""
        try:
            self._pump()
        except Exception as exc:  # noqa: BLE001 - a bug or a broken transport: end this stream cleanly
            self._finish(exc)
            with contextlib.suppress(Exception):
                if not (self._connection.is_closed or self._connection.is_closing):
                    self._connection.close(320, "a message was cut off while being sent")

    def abort(self) -> None:
        """The channel or connection is gone: drop the parts now (a pending resume may never run)."""
        self._aborted = True
        self._chunks = []

    def _pump(self) -> None:
        if self._aborted:
            return
        if self._connection.is_closed or self._connection.is_closing or not self._channel.is_open:
            # the broker never saw the whole message; a frame more on a closed channel would be a
            # protocol error that takes the connection down
            self._finish(ConnectionError("channel closed while the message was being sent"))
            return
        max_body, number = self._connection._body_max_length, self._channel.channel_number
        while self._index < len(self._chunks):
            if self._connection._get_write_buffer_size() >= self._high_water:
                self._connection.ioloop.call_later(RESUME_DELAY, self.pump)
                return
            self._connection._output_marshaled_frames([body_frame(number, self._next_fragment(max_body))])
            self.frames_written += 1
            self.peak_buffer = max(self.peak_buffer, self._connection._get_write_buffer_size())
        self._finish(None)

    def _next_fragment(self, max_body: int) -> list[memoryview]:
        """The next ``max_body`` bytes (fewer at the end), possibly spanning several chunks."""
        pieces: list[memoryview] = []
        wanted = max_body
        while wanted and self._index < len(self._chunks):
            chunk = self._chunks[self._index]
            piece = chunk[self._offset:self._offset + wanted]
            if piece.nbytes:
                pieces.append(piece)
            wanted -= piece.nbytes
            self._offset += piece.nbytes
            if self._offset >= chunk.nbytes:
                self._index += 1
                self._offset = 0
        return pieces

    def _finish(self, error: BaseException | None) -> None:
        self._chunks = []  # the caller's parts are released as soon as they are written
        self._index = 0
        self._on_done(error)


class BodyAssembler(ContentFrameAssembler):  # type: ignore[misc]  # pika has no type information
    """pika's assembler, but a body above ``threshold`` bytes goes into one ``bytearray`` allocated
    at its content header, frame by frame, instead of a list of frames joined at the end."""

    def __init__(self, threshold: int = STREAM_THRESHOLD) -> None:
        super().__init__()
        self._threshold = threshold
        self._buffer: bytearray | None = None

    def process(self, frame_value: Any) -> Any:
        if isinstance(frame_value, frame.Header) and frame_value.body_size > self._threshold:
            self._header_frame = frame_value
            self._buffer = bytearray(frame_value.body_size)  # the one copy (resident at once: CPython zero-fills it)
            return None
        return super().process(frame_value)

    def _handle_body_frame(self, body_frame: Any) -> Any:
        buffer = self._buffer
        if buffer is None:
            return super()._handle_body_frame(body_frame)
        fragment = body_frame.fragment
        seen: int = self._seen_so_far  # type: ignore[has-type]  # set by pika's untyped base class
        end = seen + len(fragment)
        if end > len(buffer):
            raise exceptions.BodyTooLongError(end, len(buffer))
        buffer[seen:end] = fragment
        self._seen_so_far = end
        if end < len(buffer):
            return None
        content = (self._method_frame, self._header_frame, buffer)
        self._reset()
        return content

    def _reset(self) -> None:
        super()._reset()
        self._buffer = None


def assemble_into_one_buffer(channel: Any, threshold: int = STREAM_THRESHOLD) -> None:
    """Make ``channel`` (a ``BlockingChannel`` or a pika ``Channel``) deliver bodies above
    ``threshold`` bytes as one ``bytearray`` filled frame by frame (see ``BodyAssembler``)."""
    impl = getattr(channel, "_impl", channel)
    if not isinstance(impl._content_assembler, BodyAssembler):  # never replace one holding half a message
        impl._content_assembler = BodyAssembler(threshold)
