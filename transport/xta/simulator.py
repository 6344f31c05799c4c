"""A real HTTP XTA 2.1.1 server for tests and demos: ManagementPort checkAccountActive/createMessageId
and SendXtaPort sendMessage over SOAP 1.2 + WS-Addressing, answers and faults valid against the
official schemas.

SOAP requests go to ``POST /xta``; the operation is chosen by wsa:Action (checkAccountActive and
createMessageId have empty bodies), cross-checked with the body element. Anything malformed gets a
SOAP 1.2 Sender fault, never an HTTP 500 traceback. A JSON inspection API lives under ``/_sim/``:

    GET  /_sim/messages[?reader=ID]        summaries (no payload bytes)
    GET  /_sim/messages/<message id>        one summary
    GET  /_sim/messages/<message id>/parts/<n>   raw bytes of part n (0 = message)
    GET  /_sim/stats                        messages per reader, calls, faults by code
    POST /_sim/reset                        forget messages, MessageIDs, counters, injections
    POST /_sim/inject                       {"operation": "sendMessage"|null, "http_status": 503 |
                                             "code": "9030" | "garbage": true, "count": 1}

``serve()`` runs it in a background thread on a threaded werkzeug server with TCP_NODELAY on every
accepted socket (without it, Nagle + delayed ACK add ~40 ms per call).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from lxml import etree
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from hub.errors import ProtocolError, XmlRejected
from transport.xta import faults
from transport.xta.http_server import NoDelayWSGIServer
from transport.xta.ns import (
    ACTION_CHECK_ACCOUNT_ACTIVE,
    ACTION_CREATE_MESSAGE_ID,
    ACTION_SEND_MESSAGE,
    ACTION_WSA_FAULT,
    SOAP11,
    SOAP12_CONTENT_TYPE,
    WSA,
)
from transport.xta.simulator_ops import OperationPolicy, SimulatedFault, XtaOperations, parse_request_xml
from transport.xta.simulator_store import MessageIdRegistry, MessageStore
from transport.xta.soap import addressing_headers, body_children, build_envelope, parse_addressing, split_envelope

log = logging.getLogger(__name__)

SOAP_PATH = "/xta"
_GARBAGE = b"<html>this is not a SOAP answer</oops"
_OPERATIONS = {
    ACTION_CHECK_ACCOUNT_ACTIVE: "checkAccountActive",
    ACTION_CREATE_MESSAGE_ID: "createMessageId",
    ACTION_SEND_MESSAGE: "sendMessage",
}


@dataclass(frozen=True)
class SimulatorConfig:
    """How the simulated XTA server behaves; the defaults accept everything from everyone."""

    reader_keys: Mapping[str, Any] = field(default_factory=dict)  # reader id -> RSA private key
    trusted_signers: Sequence[x509.Certificate] = ()
    accounts: frozenset[str] | None = None  # author ids allowed; None = any
    latency: float = 0.0  # seconds added to every SOAP response
    store_dir: Path | None = None
    max_container_bytes: int = 40 * 1024 * 1024
    server_identity: str = "xta-simulator"


@dataclass
class InjectedFault:
    """A failure the next ``count`` matching SOAP calls get instead of being processed."""

    operation: str | None = None  # "sendMessage" etc.; None = any operation
    http_status: int | None = None  # plain HTTP error without SOAP fault (e.g. 503)
    code: str | None = None  # XTA fault with this errorCode (e.g. "9030")
    garbage: bool = False  # HTTP 200 with a body that is not XML
    count: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or self.count < 1:
            raise ValueError("count must be a positive integer")
        if self.http_status is not None and not (isinstance(self.http_status, int) and 100 <= self.http_status < 600):
            raise ValueError("http_status must be an HTTP status code")
        if self.code is not None and not isinstance(self.code, str):
            raise ValueError("code must be a string like '9030'")


@dataclass(frozen=True)
class Exchange:
    """One SOAP request/response pair, handed to an observer (conformance tests capture these)."""

    operation: str | None
    request: bytes
    status: int
    response: bytes


class XtaSimulator:
    """The WSGI application (usable without a server, e.g. with werkzeug's test client)."""

    def __init__(self, config: SimulatorConfig, *, observer: Callable[[Exchange], None] | None = None) -> None:
        self.config = config
        self.observer = observer
        self.store = MessageStore(config.store_dir)
        self.registry = MessageIdRegistry(config.server_identity)
        self.operations = XtaOperations(
            OperationPolicy(reader_keys=dict(config.reader_keys), trusted_signers=tuple(config.trusted_signers),
                            accounts=config.accounts, max_container_bytes=config.max_container_bytes),
            self.registry, self.store)
        self._injections: list[InjectedFault] = []
        self._injections_lock = threading.Lock()
        self._routes = Map([
            Rule(SOAP_PATH, endpoint="soap", methods=["POST"]),
            Rule(SOAP_PATH, endpoint="soap_info", methods=["GET"]),
            Rule("/_sim/messages", endpoint="messages", methods=["GET"]),
            Rule("/_sim/messages/<message_id>", endpoint="message", methods=["GET"]),
            Rule("/_sim/messages/<message_id>/parts/<int:index>", endpoint="part", methods=["GET"]),
            Rule("/_sim/stats", endpoint="stats", methods=["GET"]),
            Rule("/_sim/reset", endpoint="reset", methods=["POST"]),
            Rule("/_sim/inject", endpoint="inject", methods=["POST"]),
            Rule("/_sim/health", endpoint="health", methods=["GET"]),
        ])

    # ------------------------------------------------------------------ control

    def inject(self, fault: InjectedFault) -> None:
        with self._injections_lock:
            self._injections.append(fault)

    def reset(self) -> None:
        self.store.reset()
        self.registry.reset()
        with self._injections_lock:
            self._injections.clear()

    def _take_injection(self, operation: str | None) -> InjectedFault | None:
        with self._injections_lock:
            for fault in self._injections:
                if fault.operation in (None, operation):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._injections.remove(fault)
                    return fault
        return None

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        try:
            endpoint, args = self._routes.bind_to_environ(environ).match()
            response = getattr(self, f"_http_{endpoint}")(request, **args)
        except HTTPException as exc:
            response = _json({"error": exc.name}, exc.code or 500)
        except Exception:  # never a traceback page; the SOAP path has its own fault handling
            log.exception("XTA simulator: internal error on %s", request.path)
            response = _json({"error": "internal error"}, 500)
        return response(environ, start_response)

    def _http_soap(self, request: Request) -> Response:
        data, operation = b"", None
        try:
            data = self._read_body(request)
            operation, status, body = self._soap(data)
        except SimulatedFault as fault:
            status, body = self._fault_answer(fault, None, None)
        if self.config.latency > 0:
            time.sleep(self.config.latency)
        if self.observer is not None:
            self.observer(Exchange(operation=operation, request=data, status=status, response=body))
        content_type = "text/plain" if body == _GARBAGE else f"{SOAP12_CONTENT_TYPE}; charset=utf-8"
        return Response(body, status=status, content_type=content_type)

    def _http_soap_info(self, request: Request) -> Response:
        return Response("XTA 2.1.1 simulator: POST SOAP 1.2 requests here\n", content_type="text/plain")

    def _read_body(self, request: Request) -> bytes:
        limit = 2 * self.config.max_container_bytes + (1 << 20)  # base64 + envelope overhead
        length = request.content_length
        if length is not None and length > limit:
            _drain(request)
            raise SimulatedFault("9023", f"request of {length} bytes exceeds the size limit")
        if length is not None:
            return request.stream.read(length) if length else b""
        data = bytearray()  # chunked body: read piecewise up to the limit
        while chunk := request.stream.read(1 << 20):
            data += chunk
            if len(data) > limit:
                _drain(request)
                raise SimulatedFault("9023", "request exceeds the size limit")
        return bytes(data)

    def _soap(self, data: bytes) -> tuple[str | None, int, bytes]:
        """(operation, HTTP status, response body) for one SOAP request."""
        request_id = action = operation = None
        try:
            try:
                root = parse_request_xml(data)
            except XmlRejected as exc:
                raise SimulatedFault("9000", f"request rejected: not acceptable XML ({exc.reason})",
                                     exception_type=faults.PARAMETER_IS_NOT_VALID) from None
            if root.tag == f"{{{SOAP11}}}Envelope":
                return None, *self._version_mismatch()
            try:
                header, body = split_envelope(root)
            except ProtocolError as exc:
                raise SimulatedFault("9000", str(exc), exception_type=faults.PARAMETER_IS_NOT_VALID) from None
            addressing = parse_addressing(header)
            request_id, action = addressing.message_id, addressing.action
            if not action or not request_id:
                raise SimulatedFault("9020", "WS-Addressing headers Action and MessageID are required",
                                     subcode=(WSA, "MessageAddressingHeaderRequired"))
            operation = _OPERATIONS.get(action)
            if operation is None:
                raise SimulatedFault("9000", f"action not supported by this server: {action}",
                                     exception_type=faults.PARAMETER_IS_NOT_VALID,
                                     subcode=(WSA, "ActionNotSupported"))
            self.store.count_call(operation)
            injected = self._take_injection(operation)
            if injected is not None:
                answer = self._injected(injected, action, request_id)
                if answer is not None:
                    return operation, *answer
            children = body_children(body)
            if operation != "sendMessage" and children:
                raise SimulatedFault("9022", f"{operation} expects an empty Body")
            handler = {"checkAccountActive": self.operations.check_account_active,
                       "createMessageId": self.operations.create_message_id,
                       "sendMessage": self.operations.send_message}[operation]
            result = handler(header, body)
        except SimulatedFault as fault:
            return operation, *self._fault_answer(fault, action if operation else None, request_id)
        except Exception as exc:  # a bug or a failing dependency: a technical problem, not a crash
            log.error("XTA simulator: %s failed: %s", operation or "request", type(exc).__name__)
            fault = SimulatedFault("9030", "internal error of the simulator")
            return operation, *self._fault_answer(fault, action if operation else None, request_id)
        headers = addressing_headers(action, relates_to=request_id)
        return operation, 200, _serialize(build_envelope(headers, result))

    def _injected(self, injected: InjectedFault, action: str, request_id: str) -> tuple[int, bytes] | None:
        if injected.garbage:
            return 200, _GARBAGE
        if injected.http_status is not None:
            return injected.http_status, b""
        if injected.code is not None:
            return self._fault_answer(SimulatedFault(injected.code, "injected fault"), action, request_id)
        return None

    def _fault_answer(self, fault: SimulatedFault, action: str | None, request_id: str | None) -> tuple[int, bytes]:
        self.store.count_fault(fault.code)
        exception_type = fault.exception_type or faults.ERROR_CODES.get(fault.code, (None, ""))[0]
        exception_type = exception_type or faults.TECHNICAL_PROBLEM
        soap_code = faults.soap_code_for(exception_type)
        element = faults.render_fault(fault.code, fault.reason, exception_type=exception_type,
                                      subcode=fault.subcode)
        headers = addressing_headers(action or ACTION_WSA_FAULT, relates_to=request_id)
        return faults.http_status_for(soap_code), _serialize(build_envelope(headers, [element]))

    @staticmethod
    def _version_mismatch() -> tuple[int, bytes]:
        env = etree.fromstring(
            b'<soap-env:Envelope xmlns:soap-env="http://www.w3.org/2003/05/soap-envelope"><soap-env:Header>'
            b'<soap-env:Upgrade><soap-env:SupportedEnvelope qname="soap-env:Envelope"/></soap-env:Upgrade>'
            b"</soap-env:Header><soap-env:Body>"
            b"<soap-env:Fault><soap-env:Code><soap-env:Value>soap-env:VersionMismatch</soap-env:Value>"
            b'</soap-env:Code><soap-env:Reason><soap-env:Text xml:lang="en">SOAP 1.2 required</soap-env:Text>'
            b"</soap-env:Reason></soap-env:Fault></soap-env:Body></soap-env:Envelope>")
        return 500, _serialize(env)

    # ------------------------------------------------------------------ inspection API

    def _http_messages(self, request: Request) -> Response:
        reader = request.args.get("reader")
        return _json([m.summary() for m in self.store.messages(reader)])

    def _http_message(self, request: Request, message_id: str) -> Response:
        message = self.store.get(message_id)
        return _json(message.summary()) if message else _json({"error": "no such message"}, 404)

    def _http_part(self, request: Request, message_id: str, index: int) -> Response:
        message = self.store.get(message_id)
        if message is None or index >= len(message.parts):
            return _json({"error": "no such part"}, 404)
        part = message.parts[index]
        return Response(part.data, content_type=part.content_type or "application/octet-stream")

    def _http_stats(self, request: Request) -> Response:
        return _json(self.store.stats())

    def _http_reset(self, request: Request) -> Response:
        self.reset()
        return Response(status=204)

    def _http_inject(self, request: Request) -> Response:
        try:
            spec = json.loads(request.get_data() or b"{}")
            fault = InjectedFault(**spec)
        except (ValueError, TypeError) as exc:
            return _json({"error": f"bad injection: {exc}"}, 400)
        self.inject(fault)
        return _json(asdict(fault), 201)

    def _http_health(self, request: Request) -> Response:
        return _json({"status": "ok"})


def _serialize(envelope: etree._Element) -> bytes:
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


def _json(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value, ensure_ascii=False), status=status, content_type="application/json")


def _drain(request: Request) -> None:
    """Read and drop the rest of an over-long body, so the keep-alive connection stays in sync."""
    while request.stream.read(1 << 20):
        pass


# ---------------------------------------------------------------------- server


class RunningSimulator:
    """A simulator serving in a background thread; ``url`` is the SOAP endpoint."""

    def __init__(self, simulator: XtaSimulator, server: NoDelayWSGIServer, thread: threading.Thread) -> None:
        self.simulator = simulator
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.base_url = f"http://{host}:{port}"
        self.url = f"{self.base_url}{SOAP_PATH}"

    @property
    def store(self) -> MessageStore:
        return self.simulator.store

    def inject(self, fault: InjectedFault) -> None:
        self.simulator.inject(fault)

    def stop(self) -> None:
        """Stop accepting, close open keep-alive connections, release the port."""
        self._server.shutdown()
        self._server.close_open_connections()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve(config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0, *,
          observer: Callable[[Exchange], None] | None = None,
          simulator: XtaSimulator | None = None) -> RunningSimulator:
    """Start an XTA simulator on ``host:port`` (0 = a free port) and return once it accepts.

    Passing a ``simulator`` whose server was stopped serves it again with all its state (issued
    MessageIDs, received messages): an endpoint outage and recovery, as a real server keeps state."""
    simulator = simulator or XtaSimulator(config, observer=observer)
    server = NoDelayWSGIServer(host, port, simulator)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name=f"xta-simulator-{server.server_address[1]}", daemon=True)
    thread.start()
    return RunningSimulator(simulator, server, thread)
