"""The JSON log format and the per-message log context (hub/logs.py), and how config and worker
feed them: fields, exceptions, non-ASCII, isolation of the context between threads."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pika
import pytest

from hub.config import parse_config
from hub.errors import ConfigError
from hub.logs import (
    CONTEXT_FIELDS,
    JsonFormatter,
    configure_logging,
    current_context,
    log_context,
)
from hub.worker_events import message_log_context

TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.fixture()
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose records go through the JSON formatter into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.logs.capture")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, buffer
    logger.removeHandler(handler)
    logger.propagate = True


def lines(buffer: io.StringIO) -> list[dict[str, object]]:
    text = buffer.getvalue()
    return [json.loads(line) for line in text.splitlines()]


def test_a_line_has_time_level_logger_and_the_formatted_message(capture):
    logger, buffer = capture
    logger.warning("delivered %s to %s", "m-1", "azr:000100")
    [line] = lines(buffer)
    assert line["level"] == "WARNING"
    assert line["logger"] == "tests.logs.capture"
    assert line["message"] == "delivered m-1 to azr:000100"
    assert TIME.match(str(line["time"])), line["time"]
    assert set(line) == {"time", "level", "logger", "message"}  # no context: no id fields at all


def test_the_time_is_utc_with_milliseconds():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.created, record.msecs = 0.25, 250.0
    assert json.loads(JsonFormatter().format(record))["time"] == "1970-01-01T00:00:00.250Z"


def test_every_context_field_is_on_every_line_inside_the_block_and_gone_after(capture):
    logger, buffer = capture
    with log_context(message_id="m-1", correlation_id="c-1", adapter="alpha", destination="azr:000100", attempt=2):
        logger.info("one")
        # code that knows nothing of the message (the transport's own logger) carries the ids too
        logging.getLogger("tests.logs.capture.transport").info("two")
    logger.info("after")
    first, second, after = lines(buffer)
    for line in (first, second):
        assert {k: line[k] for k in CONTEXT_FIELDS if k != "outcome"} == {
            "message_id": "m-1", "correlation_id": "c-1", "adapter": "alpha", "destination": "azr:000100",
            "attempt": 2}
        assert "outcome" not in line
    assert second["logger"] == "tests.logs.capture.transport"
    assert not set(CONTEXT_FIELDS) & set(after)


def test_outcome_given_as_extra_and_nested_contexts(capture):
    logger, buffer = capture
    with log_context(message_id="m-1", adapter="alpha"), log_context(attempt=3, destination=None):
        assert current_context() == {"message_id": "m-1", "adapter": "alpha", "attempt": 3}
        logger.info("dead-lettered", extra={"outcome": "dead_lettered"})
    [line] = lines(buffer)
    assert line["outcome"] == "dead_lettered"
    assert (line["message_id"], line["adapter"], line["attempt"]) == ("m-1", "alpha", 3)
    assert current_context() == {}


def test_nothing_but_the_named_fields_leaves_a_record(capture):
    logger, buffer = capture
    logger.info("m", extra={"payload": "<antrag>Geheim</antrag>", "body": b"Geheim"})
    assert "Geheim" not in buffer.getvalue()
    with pytest.raises(ValueError, match="payload"), log_context(payload="Geheim"):  # refused, never written
        pass


def test_an_exception_is_a_field_of_the_same_line(capture):
    logger, buffer = capture
    try:
        raise RuntimeError("the endpoint went away")
    except RuntimeError:
        with log_context(message_id="m-9"):
            logger.exception("could not settle %s", "m-9")
    text = buffer.getvalue()
    assert text.count("\n") == 1  # the traceback does not break the line
    [line] = lines(buffer)
    assert line["message"] == "could not settle m-9"
    assert line["level"] == "ERROR"
    assert line["message_id"] == "m-9"
    assert "Traceback" in str(line["exception"]) and "RuntimeError: the endpoint went away" in str(line["exception"])


def test_non_ascii_and_control_characters_stay_one_valid_ascii_line(capture):
    logger, buffer = capture
    text = "Ausländerbehörde München ✓ \u2028 zwei\nZeilen \udcff"
    with log_context(destination="azr:000100", message_id="nachricht-ü"):
        logger.info("%s", text)
    raw = buffer.getvalue()
    assert raw.isascii()  # valid JSON on a stream of any encoding
    assert raw.count("\n") == 1
    [line] = lines(buffer)
    assert line["message"] == text
    assert line["message_id"] == "nachricht-ü"


def test_the_context_of_one_thread_never_reaches_another(capture):
    logger, buffer = capture
    both_inside = threading.Barrier(2, timeout=10)

    def handle(message_id: str) -> None:
        with log_context(message_id=message_id, adapter="alpha"):
            both_inside.wait()  # both contexts are set at the same time
            logger.info("handling %s", message_id)
            both_inside.wait()

    threads = [threading.Thread(target=handle, args=(f"m-{n}",)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    logger.info("main thread")
    by_message = {str(line["message"]): line.get("message_id") for line in lines(buffer)}
    assert by_message == {"handling m-1": "m-1", "handling m-2": "m-2", "main thread": None}


def test_a_pool_thread_forgets_the_previous_message(capture):
    """The worker's delivery threads are reused: the next task must not inherit the last ids."""
    logger, buffer = capture

    def task(message_id: str | None) -> None:
        if message_id is None:
            logger.info("no message")
            return
        with log_context(message_id=message_id):
            logger.info("with %s", message_id)

    with ThreadPoolExecutor(1) as pool:
        for message_id in ("m-1", None, "m-2", None):
            pool.submit(task, message_id).result()
    assert [line.get("message_id") for line in lines(buffer)] == ["m-1", None, "m-2", None]


def test_message_log_context_takes_the_clipped_ids_of_the_properties():
    props = pika.BasicProperties(message_id="m-" + "x" * 300, correlation_id="c-1", app_id="portal",
                                 headers={"x-destination": "azr:000100", "x-hub-attempt": 1})
    with message_log_context(props, "alpha", 3):
        fields = current_context()
    assert fields["message_id"].startswith("m-x") and len(fields["message_id"]) < 200  # clipped like events
    assert (fields["correlation_id"], fields["adapter"], fields["destination"], fields["attempt"]) == (
        "c-1", "alpha", "azr:000100", 2)
    with message_log_context(props, "alpha"):  # a transport-report poll: no delivery attempt
        assert "attempt" not in current_context()


def test_configure_logging_formats_one_handler_and_reformats_it_on_a_second_call():
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    buffer = io.StringIO()
    try:
        handler = configure_logging("INFO", "text", stream=buffer)
        logging.getLogger("hub.test").info("as text")
        again = configure_logging("DEBUG", "json")  # the config was read: same handler, now JSON
        assert again is handler
        assert [h for h in root.handlers if h is handler] == [handler]
        logging.getLogger("hub.test").debug("as json")
        assert logging.getLogger("pika").level == logging.CRITICAL
    finally:
        root.removeHandler(handler)
        root.setLevel(before[0])
        logging.captureWarnings(False)
    first, second = buffer.getvalue().splitlines()
    assert first.endswith("INFO hub.test: as text")
    assert json.loads(second)["message"] == "as json"
    assert root.handlers == before[1]
    with pytest.raises(ValueError, match="'xml'"):
        configure_logging("INFO", "xml")  # type: ignore[arg-type]


def _config(*, environ: dict[str, str]):
    return parse_config({}, base=Path("/"), environ=environ)


def test_log_format_from_the_file_and_from_hub_log_format():
    assert _config(environ={}).log_format == "text"
    assert parse_config({"log_format": "json"}, base=Path("/"), environ={}).log_format == "json"
    assert _config(environ={"HUB_LOG_FORMAT": "json"}).log_format == "json"
    assert _config(environ={"HUB_LOG_FORMAT": " JSON "}).log_format == "json"  # as operators type it
    assert parse_config({"log_format": "json"}, base=Path("/"), environ={"hub_log_format": "text"}).log_format == "text"
    with pytest.raises(ConfigError, match="log_format"):
        _config(environ={"HUB_LOG_FORMAT": "yaml"})
    with pytest.raises(ConfigError, match="log_format"):
        parse_config({"log_format": "JSON"}, base=Path("/"), environ={})
