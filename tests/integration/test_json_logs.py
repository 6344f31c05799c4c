"""`hub worker` with ``HUB_LOG_FORMAT=json`` as a real process against the real broker and the XTA
simulator: every line it writes to stderr is one JSON object, the delivery lines carry the ids of
their message (a delivered one and a dead-lettered one), and no payload ever shows up."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from functools import partial

import pytest

from hub.envelope import new_envelope
from hub.publisher import ConfirmingPublisher, publish_envelope
from hub.samples import make_ozg_application
from hub.status import DEAD_LETTERED, DELIVERED
from tests.integration.helpers import AUTHOR, StatusCollector, wait_for
from tests.reliability.support import ROOT, free_port, simulator_settings, write_config
from transport.content import ContentPart
from transport.xta.metadata import Party
from transport.xta.simulator import serve

pytestmark = pytest.mark.broker

MARKER = "PAYLOAD-MARKER-Geheimname-4711"


def test_every_worker_line_is_json_with_the_ids_of_its_message(broker_url, pki, tmp_path):
    simulator = serve(simulator_settings(pki))
    config = write_config(tmp_path, broker_url, pki, simulator.url)
    stderr = (tmp_path / "worker.log").open("w+b")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HUB_LOG_FORMAT": "json"}
    worker = subprocess.Popen([sys.executable, "-m", "hub", "--config", str(config), "worker", "alpha",
                               "--http-port", str(free_port())], stdout=subprocess.DEVNULL, stderr=stderr,
                              env=env, cwd=ROOT)
    status = StatusCollector(broker_url)
    try:
        wait_for(lambda: b"consuming" in (tmp_path / "worker.log").read_bytes() or worker.poll() is not None, 60,
                 what="the worker to consume")
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()
        xml, message_id = make_ozg_application(reader=Party("azr:000100", "ABH"), author=Party(**AUTHOR), seed=7)
        good = dataclasses.replace(new_envelope(
            destination="azr:000100", message_type="OZG.Antrag.130101", message=xml, portal="test-portal",
            message_id=message_id, attachments=(ContentPart(MARKER.encode(), "text/plain", "anlage.txt"),)),
            correlation_id="portal-ref-1")
        bad = new_envelope(  # schema-invalid: a permanent failure, dead-lettered at the first attempt
            destination="azr:000200", message_type="OZG.Antrag.130101", portal="test-portal",
            message=(f'<?xml version="1.0"?><xau:ozg.antrag.130101 xmlns:xau="http://www.osci.de/xauslaender2611">'
                     f'<unbekannt>{MARKER}</unbekannt></xau:ozg.antrag.130101>').encode())
        with ConfirmingPublisher(_broker(config), "test-portal") as publisher:
            for envelope in (good, bad):
                publish_envelope(publisher, envelope, check=False).result(timeout=10)
        wait_for(partial(status.of, good.message_id, DELIVERED), 60, what="the delivery")
        wait_for(partial(status.of, bad.message_id, DEAD_LETTERED), 60, what="the dead letter")
    finally:
        status.close()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        finally:
            if worker.poll() is None:
                worker.kill()
            simulator.stop()
    stderr.seek(0)
    raw = stderr.read().decode("utf-8")
    assert worker.returncode == 0, raw
    assert MARKER not in raw
    records = []
    for text in raw.splitlines():
        try:
            records.append(json.loads(text))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {text!r}")
    assert records, "the worker logged nothing"
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record

    [delivered] = [r for r in records if r.get("outcome") == "delivered"]
    assert {k: delivered.get(k) for k in ("message_id", "correlation_id", "adapter", "destination", "attempt")} == {
        "message_id": good.message_id, "correlation_id": "portal-ref-1", "adapter": "alpha",
        "destination": "azr:000100", "attempt": 1}
    assert delivered["logger"] == "hub.worker" and delivered["level"] == "INFO"

    [dead] = [r for r in records if r.get("outcome") == "dead_lettered"]
    assert {k: dead.get(k) for k in ("message_id", "adapter", "destination", "attempt")} == {
        "message_id": bad.message_id, "adapter": "alpha", "destination": "azr:000200", "attempt": 1}
    assert "correlation_id" not in dead  # none was given: no empty field either

    # the lines outside any message (start, consuming, stop) carry no message ids
    assert any("consuming" in r["message"] and "message_id" not in r for r in records)


def _broker(config_path):
    from hub.config import load_config

    return load_config(config_path, environ={}).broker
