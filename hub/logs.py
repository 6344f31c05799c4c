"""Log set-up for every long-running command, and the per-message log context.

``log_format = "json"`` (or ``HUB_LOG_FORMAT=json``) writes one JSON object per line, so a log
shipper can index the lines without parsing prose: ``time`` (ISO 8601 UTC, milliseconds),
``level``, ``logger``, ``message`` and, while a message is being handled, its ids: ``message_id``,
``correlation_id``, ``adapter``, ``destination``, ``attempt`` and (on the line that reports it)
``outcome``; ``exception`` holds a traceback when there is one.

The ids come from a ``contextvars`` context that the worker sets around each delivery (and the
reply poller around each reply), so every line logged while a message is handled carries them,
also those of the adapter and transport code, which knows nothing of the message. Only these
named fields are ever taken from a record's ``extra``: nothing else a caller attaches (least of
all payload content) reaches the output. The output is pure ASCII (non-ASCII escaped by JSON), so a
line stays valid JSON whatever the encoding of the stream it is written to.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any, Literal

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# the per-message fields, in output order; ids and small words only, never content
CONTEXT_FIELDS = ("message_id", "correlation_id", "adapter", "destination", "attempt", "outcome")

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("hub_log_context", default=_EMPTY)


def current_context() -> dict[str, Any]:
    """The per-message fields set in this thread/task right now (a copy)."""
    return dict(_context.get())


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (names from ``CONTEXT_FIELDS``; None values are left out) to every log line
    emitted inside the block by this thread or task; the previous context comes back afterwards."""
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:  # a typo would silently drop the field from every line
        raise ValueError(f"not a log context field: {', '.join(sorted(unknown))}")
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def _iso_time(record: logging.LogRecord) -> str:
    stamp = datetime.fromtimestamp(record.created, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module doc for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso_time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = _context.get()
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, context.get(name))  # extra={"outcome": ...} wins
            if value is not None:
                entry[name] = value if isinstance(value, (int, float, bool)) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=True, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record (as logging's last resort
    does), so a replaced stderr (a test runner, a daemon wrapper) is followed, never a closed one."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:  # StreamHandler.setStream: always stderr
        pass


_HUB_HANDLER = "_hub_handler"


def make_formatter(fmt: LogFormat) -> logging.Formatter:
    """The formatter of ``log_format``."""
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"log format must be 'text' or 'json', not {fmt!r}")


def configure_logging(level: str | int, fmt: LogFormat = "text", *,
                      stream: IO[str] | None = None) -> logging.Handler | None:
    """Set the root level and the hub's own log handler (stderr, or ``stream``) to ``fmt``.

    Called again (once the config is read) it re-formats the same handler instead of adding a
    second one. Like ``logging.basicConfig`` it adds no stderr handler beside handlers someone else
    installed on the root logger (an embedding program, a test runner), unless ``stream`` is given.
    Returns the hub's handler (None if it left the logging to those other handlers). pika is kept at
    CRITICAL: it logs every state change, and the hub reports broker failures itself."""
    formatter = make_formatter(fmt)
    root = logging.getLogger()
    root.setLevel(level)
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    if fmt == "json":  # a warning is a log line too, not a stray line of text among the JSON
        logging.captureWarnings(True)
    ours = [h for h in root.handlers if getattr(h, _HUB_HANDLER, False)]
    handler: logging.Handler | None = None
    if stream is not None:
        for old in ours:
            root.removeHandler(old)
        handler = logging.StreamHandler(stream)
    elif ours:
        handler = ours[0]
    elif not root.handlers:
        handler = _StderrHandler()
    if handler is None:
        return None
    setattr(handler, _HUB_HANDLER, True)
    handler.setFormatter(formatter)
    if handler not in root.handlers:
        root.addHandler(handler)
    return handler
