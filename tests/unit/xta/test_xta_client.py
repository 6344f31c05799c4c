from __future__ import annotations

import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from xta_testdata import AUTHOR, READER, content, metadata

from hub.errors import (
    ConfigError,
    EndpointUnavailable,
    HubError,
    MalformedAnswer,
    XtaFault,
)
from transport.xta.client import XtaClient, XtaEndpoint
from transport.xta.container import build_content_container, generic_container
from transport.xta.faults import TRANSPORT_CONDITIONS
from transport.xta.metadata import Party
from transport.xta.simulator import Exchange, InjectedFault, SimulatorConfig, serve


def _send(client: XtaClient, size: int = 2048, **md_changes: object) -> str:
    message_id = client.create_message_id(AUTHOR)
    client.send_message(metadata(message_id, **md_changes), generic_container(build_content_container(content(size))))
    return message_id


def test_happy_path(sim, client) -> None:
    assert client.check_account_active(AUTHOR) is True
    message_id = _send(client)
    assert message_id.startswith("urn:de:xta:messageid:")
    stored = sim.store.get(message_id)
    assert stored.reader == READER.identifier and stored.author == AUTHOR.identifier
    assert stored.parts[0].data == content().message.data


def test_send_leaves_callers_container_untouched(client) -> None:
    container = generic_container(build_content_container(content()))
    client.send_message(metadata(client.create_message_id(AUTHOR)), container)
    assert container.getparent() is None and len(container) == 1


def test_send_requires_generic_container(client) -> None:
    with pytest.raises(ValueError):
        client.send_message(metadata(), build_content_container(content()))


def test_unknown_account(client) -> None:
    stranger = Party("alp:unknown")
    assert client.check_account_active(stranger) is False
    with pytest.raises(XtaFault) as info:
        client.create_message_id(stranger)
    assert (info.value.exception_type, info.value.code, info.value.transient) == (
        "PermissionDeniedException", "9012", False)


def test_duplicate_message_id_is_9024(client) -> None:
    message_id = _send(client)
    with pytest.raises(XtaFault) as info:
        client.send_message(metadata(message_id), generic_container(build_content_container(content())))
    assert info.value.code == "9024" and not info.value.transient


def test_message_id_not_issued_is_9022(client) -> None:
    with pytest.raises(XtaFault) as info:
        client.send_message(metadata("urn:de:xta:messageid:elsewhere:1"),
                            generic_container(build_content_container(content())))
    assert (info.value.exception_type, info.value.code) == ("ParameterIsNotValidException", "9022")


def test_failed_send_keeps_message_id_usable(sim, client) -> None:
    message_id = client.create_message_id(AUTHOR)
    container = generic_container(build_content_container(content()))
    sim.inject(InjectedFault(operation="sendMessage", code="9030"))
    with pytest.raises(XtaFault) as info:
        client.send_message(metadata(message_id), container)
    assert info.value.transient
    client.send_message(metadata(message_id), container)  # the retry with the same MessageID succeeds


def test_size_limit_is_9023() -> None:
    with serve(SimulatorConfig(max_container_bytes=4096)) as running:
        client = XtaClient(XtaEndpoint(running.url, timeout=5))
        _send(client, size=3900)  # + 109-byte attachment
        with pytest.raises(XtaFault) as info:
            _send(client, size=5000)
        assert info.value.code == "9023"
        client.close()


def test_connection_refused_is_endpoint_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nobody listens there
    client = XtaClient(XtaEndpoint(f"http://127.0.0.1:{port}/xta", timeout=2))
    with pytest.raises(EndpointUnavailable) as info:
        client.create_message_id(AUTHOR)
    assert info.value.transient


def test_http_503_is_endpoint_unavailable(sim, client) -> None:
    sim.inject(InjectedFault(http_status=503))
    with pytest.raises(EndpointUnavailable):
        client.create_message_id(AUTHOR)
    assert client.create_message_id(AUTHOR)  # injection used up


def test_garbage_answer_is_a_transient_malformed_answer(sim, client) -> None:
    sim.inject(InjectedFault(garbage=True))
    with pytest.raises(MalformedAnswer) as info:
        client.create_message_id(AUTHOR)
    assert info.value.transient and info.value.reason == "endpoint_protocol"


@pytest.mark.parametrize("status, ctype, body, error", [
    (500, "text/html", b"<html><body>Internal Server Error</body></html>", EndpointUnavailable),
    (502, "text/html", b"Bad Gateway", EndpointUnavailable),
    (500, "application/soap+xml", b"<notsoap/>", EndpointUnavailable),
    (404, "text/html", b"not found", MalformedAnswer),
    (200, "application/soap+xml", b"<notsoap/>", MalformedAnswer),
    (200, "application/soap+xml",
     b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>', MalformedAnswer),
    (500, "application/soap+xml",
     (b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body><e:Fault><e:Code><e:Value>e:Receiver'
      b'</e:Value></e:Code><e:Reason><e:Text xml:lang="en">down</e:Text></e:Reason></e:Fault></e:Body></e:Envelope>'),
     EndpointUnavailable),
])
def test_non_xta_answers_are_translated(far_side, status, ctype, body, error) -> None:
    url, answers = far_side
    answers.append((status, ctype, body))
    with pytest.raises(error):
        XtaClient(XtaEndpoint(url, timeout=5)).create_message_id(AUTHOR)


def test_latency_option_and_timeout() -> None:
    with serve(SimulatorConfig(latency=0.3)) as running:
        client = XtaClient(XtaEndpoint(running.url, timeout=5))
        started = time.monotonic()
        client.check_account_active(AUTHOR)
        assert time.monotonic() - started >= 0.3
        impatient = XtaClient(XtaEndpoint(running.url, timeout=0.1))
        with pytest.raises(EndpointUnavailable, match="timeout"):
            impatient.create_message_id(AUTHOR)


def test_many_threads_share_one_client(sim, client) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda _: _send(client), range(40)))
    assert len(set(ids)) == 40
    assert len(sim.store) == 40
    client.close()
    assert client.create_message_id(AUTHOR)  # usable again after close


def test_requests_carry_ws_addressing(sim) -> None:
    seen: list[Exchange] = []
    with serve(SimulatorConfig(), observer=seen.append) as running:
        XtaClient(XtaEndpoint(running.url)).check_account_active(AUTHOR)
    request = seen[0].request
    for needle in (b"<wsa:Action>http://www.xta.de/XTA/CheckAccountActive</wsa:Action>",
                   f"<wsa:To>{running.url}</wsa:To>".encode(), b"<wsa:MessageID>urn:uuid:",
                   b"<wsa:Address>http://www.w3.org/2005/08/addressing/anonymous</wsa:Address>"):
        assert needle in request


def test_payload_is_never_logged(sim, client, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    message_id = client.create_message_id(AUTHOR)
    marker = content().message.data
    client.send_message(metadata(message_id), generic_container(build_content_container(content())))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert marker.decode() not in logged and "PGFudHJhZz" not in logged  # raw or base64


def test_session_factory_seam(sim) -> None:
    made = []

    def factory() -> requests.Session:
        made.append(requests.Session())
        return made[-1]

    client = XtaClient(XtaEndpoint(sim.url), session_factory=factory)
    client.check_account_active(AUTHOR)
    client.check_account_active(AUTHOR)
    assert len(made) == 1  # one per thread, reused


def test_remote_schemas_are_refused(tmp_path: Path) -> None:
    wsdl = tmp_path / "remote.wsdl"
    wsdl.write_text('<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" targetNamespace="urn:x">'
                    '<import namespace="urn:y" location="http://example.invalid/x.wsdl"/></definitions>')
    with pytest.raises(ConfigError, match="remote"):
        XtaClient(XtaEndpoint("http://127.0.0.1:1/xta"), wsdl=wsdl)


def test_endpoint_url_must_be_http() -> None:
    with pytest.raises(ConfigError):
        XtaClient(XtaEndpoint("ftp://example/xta"))


_SOAP_FAULT = ('<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body><e:Fault><e:Code><e:Value>e:{code}'
               '</e:Value></e:Code><e:Reason><e:Text xml:lang="en">x</e:Text></e:Reason></e:Fault></e:Body></e:Envelope>')
_CONDITION_ANSWERS = {
    "http_5xx": (503, "text/plain", b"busy"),
    "http_408": (408, "text/plain", b"request timeout"),
    "http_429": (429, "text/plain", b"slow down"),
    "soap_receiver_fault": (500, "application/soap+xml", _SOAP_FAULT.format(code="Receiver").encode()),
    "soap_sender_fault": (400, "application/soap+xml", _SOAP_FAULT.format(code="Sender").encode()),
    "not_soap": (200, "text/html", b"<html>proxy login</html>"),
    "soap11_envelope": (200, "text/xml", (b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
                                          b"<s:Body/></s:Envelope>")),
    "unexpected_body": (200, "application/soap+xml",
                        b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>'),
    "missing_field": (200, "application/soap+xml",
                      (b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body>'
                       b'<a:MessageID xmlns:a="http://www.w3.org/2005/08/addressing"/></e:Body></e:Envelope>')),
    "truncated_mtom": (200, 'multipart/related; type="application/xop+xml"; boundary="b1"',
                       b'--b1\r\nContent-Type: application/xop+xml\r\n\r\n<e:Envelope xmlns:e="http://www.w3.'),
}


@pytest.mark.parametrize("condition", sorted(TRANSPORT_CONDITIONS))
def test_every_transport_condition_is_mapped(far_side, condition) -> None:
    """Each row of faults.TRANSPORT_CONDITIONS, produced for real, raises the class the table names."""
    error_class, transient = TRANSPORT_CONDITIONS[condition]
    url, answers = far_side
    if condition == "connection_error":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}/xta"
        client = XtaClient(XtaEndpoint(url, timeout=2))
    elif condition == "timeout":
        running = serve(SimulatorConfig(latency=0.5))
        url = running.url
        client = XtaClient(XtaEndpoint(url, timeout=0.1))
    else:
        answers.append(_CONDITION_ANSWERS[condition])
        client = XtaClient(XtaEndpoint(url, timeout=5))
    try:
        with pytest.raises(HubError) as info:
            client.create_message_id(AUTHOR)
    finally:
        if condition == "timeout":
            running.stop()
    assert type(info.value) is error_class and info.value.transient is transient
