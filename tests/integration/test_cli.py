"""The `hub` command line as an operator uses it: real processes, real broker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import tomli_w

from hub.envelope import decode_envelope
from hub.envelope_v2 import CONTENT_TYPE_V2
from hub.errors import XtaFault
from hub.samples import make_ozg_application
from tests.integration.helpers import drain
from tests.reliability.support import free_port
from transport.content import Content, ContentPart
from transport.xta.client import XtaClient, XtaEndpoint
from transport.xta.container import build_content_container, generic_container
from transport.xta.metadata import BusinessScenario, MessageMetaData, MessageType, Party

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]


def _hub(config: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub", "--config", str(config), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env, check=False)  # callers check the code


@pytest.fixture()
def config_file(broker_url, pki, tmp_path: Path) -> Path:
    key, cert = pki["portal"]
    doc = {
        "broker": {"url": broker_url},
        "ledger": {"url": f"sqlite:///{tmp_path / 'ledger.db'}"},
        "message_types": [{"code": "OZG.Antrag.130101", "schema": "builtin:xauslaender/ozg-antrag-130101.xsd",
                           "list_uri": "urn:x", "list_version": "1", "payload_schema": "urn:y"}],
        "adapters": {"alpha": {"endpoint": "http://127.0.0.1:9/xta", "signing_key": str(key),
                               "signing_cert": str(cert), "author": {"identifier": "alp:000001"}}},
        "authorities": [{"id": "azr:000100", "name": "ABH", "adapter": "alpha",
                         "certificate": str(pki["azr-000100"][1])}],
        "simulator": {"readers": {"azr:000100": {"key": str(pki["azr-000100"][0])}},
                      "trusted_signers": [str(pki["ca"][1])]},
    }
    path = tmp_path / "hub.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


def test_topology_publish_and_unknown_destination(config_file: Path, broker_url: str, tmp_path: Path) -> None:
    applied = _hub(config_file, "topology", "apply")
    assert applied.returncode == 0, applied.stderr
    assert "+ bind hub.inbound.checked --azr:000100--> hub.deliver.alpha" in applied.stdout
    again = _hub(config_file, "topology", "apply")
    assert "0 bindings added, 0 removed" in again.stdout

    xml, message_id = make_ozg_application(reader=Party("azr:000100"), author=Party("alp:000001"), seed=5)
    payload = tmp_path / "antrag.xml"
    payload.write_bytes(xml)
    attachment = tmp_path / "pass.pdf"
    attachment.write_bytes(b"%PDF-1.7 test")
    ok = _hub(config_file, "publish", str(payload), "--to", "azr:000100", "--attach", str(attachment))
    assert ok.returncode == 0, ok.stderr
    assert f"published {message_id} to azr:000100 (confirmed)" in ok.stdout  # id taken from the payload
    [(props, body)] = drain(broker_url, "hub.deliver.alpha", 1)
    assert props.message_id == message_id
    assert props.content_type == CONTENT_TYPE_V2  # version 2 by default; --envelope-version 1 for old workers
    assert [a.filename for a in decode_envelope(props, body).content.attachments] == ["pass.pdf"]
    old = _hub(config_file, "publish", str(payload), "--to", "azr:000100", "--attach", str(attachment),
               "--envelope-version", "1")
    assert old.returncode == 0, old.stderr
    [(props, body)] = drain(broker_url, "hub.deliver.alpha", 1)
    assert [a["filename"] for a in json.loads(body)["attachments"]] == ["pass.pdf"]

    unknown = _hub(config_file, "publish", str(payload), "--to", "azr:999999")
    assert unknown.returncode == 1
    assert "azr:999999" in unknown.stderr and "Traceback" not in unknown.stderr


def test_broker_down_is_one_clear_line(config_file: Path) -> None:
    import os

    env = {**os.environ, "AMQP_URL": "amqp://guest:guest@127.0.0.1:1/%2F"}
    result = _hub(config_file, "topology", "apply", env=env)
    assert result.returncode == 3
    assert "cannot connect to RabbitMQ" in result.stderr and "rabbitmq-server -detached" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[broker]\nprefetch = "lots"\n')
    result = _hub(bad, "topology", "apply")
    assert result.returncode == 2
    assert "broker.prefetch" in result.stderr and "Traceback" not in result.stderr


def test_certs_check_lists_every_certificate(config_file: Path) -> None:
    result = _hub(config_file, "certs", "check")
    assert result.returncode == 0, result.stderr
    for where in ("adapters.alpha.signing_cert", "authorities[azr:000100].certificate", "simulator.trusted_signers[0]"):
        assert where in result.stdout


def test_simulator_command_takes_config_and_fault_flags(config_file: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "hub", "--config", str(config_file), "simulator", "--port",
                             str(port), "--fault-rate", "9030:1.0:sendMessage"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stats_url = f"http://127.0.0.1:{port}/_sim/stats"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(stats_url, timeout=10) as resp:
                    assert json.loads(resp.read())["total"] == 0
                    break
            except OSError:
                assert proc.poll() is None, f"simulator exited with {proc.returncode}"
                assert time.monotonic() < deadline, "simulator did not start"
                time.sleep(0.2)
        # the flag has its effect: every sendMessage is answered 9030, other operations are not touched
        client = XtaClient(XtaEndpoint(f"http://127.0.0.1:{port}/xta", timeout=30))
        author = Party("alp:000001")  # the config's adapter account
        message_id = client.create_message_id(author)
        with pytest.raises(XtaFault) as info:
            client.send_message(_metadata(message_id, author), generic_container(build_content_container(
                Content(ContentPart(b"<antrag/>", "application/xml", "antrag.xml")))))
        client.close()
        assert info.value.code == "9030" and info.value.transient
        with urllib.request.urlopen(stats_url, timeout=10) as resp:
            stats = json.loads(resp.read())
        assert stats["total"] == 0 and stats["faults"] == {"9030": 1}
    finally:
        proc.terminate()
        assert proc.wait(60) == 0


def _metadata(message_id: str, author: Party) -> MessageMetaData:
    return MessageMetaData(
        author=author, reader=Party("azr:000100"), message_id=message_id, service="xauslaender1211OZGPORTALABH",
        business_scenario=BusinessScenario("XAUSLAENDER_DATA"),
        message_type=MessageType("OZG.Antrag.130101", "urn:x", "1", "urn:y"))
