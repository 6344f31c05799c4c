from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from lxml import etree
from xta_testdata import AUTHOR, READER, content, metadata

from hub.errors import XtaFault
from transport.content import Content, ContentPart
from transport.security.demopki import make_test_pki
from transport.security.encryption import encrypt_xml
from transport.security.keys import (
    load_certificate,
    load_private_key,
    load_signing_identity,
)
from transport.security.signature import sign_content
from transport.xta.client import XtaClient, XtaEndpoint
from transport.xta.container import build_content_container, generic_container
from transport.xta.ns import SOAP12, WSA, XTA
from transport.xta.simulator import SimulatorConfig, serve
from transport.xta.simulator.store import IN_FLIGHT, UNKNOWN, USED, MessageIdRegistry

SOAP_HEADERS = {"Content-Type": "application/soap+xml; charset=utf-8"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    return make_test_pki(tmp_path_factory.mktemp("pki"), ["portal", "reader", "intruder"])


def _fault(response: requests.Response) -> tuple[str, str, str]:
    """(SOAP code value, exception local name, errorCode) of a fault answer."""
    env = etree.fromstring(response.content)
    fault = env.find(f"{{{SOAP12}}}Body/{{{SOAP12}}}Fault")
    exc = fault.find(f"{{{SOAP12}}}Detail")[0]
    return (fault.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Value"), etree.QName(exc).localname,
            exc.findtext(f"{{{XTA}}}errorCode/code"))


def _envelope(action: str | None, body: str = "", message_id: str | None = "urn:uuid:1") -> bytes:
    headers = (f"<wsa:Action>{action}</wsa:Action>" if action else "") + (
        f"<wsa:MessageID>{message_id}</wsa:MessageID>" if message_id else "")
    return (f'<e:Envelope xmlns:e="{SOAP12}" xmlns:wsa="{WSA}"><e:Header>{headers}</e:Header>'
            f"<e:Body>{body}</e:Body></e:Envelope>").encode()


@pytest.mark.parametrize("data, status, expected", [
    (b"not xml at all", 400, ("soap-env:Sender", "ParameterIsNotValidException", "9000")),
    (b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', 400, ("soap-env:Sender", "ParameterIsNotValidException", "9000")),
    (b"<Envelope/>", 400, ("soap-env:Sender", "ParameterIsNotValidException", "9000")),
    (_envelope(None), 400, ("soap-env:Sender", "ParameterIsNotValidException", "9020")),
    (_envelope("http://www.xta.de/XTA/CheckAccountActive", message_id=None), 400,
     ("soap-env:Sender", "ParameterIsNotValidException", "9020")),
    (_envelope("http://www.xta.de/XTA/GetStatistics"), 400,
     ("soap-env:Sender", "ParameterIsNotValidException", "9000")),
    (_envelope("http://www.xta.de/XTA/GetTransportReport"), 400,
     ("soap-env:Sender", "PermissionDeniedException", "9012")),
    (_envelope("http://www.xta.de/XTA/SendMessage"), 400, ("soap-env:Sender", "ParameterIsNotValidException", "9020")),
    (_envelope("http://www.xta.de/XTA/CreateMessageID", "<x/>"), 400,
     ("soap-env:Sender", "ParameterIsNotValidException", "9022")),
])
def test_malformed_requests_get_sender_faults(sim, data, status, expected) -> None:
    response = requests.post(sim.url, data=data, headers=SOAP_HEADERS, timeout=5)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/soap+xml")
    assert _fault(response) == expected


def test_unknown_action_carries_wsa_subcode(sim) -> None:
    response = requests.post(sim.url, data=_envelope("urn:nope"), headers=SOAP_HEADERS, timeout=5)
    env = etree.fromstring(response.content)
    value = env.find(f".//{{{SOAP12}}}Subcode/{{{SOAP12}}}Value")
    prefix, local = value.text.split(":")
    assert (value.nsmap[prefix], local) == (WSA, "ActionNotSupported")
    assert env.findtext(f"{{{SOAP12}}}Header/{{{WSA}}}RelatesTo") == "urn:uuid:1"


def test_soap11_gets_version_mismatch(sim) -> None:
    soap11 = b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>'
    response = requests.post(sim.url, data=soap11, headers={"Content-Type": "text/xml"}, timeout=5)
    assert response.status_code == 500
    assert b"soap-env:VersionMismatch" in response.content


def test_inspection_api(sim, client) -> None:
    message_id = client.create_message_id(AUTHOR)
    sent = content(attachments=2)
    client.send_message(metadata(message_id), generic_container(build_content_container(sent)))
    base = sim.base_url
    listing = requests.get(f"{base}/_sim/messages", params={"reader": READER.identifier}, timeout=5).json()
    assert [m["message_id"] for m in listing] == [message_id]
    entry = listing[0]
    assert entry["author"] == AUTHOR.identifier and entry["message_type"] == "OZG.Antrag.130101"
    assert entry["verified"] is False and entry["encrypted"] is False
    assert [p["filename"] for p in entry["parts"]] == ["antrag.xml", "anlage-0.pdf", "anlage-1.pdf"]
    assert entry["parts"][0]["sha256"] == sent.message.sha256
    assert "data" not in json.dumps(listing)
    assert requests.get(f"{base}/_sim/messages", params={"reader": "azr:999999"}, timeout=5).json() == []
    part = requests.get(f"{base}/_sim/messages/{message_id}/parts/1", timeout=5)
    assert part.content == sent.attachments[0].data and part.headers["Content-Type"] == "application/pdf"
    assert requests.get(f"{base}/_sim/messages/{message_id}/parts/9", timeout=5).status_code == 404
    assert requests.get(f"{base}/_sim/messages/{message_id}", timeout=5).json()["reader"] == READER.identifier
    stats = requests.get(f"{base}/_sim/stats", timeout=5).json()
    assert stats["readers"] == {READER.identifier: 1} and stats["calls"]["sendMessage"] == 1
    assert requests.post(f"{base}/_sim/reset", timeout=5).status_code == 204
    assert requests.get(f"{base}/_sim/stats", timeout=5).json()["total"] == 0
    assert requests.get(f"{base}/_sim/nothing", timeout=5).status_code == 404


def test_injection_over_http(sim, client) -> None:
    answer = requests.post(f"{sim.base_url}/_sim/inject", json={"operation": "createMessageId", "code": "9031"},
                           timeout=5)
    assert answer.status_code == 201
    with pytest.raises(XtaFault) as info:
        client.create_message_id(AUTHOR)
    assert info.value.code == "9031" and info.value.transient
    for spec in ({"nonsense": 1}, {"count": "2"}, {"http_status": 42}, {"code": 9030}):
        bad = requests.post(f"{sim.base_url}/_sim/inject", json=spec, timeout=5)
        assert bad.status_code == 400, spec


def test_store_dir_persists_messages(tmp_path) -> None:
    with serve(SimulatorConfig(store_dir=tmp_path)) as running:
        client = XtaClient(XtaEndpoint(running.url))
        message_id = client.create_message_id(AUTHOR)
        client.send_message(metadata(message_id), generic_container(build_content_container(content())))
    [meta] = list(tmp_path.glob("*/*/message.json"))
    summary = json.loads(meta.read_text())
    assert summary["message_id"] == message_id and summary["reader"] == READER.identifier
    assert (meta.parent / "part-0.bin").read_bytes() == content().message.data


def test_virus_signature_is_9060(sim, client) -> None:
    infected = Content(ContentPart(b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
                                   "text/plain", "eicar.txt"))
    with pytest.raises(XtaFault) as info:
        client.send_message(metadata(client.create_message_id(AUTHOR)),
                            generic_container(build_content_container(infected)))
    assert (info.value.exception_type, info.value.code) == ("MessageVirusDetectionException", "9060")


def _encrypted(sent: Content, cert_path: Path):
    plaintext = etree.tostring(build_content_container(sent))
    return generic_container(encrypt_xml(plaintext, load_certificate(cert_path)))


def test_encrypted_and_signed_content_is_decrypted_and_verified(pki) -> None:
    signer = load_signing_identity(*pki["portal"])
    config = SimulatorConfig(reader_keys={READER.identifier: load_private_key(pki["reader"][0])},
                             trusted_signers=(load_certificate(pki["ca"][1]),))
    sent = content(attachments=1)
    with serve(config) as running:
        client = XtaClient(XtaEndpoint(running.url))
        message_id = client.create_message_id(AUTHOR)
        client.send_message(metadata(message_id), _encrypted(sign_content(sent, signer), pki["reader"][1]))
        stored = running.store.get(message_id)
    assert stored.verified and not stored.encrypted
    assert "portal" in stored.signer
    assert [p.data for p in stored.parts] == [p.data for p in sent.parts]  # signature attachment removed


def test_encrypted_without_reader_key_is_stored_as_received(sim, client, pki) -> None:
    message_id = client.create_message_id(AUTHOR)
    client.send_message(metadata(message_id), _encrypted(content(), pki["reader"][1]))
    stored = sim.store.get(message_id)
    assert stored.encrypted and not stored.verified
    assert stored.parts[0].content_type == "application/xenc+xml"
    assert etree.QName(etree.fromstring(stored.parts[0].data)).localname == "EncryptedData"


@pytest.mark.parametrize("case", ["wrong_reader_key", "unsigned", "untrusted_signer"])
def test_content_security_failures_are_9052(pki, case) -> None:
    reader_key = load_private_key(pki["intruder" if case == "wrong_reader_key" else "reader"][0])
    config = SimulatorConfig(reader_keys={READER.identifier: reader_key},
                             trusted_signers=(load_certificate(pki["portal"][1]),))
    signer = load_signing_identity(*pki["intruder" if case == "untrusted_signer" else "portal"])
    sent = content() if case == "unsigned" else sign_content(content(), signer)
    with serve(config) as running:
        client = XtaClient(XtaEndpoint(running.url))
        message_id = client.create_message_id(AUTHOR)
        with pytest.raises(XtaFault) as info:
            client.send_message(metadata(message_id), _encrypted(sent, pki["reader"][1]))
        assert len(running.store) == 0
    assert (info.value.exception_type, info.value.code) == ("MessageSchemaViolationException", "9052")


def test_registry_lifecycle() -> None:
    registry = MessageIdRegistry("sim")
    message_id = registry.create("alp:1")
    assert registry.reserve(message_id, "alp:2") == UNKNOWN
    assert registry.reserve("urn:x:1", "alp:1") == UNKNOWN
    assert registry.reserve(message_id, "alp:1") is None
    assert registry.reserve(message_id, "alp:1") == IN_FLIGHT  # concurrent second attempt: retry later
    registry.release(message_id)
    assert registry.reserve(message_id, "alp:1") is None
    registry.commit(message_id)
    assert registry.reserve(message_id, "alp:1") == USED
    anonymous = registry.create("")  # createMessageId without Author header: any author may use it
    assert registry.reserve(anonymous, "alp:7") is None


def test_soap_get_is_informational(sim) -> None:
    assert requests.get(sim.url, timeout=5).status_code == 200


def test_oversized_request_is_refused_before_parsing_and_connection_survives() -> None:
    with serve(SimulatorConfig(max_container_bytes=1000)) as running:
        session = requests.Session()
        big = _envelope("http://www.xta.de/XTA/SendMessage", "<x>" + "A" * (3 << 20) + "</x>")  # > 2 x limit + 1 MiB
        response = session.post(running.url, data=big, headers=SOAP_HEADERS, timeout=5)
        assert _fault(response) == ("soap-env:Sender", "ParameterIsNotValidException", "9023")
        chunked = session.post(running.url, data=iter([big[:100], big[100:]]), headers=SOAP_HEADERS, timeout=5)
        assert _fault(chunked)[2] == "9023"
        ok = session.post(running.url, data=_envelope("http://www.xta.de/XTA/CheckAccountActive"),
                          headers=SOAP_HEADERS, timeout=5)
        assert ok.status_code == 200


def test_chunked_request_is_read(sim) -> None:
    body = _envelope("http://www.xta.de/XTA/CheckAccountActive")
    response = requests.post(sim.url, data=iter([body[:50], body[50:]]), headers=SOAP_HEADERS, timeout=5)
    assert response.status_code == 400  # read completely: the fault is about the missing Author (9012)
    assert _fault(response)[2] == "9012"


def test_accepted_sockets_have_tcp_nodelay_and_stop_closes_open_connections() -> None:
    import socket
    import time

    running = serve(SimulatorConfig())
    host, port = running.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(b"GET /_sim/health HTTP/1.1\r\n")  # incomplete: the server thread keeps waiting
        deadline = time.monotonic() + 5
        while not running._server._open and time.monotonic() < deadline:
            time.sleep(0.01)
        open_sockets = list(running._server._open)
        assert open_sockets
        assert all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in open_sockets)
        running.stop()
        assert conn.recv(100) == b""  # closed by stop(), not left hanging
