"""The XTA client's HTTP (transport.xta.httpio): keep-alive reuse, stale connections, the no-resend
rule, mutual TLS through the pool, the answer size limit, redirects and proxy selection.

A raw loopback server counts accepted connections and requests, and per request follows a script:
answer and keep the connection, answer and then close it (a server's idle keep-alive timeout), or
read the whole request and close without answering (a request that reached the server, answer lost).
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from xta_testdata import AUTHOR, content, metadata

from hub.errors import EndpointUnavailable, MalformedAnswer
from tests.support.testtls import TlsPki, make_tls_pki
from transport.xta.client import XtaClient, XtaEndpoint
from transport.xta.container import build_content_container, generic_container
from transport.xta.httpio import PooledHttp, environment_proxy
from transport.xta.tls import TlsSettings, server_context

_ENVELOPE = (b'<?xml version="1.0" encoding="utf-8"?><e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope">'
             b"<e:Body>%s</e:Body></e:Envelope>")
_MESSAGE_ID = b'<wsa:MessageID xmlns:wsa="http://www.w3.org/2005/08/addressing">urn:de:xta:messageid:t:1</wsa:MessageID>'
DEADLINE = 30.0


class ScriptedServer:
    """Loopback HTTP/1.1 server; ``script`` holds one action per request ("answer" when empty):
    "answer", "answer_close" (answer, then close the connection), "drop" (close, no answer),
    or ("raw", bytes) to send these bytes as the whole answer and close."""

    def __init__(self, context: ssl.SSLContext | None = None, bind: str = "127.0.0.1") -> None:
        self.script: list[object] = []
        self.accepted = 0
        self.requests: list[bytes] = []
        self.closed = threading.Event()  # set each time the server closes a connection itself
        self._lock = threading.Lock()
        self._context = context
        self._sock = socket.create_server((bind, 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.port = self._sock.getsockname()[1]
        scheme = "https" if context is not None else "http"
        host = "localhost" if context is not None and bind == "127.0.0.1" else bind
        self.url = f"{scheme}://{host}:{self.port}/xta"
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            worker = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            worker.start()
            self._threads.append(worker)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(DEADLINE)
        try:
            if self._context is not None:
                conn = self._context.wrap_socket(conn, server_side=True)
            reader = conn.makefile("rb")
            while not self._stop.is_set():
                request = self._read_request(reader)
                if request is None:
                    return
                with self._lock:
                    self.requests.append(request)
                    action = self.script.pop(0) if self.script else "answer"
                if action == "drop":
                    return
                if isinstance(action, tuple):
                    conn.sendall(action[1])
                    return
                body = _ENVELOPE % (_MESSAGE_ID if b"CreateMessageID" in request else b"")
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml; charset=utf-8\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                if action == "answer_close":
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()
            self.closed.set()

    @staticmethod
    def _read_request(reader: object) -> bytes | None:
        length = 0
        while True:
            line = reader.readline()  # type: ignore[attr-defined]
            if not line:
                return None
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return bytes(reader.read(length))  # type: ignore[attr-defined]

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    running = ScriptedServer()
    yield running
    running.stop()


def _send(client: XtaClient, message_id: str) -> None:
    client.send_message(metadata(message_id), generic_container(build_content_container(content(2048))))


def test_connections_are_reused_across_calls(server) -> None:
    with XtaClient(XtaEndpoint(server.url, timeout=10)) as client:
        for _ in range(10):
            assert client.create_message_id(AUTHOR) == "urn:de:xta:messageid:t:1"
        _send(client, "urn:de:xta:messageid:t:1")
    assert (server.accepted, len(server.requests)) == (1, 11)


def test_threads_share_a_bounded_pool(server) -> None:
    with XtaClient(XtaEndpoint(server.url, timeout=10, pool_size=3)) as client, ThreadPoolExecutor(3) as pool:
        ids = list(pool.map(lambda _: client.create_message_id(AUTHOR), range(60)))
    assert len(ids) == 60 and len(server.requests) == 60
    assert 1 <= server.accepted <= 3  # at most one connection per concurrent caller, all kept alive


def test_a_connection_the_server_closed_between_calls_is_replaced(server) -> None:
    server.script = ["answer_close", "answer_close"]
    with XtaClient(XtaEndpoint(server.url, timeout=10)) as client:
        assert client.create_message_id(AUTHOR)
        assert server.closed.wait(DEADLINE)  # the pooled connection is now dead (server's idle timeout)
        server.closed.clear()
        _send(client, "urn:de:xta:messageid:t:1")  # nothing was sent on the dead one: a fresh connection
        assert server.closed.wait(DEADLINE)
        assert client.create_message_id(AUTHOR)
    assert (server.accepted, len(server.requests)) == (3, 3)  # each request sent exactly once


@pytest.mark.parametrize("reused", [False, True])
def test_a_request_that_reached_the_server_is_never_resent(server, reused) -> None:
    """The server read the whole sendMessage and closed without answering: it may have accepted it,
    so the client reports EndpointUnavailable and does not send it again (on a fresh or a reused
    connection alike); the worker's retry ladder decides."""
    server.script = ["answer", "drop"] if reused else ["drop"]
    with XtaClient(XtaEndpoint(server.url, timeout=10)) as client:
        if reused:
            assert client.create_message_id(AUTHOR)
        with pytest.raises(EndpointUnavailable, match="connection failed") as info:
            _send(client, "urn:de:xta:messageid:t:1")
        assert info.value.transient
        sends = [r for r in server.requests if b"MessageMetaData" in r]
        assert len(sends) == 1
        assert client.create_message_id(AUTHOR)  # the client recovers on a new connection
    assert server.accepted == 2


def test_answer_size_limit_and_truncated_answers(server) -> None:
    http = PooledHttp(server.url, timeout=10, pool_size=1, user_agent="t", limit=100)
    with pytest.raises(MalformedAnswer, match="exceeds 100"):
        http.post("createMessageId", b"<x/>", 4, "application/soap+xml")
    huge_chunked = (b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + b"%x\r\n%s\r\n" % (150, b"a" * 150) + b"0\r\n\r\n")
    server.script = [("raw", huge_chunked)]
    with pytest.raises(MalformedAnswer, match="exceeds 100 bytes"):
        http.post("createMessageId", b"<x/>", 4, "application/soap+xml")
    server.script = [("raw", b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nContent-Length: 90\r\n\r\n<e:")]
    with pytest.raises(EndpointUnavailable, match="connection failed"):
        http.post("createMessageId", b"<x/>", 4, "application/soap+xml")
    http.close()


def test_redirects_are_not_followed(server) -> None:
    elsewhere = ScriptedServer()
    try:
        server.script = [("raw", f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {elsewhere.url}\r\n"
                                 "Content-Length: 0\r\n\r\n".encode())]
        with XtaClient(XtaEndpoint(server.url, timeout=10)) as client, pytest.raises(MalformedAnswer, match="307"):
            client.create_message_id(AUTHOR)
        assert elsewhere.requests == []
    finally:
        elsewhere.stop()


@pytest.fixture(scope="module")
def tls_pki(tmp_path_factory) -> TlsPki:
    return make_tls_pki(tmp_path_factory.mktemp("tls"))


def test_mutual_tls_through_the_pool(tls_pki) -> None:
    context = server_context(tls_pki.server_cert, tls_pki.server_key, client_ca=tls_pki.ca_cert,
                             require_client_cert=True)
    https = ScriptedServer(context)
    try:
        with pytest.raises(EndpointUnavailable, match="TLS handshake failed") as info:
            XtaClient(XtaEndpoint(https.url, timeout=10, tls=TlsSettings(ca_bundle=tls_pki.ca_cert))
                      ).create_message_id(AUTHOR)
        assert info.value.reason == "tls_handshake_failed" and https.requests == []
        settings = TlsSettings(tls_pki.client_cert, tls_pki.client_key, ca_bundle=tls_pki.ca_cert)
        before = https.accepted
        with XtaClient(XtaEndpoint(https.url, timeout=10, tls=settings)) as client:
            for _ in range(5):
                assert client.create_message_id(AUTHOR)
        assert https.accepted - before == 1 and len(https.requests) == 5  # one handshake, kept alive
    finally:
        https.stop()
    elsewhere = ScriptedServer(context, bind="127.0.0.2")  # an address the server certificate does not name
    try:
        with pytest.raises(EndpointUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            XtaClient(XtaEndpoint(elsewhere.url, timeout=10, tls=settings)).create_message_id(AUTHOR)
        assert elsewhere.requests == []
    finally:
        elsewhere.stop()


def test_proxy_is_taken_from_the_environment_once() -> None:
    env = {"https_proxy": "http://proxy.test:3128", "HTTP_PROXY": "http://plain.test:8080",
           "no_proxy": "localhost,.internal.test"}
    assert environment_proxy("https://xta.example.test/xta", env) == "http://proxy.test:3128"
    assert environment_proxy("http://xta.example.test/xta", env) == "http://plain.test:8080"
    assert environment_proxy("https://localhost:8443/xta", env) is None
    assert environment_proxy("https://xta.internal.test/xta", env) is None
    assert environment_proxy("https://xta.example.test/xta", {"ALL_PROXY": "http://all.test:1"}) == "http://all.test:1"
    assert environment_proxy("https://xta.example.test/xta", {"all_proxy": "http://a:1", "no_proxy": "*"}) is None
    assert environment_proxy("https://xta.example.test/xta", {}) is None
    cidr = {"https_proxy": "http://proxy.test:3128", "no_proxy": "10.0.0.0/8, fd00::/8"}
    assert environment_proxy("https://10.1.2.3/xta", cidr) is None
    assert environment_proxy("https://[fd00::5]:8443/xta", cidr) is None
    assert environment_proxy("https://11.1.2.3/xta", cidr) == "http://proxy.test:3128"



def test_a_bundle_named_by_the_environment_is_trusted_alone(tls_pki) -> None:
    """REQUESTS_CA_BUNDLE pointing at a private CA must not add the public CAs (as with requests)."""
    from transport.xta.tls import client_context

    named = client_context(TlsSettings(), {"REQUESTS_CA_BUNDLE": str(tls_pki.ca_cert)})
    assert len(named.get_ca_certs()) == 1
    default = client_context(TlsSettings(), {})
    assert len(default.get_ca_certs()) > 1  # the system store and certifi's bundle
