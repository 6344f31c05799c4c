"""Size and well-formedness at both ends, on the real broker: `hub publish` and the publisher client
refuse before sending (nothing reaches a queue; exit 1, the limit or the position named, no payload
content), and the worker, trusting no publisher, refuses too much before decoding it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pika
import pytest
import tomli_w

from hub.config import LimitsConfig
from hub.envelope import new_envelope
from hub.errors import ContentTooLarge, XmlRejected
from hub.limits import SizeLimits
from hub.publisher import ConfirmingPublisher, publish_envelope
from hub.samples import make_ozg_application
from hub.topology import DEAD_QUEUE, INBOUND_CHECKED, apply_configured
from tests.integration.helpers import drain, make_config, running_worker
from tests.integration.test_xta_support import application, sim_config
from transport.content import ContentPart
from transport.xta.metadata import Party
from transport.xta.simulator import serve

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]
QUEUE = "hub.deliver.alpha"
SECRET = "Geheimname-Mustermann-4711"


def _depth(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def _hub(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub", "--config", str(config), *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, check=False)


@pytest.fixture()
def config_file(fresh_broker_url: str, pki, tmp_path: Path) -> Path:
    key, cert = pki["portal"]
    doc = {
        "broker": {"url": fresh_broker_url},
        "ledger": {"url": f"sqlite:///{tmp_path / 'ledger.db'}"},
        "limits": {"max_content_bytes": 8192},
        "message_types": [
            {"code": "OZG.Antrag.130101", "schema": "builtin:xauslaender/ozg-antrag-130101.xsd",
             "list_uri": "urn:x", "list_version": "1", "payload_schema": "urn:y"},
            {"code": "Klein.Typ", "schema": "builtin:xauslaender/ozg-antrag-130101.xsd",
             "list_uri": "urn:x", "list_version": "1", "payload_schema": "urn:y", "max_content_bytes": 2048}],
        "adapters": {"alpha": {"endpoint": "http://127.0.0.1:9/xta", "signing_key": str(key),
                               "signing_cert": str(cert), "author": {"identifier": "alp:000001"}}},
        "authorities": [{"id": "azr:000100", "name": "ABH", "adapter": "alpha",
                         "certificate": str(pki["azr-000100"][1])}],
    }
    path = tmp_path / "hub.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


def test_hub_publish_refuses_before_sending(config_file: Path, fresh_broker_url: str, tmp_path: Path) -> None:
    assert _hub(config_file, "topology", "apply").returncode == 0
    xml, _ = make_ozg_application(reader=Party("azr:000100"), author=Party("alp:000001"), seed=8)
    assert 2048 < len(xml) < 8192
    files = {
        "big.xml": b"<a><n>" + SECRET.encode() + b"x" * 9000 + b"</n></a>",
        "invalid-utf8.xml": b"<?xml version='1.0' encoding='UTF-8'?>\n<a>" + SECRET.encode() + b"\xff</a>",
        "broken.xml": b"<a>\n<b>" + SECRET.encode() + b"</a>",
        "doctype.xml": b'<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><a>&e;</a>',
        "antrag.xml": xml,
        "anlage.pdf": b"%PDF-1.7 " + b"x" * 7000,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    cases = [
        (["big.xml"], (r"content of 9040 bytes \(1 parts\) exceeds the limit of 8192 bytes for message type "
                       r"'OZG.Antrag.130101' \(limits.max_content_bytes\); not published")),
        (["antrag.xml", "--attach", "anlage.pdf"], r"content of \d+ bytes \(2 parts\) exceeds the limit of 8192"),
        (["antrag.xml", "--message-type", "Klein.Typ"],
         r"exceeds the limit of 2048 bytes for message type 'Klein.Typ' \(message_types\[\].max_content_bytes\)"),
        (["invalid-utf8.xml"], r"refused by the hardened parser: invalid UTF-8 \(line 2, column 30\); not published"),
        (["broken.xml"], r"refused by the hardened parser: not well-formed: Opening and ending tag mismatch"),
        (["doctype.xml"], r"refused by the hardened parser: DOCTYPE not allowed"),
    ]
    for args, expected in cases:
        refused = _hub(config_file, "publish", str(tmp_path / args[0]), "--to", "azr:000100",
                       *[str(tmp_path / a) if a.endswith(".pdf") else a for a in args[1:]])
        assert refused.returncode == 1, (args, refused.stderr)
        assert refused.stderr.startswith("error: ") and "Traceback" not in refused.stderr, refused.stderr
        assert re.search(expected, refused.stderr), (expected, refused.stderr)
        assert SECRET not in refused.stdout + refused.stderr
    assert _depth(fresh_broker_url, QUEUE) == 0
    ok = _hub(config_file, "publish", str(tmp_path / "antrag.xml"), "--to", "azr:000100")
    assert ok.returncode == 0, ok.stderr
    assert _depth(fresh_broker_url, QUEUE) == 1  # the queue is watched: what the checks let through arrives


def test_publisher_client_refuses_before_sending(fresh_broker_url: str, pki) -> None:
    config = make_config(fresh_broker_url, pki, "http://127.0.0.1:9/xta")
    connection = pika.BlockingConnection(pika.URLParameters(fresh_broker_url))
    apply_configured(connection.channel(), config)
    connection.close()
    limits = SizeLimits(max_content_bytes=4096)
    good, _ = make_ozg_application(reader=Party("azr:000100"), author=Party("alp:000001"), seed=9)
    too_big = new_envelope(destination="azr:000100", message_type="OZG.Antrag.130101", message=good,
                           portal="p", attachments=(ContentPart(os.urandom(4000), "application/pdf", "a.pdf"),))
    not_utf8 = new_envelope(destination="azr:000100", message_type="OZG.Antrag.130101", message=b"<a>\xc3</a>",
                            portal="p")
    with ConfirmingPublisher(config.broker, "test-portal") as publisher:
        with pytest.raises(ContentTooLarge, match=r"exceeds the limit of 4096 bytes"):
            publish_envelope(publisher, too_big, limits)
        with pytest.raises(XmlRejected, match=r"invalid UTF-8 \(line 1, column \d+\)"):
            publish_envelope(publisher, not_utf8)  # the default limits check well-formedness too
        assert _depth(fresh_broker_url, QUEUE) == 0
        publish_envelope(publisher, too_big).result(timeout=30)  # within the default 20 MiB
    assert _depth(fresh_broker_url, QUEUE) == 1


@pytest.mark.timeout(180)
def test_worker_refuses_too_much_before_decoding(fresh_broker_url: str, pki) -> None:
    """Never trust the publisher: an unchecked portal's oversized message is dead-lettered unread."""
    with serve(sim_config(pki)) as sim:
        config = make_config(fresh_broker_url, pki, sim.url)
        config = config.model_copy(update={"limits": LimitsConfig(max_content_bytes=64 * 1024)})
        big = application("azr:000100", 9401, size=100_000)
        huge_props = application("azr:000100", 9402).properties()
        huge_body = b"x" * (SizeLimits(max_content_bytes=64 * 1024).body_limit("OZG.Antrag.130101") + 1)
        with running_worker(config, "alpha"):
            with ConfirmingPublisher(config.broker, "test-portal") as publisher:
                publish_envelope(publisher, big, check=False).result(timeout=30)
                publisher.publish_and_wait(INBOUND_CHECKED, "azr:000100", huge_body, huge_props, mandatory=True)
            dead = drain(fresh_broker_url, DEAD_QUEUE, 2, timeout=60)
        assert not sim.store.messages()
    by_id = {props.message_id: props.headers for props, _ in dead}
    assert set(by_id) == {big.message_id, huge_props.message_id}
    for headers in by_id.values():
        assert headers["x-hub-reason"] == "content_too_large" and headers["x-hub-attempts"] == 1
    assert re.fullmatch(r"content of 10\d{4} bytes \(2 parts\) exceeds the limit of 65536 bytes "
                        r"\(limits.max_content_bytes\); not decoded", by_id[big.message_id]["x-hub-error-message"])
    assert json.dumps(by_id[huge_props.message_id]["x-hub-error-message"]).endswith('not read"')
