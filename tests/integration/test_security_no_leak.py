"""No payload in logs or metrics: a marker string in published payloads never shows up.

Everything runs in this process on the real broker (worker thread, in-process XTA simulator), with
the root logger and every logger that exists (hub, adapters, transport, pika, zeep, urllib3, ...)
at DEBUG. The marker travels in a delivered application, in a schema-invalid one, in malformed
ones and in an attachment; afterwards it must be absent from every log record (message and
traceback), from the worker's metric exposition, from dead-letter headers and status events -
also base64-encoded, as it sits in the envelope JSON.

pika's select_connection logs the repr of callbacks handed to its I/O loop at DEBUG; the
publisher therefore passes a closure (whose repr shows no arguments), never a ``functools.partial``
holding the body. The last test keeps it that way.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import generate_latest

from hub.envelope import Envelope, new_envelope
from hub.publisher import ConfirmingPublisher, publish_envelope
from hub.samples import make_ozg_application
from hub.status import DEAD_LETTERED, DELIVERED
from hub.topology import DEAD_QUEUE
from tests.integration.helpers import (
    AUTHOR,
    StatusCollector,
    drain,
    make_config,
    running_worker,
    wait_for,
)
from transport.content import ContentPart
from transport.security.keys import load_certificate, load_private_key
from transport.xta.metadata import Party
from transport.xta.simulator import SimulatorConfig, serve

pytestmark = pytest.mark.broker

MARKER = "Zyxwv-GEHEIM-Marker-4711"


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.records: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.name, self.format(record)))  # traceback text included

    def text(self, *, pika_select_connection: bool) -> str:
        return "\n".join(line for name, line in self.records
                         if name.startswith(PIKA_IOLOOP) == pika_select_connection)


PIKA_IOLOOP = "pika.adapters.select_connection"


@contextlib.contextmanager
def debug_logs() -> Iterator[Capture]:
    """Root + every known logger at DEBUG, all propagating to one capturing handler."""
    capture = Capture()
    root = logging.getLogger()
    loggers = [lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    saved = [(lg, lg.level, lg.propagate, lg.disabled) for lg in loggers]
    saved_root = root.level
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        lg.propagate = True
        lg.disabled = False
    root.setLevel(logging.DEBUG)
    root.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(saved_root)
        for lg, level, propagate, disabled in saved:
            lg.setLevel(level)
            lg.propagate = propagate
            lg.disabled = disabled


def forms(marker: str) -> list[str]:
    """The marker as text and as it appears inside base64 (three alignments)."""
    raw = marker.encode()
    found = [marker]
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        found.append(encoded[4 if shift else 0:-4])  # the stable middle of the encoding
    return found


def assert_absent(text: str, where: str) -> None:
    for form in forms(MARKER):
        assert form not in text, f"payload marker ({form!r}) leaked into {where}"


def envelopes() -> dict[str, Envelope]:
    xml, message_id = make_ozg_application(reader=Party("azr:000100", "ABH"), author=Party(**AUTHOR), seed=77)
    family = xml.split(b"<familienname>")[1].split(b"</familienname>")[0]
    delivered = xml.replace(b"<familienname>" + family, b"<familienname>" + MARKER.encode())
    invalid_date = xml.replace(b"<geburtsdatum>", b"<geburtsdatum>" + MARKER.encode())
    common: dict[str, Any] = {"destination": "azr:000100", "message_type": "OZG.Antrag.130101",
                              "portal": "test-portal"}
    return {
        "delivered": new_envelope(**common, message=delivered, message_id=message_id,
                                  attachments=(ContentPart(f"Anlage {MARKER}".encode(), "text/plain", "a.txt"),)),
        "schema": new_envelope(**common, message=invalid_date, message_id="leak-schema"),
        "malformed": new_envelope(**common, message=f"<antrag><name>{MARKER}</name><offen></antrag>".encode(),
                                  message_id="leak-malformed"),
        "utf8": new_envelope(**common, message=f"<antrag>{MARKER}\xff</antrag>".encode("latin-1"),
                             message_id="leak-utf8"),
        "doctype": new_envelope(**common, message=f'<!DOCTYPE a [<!ENTITY m "{MARKER}">]><a>&m;</a>'.encode(),
                                message_id="leak-doctype"),
    }


@dataclass
class Run:
    logs: Capture
    exposition: str
    dead: list[tuple[Any, bytes]]
    events: list[Any]
    delivered_id: str


@pytest.fixture(scope="module")
def run(broker_url, pki) -> Run:
    """Publish every case (portal-side ConfirmingPublisher) and let one worker process them."""
    readers = ("azr:000100", "azr:000200", "azr:000300")
    simulator = serve(SimulatorConfig(
        reader_keys={r: load_private_key(pki[r.replace(":", "-")][0]) for r in readers},
        trusted_signers=(load_certificate(pki["ca"][1]),)))
    cases = envelopes()
    failing = [e for name, e in cases.items() if name != "delivered"]
    status = StatusCollector(broker_url)
    try:
        with debug_logs() as logs:
            config = make_config(broker_url, pki, simulator.url)
            with running_worker(config, "alpha") as worker:
                with ConfirmingPublisher(config.broker, "test-portal") as publisher:
                    for e in cases.values():  # unchecked: the worker's own checks are under test
                        publish_envelope(publisher, e, check=False).result(timeout=10)
                dead = drain(broker_url, DEAD_QUEUE, len(failing), timeout=60)
                wait_for(lambda: status.of(cases["delivered"].message_id, DELIVERED), 30, what="delivery")
                wait_for(lambda: all(status.of(e.message_id, DEAD_LETTERED) for e in failing), 30,
                         what="dead letters")
                exposition = generate_latest(worker.metrics.registry).decode()
    finally:
        status.close()
        simulator.stop()
    reasons = {p.message_id: p.headers["x-hub-reason"] for p, _ in dead}
    assert reasons == {"leak-schema": "schema_violation", "leak-malformed": "xml_rejected",
                       "leak-utf8": "xml_rejected", "leak-doctype": "xml_rejected"}
    return Run(logs, exposition, dead, list(status.events), cases["delivered"].message_id)


def test_logs_metrics_headers_and_events_hold_no_payload(run: Run) -> None:
    logs = run.logs.text(pika_select_connection=False)
    # the pipeline was observable at DEBUG (so absence means something): ids go in logs ...
    assert len(run.logs.records) > 20 and run.delivered_id in logs
    assert 'hub_messages_processed_total{adapter="alpha",outcome="delivered"} 1.0' in run.exposition
    # ... payloads go nowhere
    assert_absent(logs, "the logs (every logger but pika's I/O loop)")
    assert_absent(run.exposition, "the metric exposition")
    assert_absent(json.dumps([p.headers for p, _ in run.dead], default=str), "the dead-letter headers")
    assert_absent(json.dumps([e.__dict__ for e in run.events], default=str), "the status events")


def test_pika_io_loop_debug_logs_hold_no_payload(run: Run) -> None:
    assert_absent(run.logs.text(pika_select_connection=True), "pika's select_connection DEBUG log")


def _fault_server(reason: str) -> Any:
    """A far side that answers every request with a SOAP 1.2 Sender fault without XTA detail whose
    Reason echoes ``reason`` (as a server quoting a payload value would), over real loopback HTTP."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    fault = (f'<?xml version="1.0" encoding="utf-8"?><e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope">'
             f'<e:Body><e:Fault><e:Code><e:Value>e:Sender</e:Value><e:Subcode><e:Value>e:BadValue</e:Value>'
             f'</e:Subcode></e:Code><e:Reason><e:Text xml:lang="de">Ungültiger Wert: {reason}</e:Text></e:Reason>'
             f'</e:Fault></e:Body></e:Envelope>').encode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(400)
            self.send_header("Content-Type", "application/soap+xml; charset=utf-8")
            self.send_header("Content-Length", str(len(fault)))
            self.end_headers()
            self.wfile.write(fault)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_remote_fault_text_reaches_no_header_log_or_event(fresh_broker_url, pki) -> None:
    """A SOAP fault's Reason is the far side's free text (it may quote the payload): retries and the
    dead letter keep its codes, never its text. (A vhost of its own: its short ladder's retry queues
    would differ in TTL from the module's.)"""
    broker_url = fresh_broker_url
    server = _fault_server(MARKER)
    xml, message_id = make_ozg_application(reader=Party("azr:000100", "ABH"), author=Party(**AUTHOR), seed=78)
    envelope = new_envelope(destination="azr:000100", message_type="OZG.Antrag.130101", portal="test-portal",
                            message=xml, message_id=message_id)
    status = StatusCollector(broker_url)
    try:
        with debug_logs() as logs:
            config = make_config(broker_url, pki, f"http://127.0.0.1:{server.server_port}/xta",
                                 retry_delays=[0.25, 0.25])  # two retries, as with the default [1, 2]
            with running_worker(config, "alpha"):
                with ConfirmingPublisher(config.broker, "test-portal") as publisher:
                    publish_envelope(publisher, envelope).result(timeout=10)
                wait_for(lambda: status.of(message_id, DEAD_LETTERED), 60, what="the dead letter")
            dead = [(p, b) for p, b in drain(broker_url, DEAD_QUEUE, 1, timeout=30) if p.message_id == message_id]
    finally:
        status.close()
        server.shutdown()
        server.server_close()
    [(props, _body)] = dead
    headers = props.headers
    text = logs.text(pika_select_connection=False)
    # the failure was described (so absence means something): codes and the HTTP status ...
    assert headers["x-hub-reason"] == "endpoint_protocol" and headers["x-hub-attempts"] == 3
    assert "SOAP Sender/BadValue fault without XTA detail, HTTP 400" in headers["x-hub-error-message"]
    assert text.count("SOAP Sender/BadValue fault") >= 3  # two retries and the dead letter
    # ... never the far side's text
    assert "Ungültiger Wert" not in headers["x-hub-error-message"] and "Ungültiger Wert" not in text
    assert_absent(json.dumps(headers, default=str), "the dead-letter headers")
    assert_absent(text, "the logs (every logger but pika's I/O loop)")
    assert_absent(json.dumps([e.__dict__ for e in status.events], default=str), "the status events")
