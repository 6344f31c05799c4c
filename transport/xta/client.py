"""XTA 2.1.1 client: ManagementPort and SendXtaPort (MsgBoxPort in ``transport.xta.msgbox``).

The contract comes from a WSDL loaded once with zeep from local files only (the project's own subset
by default, or any local XTA 2.1.1 WSDL such as the official one): zeep tells which operations exist
and their wsa:Action/soapAction. Envelopes are rendered by ``transport.xta.soap``/``wire``/
``container`` (validated against the official XSDs in the conformance tests) because zeep cannot send
MTOM (python-zeep #599) and would hold a 40 MB container as base64 several times over. The seam is
``XtaClient.call``: it posts either a plain SOAP 1.2 envelope or, when the body refers to binary
parts, an MTOM ``multipart/related`` body streamed from the parts (``transport.xta.mtom``). Answers
(plain or MTOM) are parsed with the hub's hardened parser, the one XML entry point.

HTTP goes through one bounded urllib3 keep-alive pool per client (``transport.xta.httpio``), so the
worker's threads share one client and its connections; a pooled connection the server has closed is
replaced before anything is sent, and a request that may have reached the server is never re-sent
(the rule is in ``httpio``). Mutual TLS is configured per endpoint (``XtaEndpoint.tls``), in one
``ssl.SSLContext`` built at start-up. Every third-party error is translated (classes in
``faults.TRANSPORT_CONDITIONS``):

    connection refused/reset, TLS failure, timeout, broken stream -> EndpointUnavailable (transient)
    HTTP 5xx, 408, 429 without a SOAP fault                     -> EndpointUnavailable (transient)
    SOAP fault with an xta exception                            -> XtaFault(code=...) (faults.FAULT_TABLE)
    any other answer that is not what XTA promises: not SOAP 1.2 -> MalformedAnswer (transient)
      (HTML, text, empty, SOAP 1.1), an empty or unexpected body,
      a missing field, a truncated MTOM package, a bare SOAP fault

A nonsensical answer is the endpoint's fault, not the message's: it is retried and counted by the
circuit breaker (pitfall 11). Answers are read in ``transport.xta.answers`` (``parse_reply``,
``Reply``, ``malformed_answers``).

Payloads are never logged.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlparse

import requests
import zeep
from cryptography import x509
from lxml import etree
from zeep.transports import Transport

from hub.errors import (
    ConfigError,
    EndpointUnavailable,
    HubError,
    MalformedAnswer,
    XtaFault,
)
from schemas.xta import WSDL_PATH
from transport.xta import mtom, wire
from transport.xta.answers import MAX_RESPONSE_BYTES, Reply, malformed_answers, parse_reply
from transport.xta.container import GENERIC_CONTENT_CONTAINER, OutgoingContainer
from transport.xta.faults import PERMISSION_DENIED
from transport.xta.httpio import HttpAnswer, PooledHttp, environment_proxy, tls_reason
from transport.xta.metadata import LookupResult, MessageMetaData, Party, TransportReport
from transport.xta.mmd import MESSAGE_METADATA, parse_message_metadata
from transport.xta.ns import BINDINGS, SOAP12_CONTENT_TYPE, XTA
from transport.xta.soap import (
    addressing_headers,
    build_envelope,
    render_author_header,
    render_message_metadata,
    reply_to_anonymous_header,
)
from transport.xta.tls import TlsSettings, client_context, mount_tls

log = logging.getLogger(__name__)

MANAGEMENT_BINDING = f"{{{XTA}}}managementHttpsBinding"
SEND_BINDING = f"{{{XTA}}}sendXTAHttpsBinding"
MSGBOX_BINDING = f"{{{XTA}}}msgBoxHttpsBinding"
USER_AGENT = "xoev-hub-xta/0.2"
_JOIN_BELOW = 1024 * 1024


@dataclass(frozen=True)
class XtaEndpoint:
    """Where one XTA server listens; ``timeout`` (seconds) applies to connect and to each read;
    ``tls`` configures mutual TLS (client certificate, CA bundle) for https URLs; ``pool_size`` is
    how many keep-alive connections are kept (the adapter's concurrency: more callers at once get
    short-lived extra connections)."""

    url: str
    timeout: float = 30.0
    tls: TlsSettings | None = None
    pool_size: int = 10


@dataclass(frozen=True)
class SyncAnswer:
    """sendMessageSync's answer: the reply's MessageMetaData and its GenericContentContainer."""

    metadata: MessageMetaData | None
    container: etree._Element
    parts: Mapping[str, memoryview]


class _LocalTransport(Transport):
    """zeep transport that loads WSDL/XSD from local files only (never the network)."""

    def __init__(self, timeout: float) -> None:
        # zeep.Transport.__init__ would create a shared session: the client keeps its own per thread.
        self.cache = None
        self._close_session = False  # zeep.Transport.__del__ reads it
        self.load_timeout = timeout
        self.operation_timeout = timeout
        self.logger = log
        self.session = None

    def load(self, url: str) -> bytes:
        parsed = urlparse(url)
        if parsed.scheme not in ("", "file"):
            raise ConfigError(f"refusing to load remote schema {url}: XTA schemas are local files only")
        path = Path(parsed.path if parsed.scheme == "file" else url).expanduser()
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read XTA schema file {path}: {exc.strerror}") from exc

    def get(self, address: str, params: Any, headers: Any) -> requests.Response:
        raise ConfigError("XTA transport does not issue GET requests")

    def post(self, address: str, message: bytes, headers: dict[str, str]) -> requests.Response:
        raise ConfigError("XTA requests go through XtaClient.call")


def default_session(url: str, tls: TlsSettings | None = None, context: Any = None) -> requests.Session:
    """A keep-alive ``requests`` session for ``url`` with proxy/CA settings read from the environment once.

    Not the client's own HTTP any more (that is ``httpio.PooledHttp``): kept for bare POSTs in the
    benchmarks and as the ``session_factory`` seam. ``context`` is a prepared client SSLContext.
    """
    session = requests.Session()
    env = session.merge_environment_settings(url, {}, None, None, None)
    session.trust_env = False
    session.proxies.update(env.get("proxies") or {})
    session.verify = env.get("verify", True)
    session.headers["User-Agent"] = USER_AGENT
    if context is not None and tls is not None:
        mount_tls(session, context, tls)
    return session


def _operations(client: zeep.Client) -> dict[str, tuple[str, str]]:
    """operation -> (wsa:Action, soapAction) for every operation the WSDL's XTA bindings declare."""
    found: dict[str, tuple[str, str]] = {}
    for binding_name in BINDINGS:
        binding = client.wsdl.bindings.get(f"{{{XTA}}}{binding_name}")
        if binding is None:
            continue
        for name in binding._operations:
            op = binding.get(name)
            found[name] = (op.abstract.wsa_action or op.soapaction, op.soapaction)
    return found


class XtaClient:
    """Thread-safe XTA 2.1.1 client for one endpoint (build once, call from many threads)."""

    def __init__(self, endpoint: XtaEndpoint, *, wsdl: Path | str | None = None,
                 session_factory: Callable[[], requests.Session] | None = None) -> None:
        """``wsdl`` may point at another local XTA 2.1.1 WSDL (e.g. the official one);
        ``session_factory``, if given, sends through a ``requests.Session`` per thread that it builds
        instead of the pool (the seam for capture tools and the before/after benchmark)."""
        scheme = urlparse(endpoint.url).scheme
        if scheme not in ("http", "https"):
            raise ConfigError(f"XTA endpoint URL must be http(s), got {endpoint.url!r}")
        if endpoint.tls is not None and endpoint.tls.mutual and scheme != "https":
            raise ConfigError(f"a TLS client certificate needs an https:// endpoint, got {endpoint.url!r}")
        if endpoint.pool_size < 1:
            raise ConfigError(f"XTA endpoint pool_size must be at least 1, got {endpoint.pool_size}")
        self.endpoint = endpoint
        context = client_context(endpoint.tls or TlsSettings()) if scheme == "https" else None
        self._http: PooledHttp | None = None
        if session_factory is None:
            self._http = PooledHttp(endpoint.url, timeout=endpoint.timeout, pool_size=endpoint.pool_size,
                                    user_agent=USER_AGENT, ssl_context=context, limit=MAX_RESPONSE_BYTES,
                                    proxy=environment_proxy(endpoint.url))
        self._session_factory = session_factory or functools.partial(default_session, endpoint.url,
                                                                     endpoint.tls, context)
        self._local = threading.local()
        self._sessions: weakref.WeakSet[requests.Session] = weakref.WeakSet()
        self._sessions_lock = threading.Lock()
        settings = zeep.Settings(strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=True,
                                 xml_huge_tree=False)
        try:
            self._zeep = zeep.Client(str(wsdl or WSDL_PATH), transport=_LocalTransport(endpoint.timeout),
                                     settings=settings)
        except HubError:
            raise
        except Exception as exc:  # zeep raises many kinds while loading a broken WSDL
            raise ConfigError(f"cannot load XTA WSDL {wsdl or WSDL_PATH}: {exc}") from exc
        self.operations = _operations(self._zeep)
        for required in ("checkAccountActive", "createMessageId", "sendMessage"):
            if required not in self.operations:
                raise ConfigError(f"XTA WSDL {wsdl or WSDL_PATH} does not declare {required}")

    # ------------------------------------------------------------------ management port

    def check_account_active(self, author: Party) -> bool:
        """True if the server knows ``author``'s account and it is active, False on PermissionDenied.

        Other faults (e.g. a technical problem) raise, so an outage is not mistaken for a lock-out.
        """
        try:
            reply = self.call("checkAccountActive", [render_author_header(author)])
        except XtaFault as fault:
            if fault.exception_type == PERMISSION_DENIED:
                return False
            raise
        reply.empty("checkAccountActive")
        return True

    def create_message_id(self, author: Party) -> str:
        """Ask the server for a new XTA MessageID (keep it across retries of the same message)."""
        reply = self.call("createMessageId", [render_author_header(author)])
        with malformed_answers("createMessageId"):
            return wire.parse_message_id(reply.body, "createMessageId answer wsa:MessageID")

    def lookup_service(self, author: Party, queries: Sequence[tuple[Party, str]]) -> list[LookupResult]:
        """Is each (reader, service) offered, and with which parameters (e.g. encryption certificate)?"""
        reply = self.call("lookupService", [render_author_header(author)], [wire.render_lookup_request(queries)])
        with malformed_answers("lookupService"):
            results = wire.parse_lookup_response(reply.only(wire.LOOKUP_SERVICE_RESPONSE, "lookupService"))
        if len(results) > len(queries):
            raise MalformedAnswer(f"XTA lookupService: {len(results)} results for {len(queries)} queries")
        return results

    def get_transport_report(self, author: Party, message_id: str) -> TransportReport:
        """The transport report of a sent message (status 0 open, 1 green, 2 yellow, 3 red)."""
        reply = self.call("getTransportReport", [render_author_header(author)], [wire.render_message_id(message_id)])
        with malformed_answers("getTransportReport"):
            return wire.parse_transport_report(reply.only(wire.TRANSPORT_REPORT, "getTransportReport"))

    def cancel_message(self, author: Party, message_id: str) -> None:
        """Cancel a transport order not yet executed (needs DeliveryAttributes/NotBefore in the future)."""
        self.call("cancelMessage", [render_author_header(author)], [wire.render_message_id(message_id)]).empty(
            "cancelMessage")

    # ------------------------------------------------------------------ send port

    def send_message(self, metadata: MessageMetaData, container: etree._Element | OutgoingContainer, *,
                     certificates: Sequence[x509.Certificate] = ()) -> None:
        """Deliver one xta:GenericContentContainer (plain or encrypted) with its MessageMetaData.

        An ``OutgoingContainer`` with binary parts is sent as MTOM; a bare element inline. The caller's
        element is left untouched. ``certificates`` go into an osci:X509TokenContainer header.
        """
        # an answer with a body is nonsense: retried, and a re-send of an accepted message gets 9024
        self.call("sendMessage", *self._send_request(metadata, container, certificates)).empty("sendMessage")

    def send_message_sync(self, metadata: MessageMetaData, container: etree._Element | OutgoingContainer, *,
                          certificates: Sequence[x509.Certificate] = ()) -> SyncAnswer:
        """sendMessageSync: deliver and receive the reader's answer in the same call."""
        reply = self.call("sendMessageSync", *self._send_request(metadata, container, certificates))
        answer = reply.only(GENERIC_CONTENT_CONTAINER, "sendMessageSync")
        mmd_el = reply.header.find(MESSAGE_METADATA) if reply.header is not None else None
        with malformed_answers("sendMessageSync"):
            return SyncAnswer(parse_message_metadata(mmd_el) if mmd_el is not None else None, answer, reply.parts)

    def _send_request(self, metadata: MessageMetaData, container: etree._Element | OutgoingContainer,
                      certificates: Sequence[x509.Certificate]) -> tuple[list[etree._Element], list[etree._Element],
                                                                         mtom.Attachments | None]:
        outgoing: OutgoingContainer | None
        if isinstance(container, OutgoingContainer):
            outgoing, element = container, container.element
        else:
            outgoing, element = None, container
        if element.tag != GENERIC_CONTENT_CONTAINER:
            raise ValueError("send_message expects an xta:GenericContentContainer element")
        headers = [render_message_metadata(metadata)]
        if certificates:
            headers.append(wire.render_x509_token_container(certificates))
        attachments = outgoing.attachments if outgoing is not None and outgoing.mtom else None
        return headers, [element], attachments

    # ------------------------------------------------------------------ lifecycle

    @property
    def session(self) -> requests.Session:
        """This thread's ``requests`` session (created on first use; used by calls only with a
        ``session_factory``)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._session_factory()
            self._local.session = session
            with self._sessions_lock:
                self._sessions.add(session)
        return session

    def close(self) -> None:
        """Close the idle HTTP connections (the client stays usable: connections reopen lazily)."""
        if self._http is not None:
            self._http.close()
        with self._sessions_lock:
            sessions = list(self._sessions)
            self._sessions = weakref.WeakSet()
        self._local = threading.local()
        for session in sessions:
            session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the seam

    def call(self, operation: str, headers: list[etree._Element], body: Sequence[etree._Element] = (),
             attachments: mtom.Attachments | None = None) -> Reply:
        """POST one request (MTOM if ``attachments`` has parts) and return the parsed answer.

        Header and body elements are serialised as they are (not moved or changed).
        """
        try:
            action, _soap_action = self.operations[operation]
        except KeyError:
            raise ConfigError(f"the XTA WSDL in use does not declare operation {operation}") from None
        header_els = [*headers, *addressing_headers(action, to=self.endpoint.url), reply_to_anonymous_header()]
        envelope = _serialize_envelope(header_els, body)
        data: bytes | mtom.MultipartBody
        if attachments is not None and len(attachments):
            content_type, data = mtom.package(envelope, attachments, action)
            if len(data) <= _JOIN_BELOW:  # small: one buffer, one send (streaming pays off for large parts)
                data = data.to_bytes()
        else:
            content_type, data = f'{SOAP12_CONTENT_TYPE}; charset=utf-8; action="{action}"', envelope
        if self._http is not None:
            answer = self._http.post(operation, data, len(data), content_type)
            return parse_reply(operation, answer.status, answer.content_type, answer.content)
        return self._call_session(operation, data, content_type)

    def _call_session(self, operation: str, data: bytes | mtom.MultipartBody, content_type: str) -> Reply:
        """The ``session_factory`` path: the same request and fault mapping through ``requests``."""
        timeout = self.endpoint.timeout
        try:
            # requests streams whatever buffers the body yields; its stubs accept bytes only
            response = self.session.post(self.endpoint.url, data=data,  # type: ignore[arg-type]
                                         headers={"Content-Type": content_type},
                                         timeout=(timeout, timeout), stream=True)
            with response:
                content = _read_limited(response, MAX_RESPONSE_BYTES, operation)
                answer = HttpAnswer(response.status_code, response.headers.get("Content-Type", ""), content)
        except requests.exceptions.Timeout as exc:
            raise EndpointUnavailable(f"XTA {operation}: timeout after {timeout}s") from exc
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            if isinstance(exc, requests.exceptions.SSLError):  # refused/unverifiable certificate, or TLS broken
                raise EndpointUnavailable(f"XTA {operation}: TLS handshake failed ({tls_reason(exc)})",
                                          reason="tls_handshake_failed") from exc
            raise EndpointUnavailable(f"XTA {operation}: connection failed ({type(exc).__name__})") from exc
        except requests.exceptions.RequestException as exc:  # redirect loop, undecodable body, bad header
            raise MalformedAnswer(f"XTA {operation}: HTTP request failed ({type(exc).__name__})") from exc
        return parse_reply(operation, answer.status, answer.content_type, answer.content)


def _read_limited(response: requests.Response, limit: int, operation: str) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise MalformedAnswer(f"XTA {operation}: answer of {declared} bytes exceeds {limit}")
    buffer = bytearray()
    for chunk in response.iter_content(1 << 20):
        buffer += chunk
        if len(buffer) > limit:
            raise MalformedAnswer(f"XTA {operation}: answer exceeds {limit} bytes")
    return bytes(buffer)


def _serialize_envelope(headers: list[etree._Element], body: Sequence[etree._Element]) -> bytes:
    """Serialise the caller's elements without copying them: they are borrowed into a fresh envelope
    and put back where they were afterwards (a deep copy of a 40 MB container would double it). So
    one element must not be sent by two threads at once (the adapter builds one per delivery)."""
    placed: list[tuple[etree._Element, etree._Element | None, int]] = []
    for el in [*headers, *body]:
        parent = el.getparent()
        placed.append((el, parent, parent.index(el) if parent is not None else -1))
    envelope = build_envelope(list(headers), list(body))
    try:
        return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
    finally:
        for el, parent, index in placed:
            borrowed_by = el.getparent()
            if borrowed_by is not None:
                borrowed_by.remove(el)
            if parent is not None:
                parent.insert(index, el)
