"""A real HTTP(S) XTA 2.1.1 server for tests, demos and vendors: all three ports of XTA.wsdl.

    ManagementPort  checkAccountActive, lookupService, createMessageId, getTransportReport, cancelMessage
    SendXtaPort     sendMessage, sendMessageSync
    MsgBoxPort      getStatusList, getMessage, getNextMessage, getNextStatusList, close

SOAP 1.2 + WS-Addressing requests go to ``POST /xta`` (plain or MTOM/XOP ``multipart/related``); the
operation is chosen by wsa:Action and cross-checked with the body. Answers and faults validate against
the official schemas; content-bearing answers go out as MTOM (``mtom_responses``). Anything malformed
gets a SOAP 1.2 Sender fault, never an HTTP 500 traceback. Operations: ``ops`` (management,
send), ``msgbox`` (mailboxes), ``reports`` (transport reports), ``chaos``
(fault injection), ``garbage`` (answers that make no sense). A JSON inspection/control
API lives under ``/_sim/``:

    GET  /_sim/messages[?reader=ID]               summaries (no payload bytes)
    GET  /_sim/messages/<message id>               one summary
    GET  /_sim/messages/<message id>/parts/<n>     raw bytes of part n (0 = message)
    GET  /_sim/reports/<message id>                the transport report (status, records)
    GET  /_sim/stats                               messages per reader, calls, faults by code
    POST /_sim/reset                               forget messages, MessageIDs, counters, injections
    POST /_sim/inject                              {"operation": "sendMessage"|null, "http_status": 503 |
                                                    "code": "9030" | "garbage": true | "html" | ... | "drop": true
                                                    [, "after_processing": true], "latency": 0.5, "count": 1}
    GET|POST /_sim/chaos                           standing fault injection (ChaosConfig as JSON)

``serve()`` runs it in a background thread on a threaded werkzeug server with TCP_NODELAY on every
accepted socket, over HTTPS (optionally requiring client certificates) when ``config.tls`` is set.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lxml import etree
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request as HttpRequest
from werkzeug.wrappers import Response

from hub.errors import ProtocolError, XmlRejected
from transport.http_server import (
    ConnectionDropped,
    NoDelayWSGIServer,
    RunningServer,
    drop_connection,
    json_response,
    start_in_thread,
)
from transport.xta import faults, mtom
from transport.xta.ns import ACTION_WSA_FAULT, ACTIONS, SOAP11, SOAP12_CONTENT_TYPE, WSA
from transport.xta.simulator.api import InspectionApi
from transport.xta.simulator.chaos import Chaos, Disruption
from transport.xta.simulator.config import (
    ChaosConfig,
    InjectedFault,
    SimulatorConfig,
)
from transport.xta.simulator.garbage import processed_answer, processes, unprocessed_answer
from transport.xta.simulator.msgbox import MsgBoxOperations
from transport.xta.simulator.ops import (
    Answer,
    Request,
    SimulatedFault,
    XtaOperations,
    parse_request_xml,
)
from transport.xta.simulator.store import MessageIdRegistry, MessageStore
from transport.xta.soap import (
    addressing_headers,
    body_children,
    build_envelope,
    parse_addressing,
    split_envelope,
)

log = logging.getLogger(__name__)

SOAP_PATH = "/xta"


@dataclass(frozen=True)
class Exchange:
    """One SOAP request/response pair, handed to an observer (conformance tests capture these)."""

    operation: str | None
    request: bytes
    status: int
    response: bytes
    request_content_type: str = SOAP12_CONTENT_TYPE
    response_content_type: str = SOAP12_CONTENT_TYPE


class XtaSimulator(InspectionApi):
    """The WSGI application (usable without a server, e.g. with werkzeug's test client)."""

    def __init__(self, config: SimulatorConfig, *, observer: Callable[[Exchange], None] | None = None) -> None:
        self.config = config
        self.observer = observer
        self.store = MessageStore(config.store_dir)
        self.registry = MessageIdRegistry(config.server_identity)
        self.operations = XtaOperations(config, self.registry, self.store)
        self.msgbox = MsgBoxOperations(config, self.store, self.operations)
        self.chaos = Chaos(config.chaos, clock=config.clock)
        ops, box = self.operations, self.msgbox
        self._handlers: dict[str, Callable[[Request], Answer]] = {
            "checkAccountActive": ops.check_account_active, "createMessageId": ops.create_message_id,
            "lookupService": ops.lookup_service, "getTransportReport": ops.get_transport_report,
            "cancelMessage": ops.cancel_message, "sendMessage": ops.send_message,
            "sendMessageSync": ops.send_message_sync, "getStatusList": box.get_status_list,
            "getNextStatusList": box.get_next_status_list, "getMessage": box.get_message,
            "getNextMessage": box.get_next_message, "close": box.close,
        }
        self._routes = Map([
            Rule(SOAP_PATH, endpoint="soap", methods=["POST"]),
            Rule(SOAP_PATH, endpoint="soap_info", methods=["GET"]),
            Rule("/_sim/messages", endpoint="messages", methods=["GET"]),
            Rule("/_sim/messages/<message_id>", endpoint="message", methods=["GET"]),
            Rule("/_sim/messages/<message_id>/parts/<int:index>", endpoint="part", methods=["GET"]),
            Rule("/_sim/reports/<message_id>", endpoint="report", methods=["GET"]),
            Rule("/_sim/stats", endpoint="stats", methods=["GET"]),
            Rule("/_sim/reset", endpoint="reset", methods=["POST"]),
            Rule("/_sim/inject", endpoint="inject", methods=["POST"]),
            Rule("/_sim/chaos", endpoint="chaos", methods=["GET", "POST"]),
            Rule("/_sim/health", endpoint="health", methods=["GET"]),
        ])

    # ------------------------------------------------------------------ control

    def inject(self, fault: InjectedFault) -> None:
        self.chaos.inject(fault)

    def configure_chaos(self, chaos: ChaosConfig) -> None:
        self.chaos.configure(chaos)

    def reset(self) -> None:
        self.store.reset()
        self.registry.reset()
        self.msgbox.reset()
        self.chaos.reset()

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = HttpRequest(environ)
        try:
            endpoint, args = self._routes.bind_to_environ(environ).match()
            response = getattr(self, f"_http_{endpoint}")(request, **args)
        except ConnectionDropped:
            start_response("500 Connection Dropped", [("Content-Length", "0")])
            return [b""]
        except HTTPException as exc:
            response = json_response({"error": exc.name}, exc.code or 500)
        except Exception:  # never a traceback page; the SOAP path has its own fault handling
            log.exception("XTA simulator: internal error on %s", request.path)
            response = json_response({"error": "internal error"}, 500)
        return response(environ, start_response)

    def _http_soap(self, request: HttpRequest) -> Response:
        before = self.chaos.before_request()
        if before is not None and before.kind == "drop":
            drop_connection(request)
        data, operation, ctype = b"", None, request.headers.get("Content-Type", "")
        body: bytes | mtom.MultipartBody
        try:
            data = self._read_body(request)
            if before is not None and before.kind in ("http", "fault"):
                operation, status, body, rtype = self._disrupted(before, None, None)
            else:
                operation, status, body, rtype = self._soap(data, ctype, request)
        except SimulatedFault as fault:
            status, body = self._fault_answer(fault, None, None)
            rtype = f"{SOAP12_CONTENT_TYPE}; charset=utf-8"
        delay = self.config.latency + (before.delay if before is not None else 0.0)
        if delay > 0:
            time.sleep(delay)
        if self.observer is not None:
            raw = body.to_bytes() if isinstance(body, mtom.MultipartBody) else body
            self.observer(Exchange(operation, data, status, raw, ctype, rtype))
        if isinstance(body, mtom.MultipartBody):
            return Response((bytes(chunk) for chunk in body), status=status,
                            headers={"Content-Length": str(len(body))},
                            content_type=rtype, direct_passthrough=True)
        return Response(body, status=status, content_type=rtype)

    def _http_soap_info(self, request: HttpRequest) -> Response:
        return Response("XTA 2.1.1 simulator: POST SOAP 1.2 requests here\n", content_type="text/plain")

    def _body_limit(self) -> int:
        # inline base64 of an encrypted container at the limit is ~1.8x; MTOM ~1x; plus envelope
        return 2 * self.config.max_container_bytes + (1 << 20)

    def _read_body(self, request: HttpRequest) -> bytes:
        limit = self._body_limit()
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

    def _parse(self, data: bytes, content_type: str) -> tuple[etree._Element, dict[str, memoryview], bool]:
        from transport.security.xml import XmlLimits

        parts: dict[str, memoryview] = {}
        is_mtom = mtom.is_multipart(content_type)
        if is_mtom:
            try:
                message = mtom.parse_multipart(data, content_type)
            except ProtocolError as exc:
                raise SimulatedFault("9000", f"request rejected: {exc}",
                                     exception_type=faults.PARAMETER_IS_NOT_VALID) from None
            data, parts = message.root, dict(message.parts)
        limit = self._body_limit()
        try:
            return parse_request_xml(data, XmlLimits(max_bytes=limit, max_text_length=limit)), parts, is_mtom
        except XmlRejected as exc:
            raise SimulatedFault("9000", f"request rejected: not acceptable XML ({exc.reason})",
                                 exception_type=faults.PARAMETER_IS_NOT_VALID) from None

    def _soap(self, data: bytes, content_type: str,
              http: HttpRequest) -> tuple[str | None, int, bytes | mtom.MultipartBody, str]:
        """(operation, HTTP status, response body, response content type) for one SOAP request."""
        request_id = action = operation = None
        garbage: str | None = None  # a kind of nonsense to answer after carrying the request out
        plain = f"{SOAP12_CONTENT_TYPE}; charset=utf-8"
        try:
            root, parts, is_mtom = self._parse(data, content_type)
            if root.tag == f"{{{SOAP11}}}Envelope":
                return None, *self._version_mismatch(), plain
            try:
                header, body = split_envelope(root)
            except ProtocolError as exc:
                raise SimulatedFault("9000", str(exc), exception_type=faults.PARAMETER_IS_NOT_VALID) from None
            addressing = parse_addressing(header)
            request_id, action = addressing.message_id, addressing.action
            if not action or not request_id:
                raise SimulatedFault("9020", "WS-Addressing headers Action and MessageID are required",
                                     subcode=(WSA, "MessageAddressingHeaderRequired"))
            operation = ACTIONS.get(action)
            if operation is None:
                raise SimulatedFault("9000", f"action not supported by this server: {action}",
                                     exception_type=faults.PARAMETER_IS_NOT_VALID,
                                     subcode=(WSA, "ActionNotSupported"))
            self.store.count_call(operation)
            disruption = self.chaos.after_parse(operation)
            if disruption is not None and disruption.kind == "drop" and not disruption.after_processing:
                drop_connection(http)
            garbage = disruption.garbage if disruption is not None and disruption.kind == "garbage" else None
            if disruption is not None and disruption.kind in ("http", "fault", "garbage") and not processes(garbage):
                return self._disrupted(disruption, action, request_id)
            # sendMessageSync answers in kind; MsgBox answers per config or the client's Accept header
            wants_mtom = is_mtom if operation == "sendMessageSync" else (
                self.config.mtom_responses or "multipart/related" in http.headers.get("Accept", ""))
            answer = self._handlers[operation](Request(
                operation=operation, header=header, body=body_children(body), parts=parts, mtom=is_mtom,
                client_certificate=_client_fingerprint(http), wants_mtom=wants_mtom))
            if disruption is not None and disruption.kind == "drop":
                drop_connection(http)  # processed (e.g. accepted), but the answer is lost
            if disruption is not None and disruption.delay:
                time.sleep(disruption.delay)
        except ConnectionDropped:
            raise
        except SimulatedFault as fault:
            return operation, *self._fault_answer(fault, action if operation else None, request_id), plain
        # the request handler is the simulator's process boundary: a bug or a failing dependency is
        # logged and answered as a technical problem (9030), never a crashed server thread
        except Exception as exc:  # noqa: BLE001
            log.error("XTA simulator: %s failed: %s", operation or "request", type(exc).__name__)
            internal = SimulatedFault("9030", "internal error of the simulator")
            return operation, *self._fault_answer(internal, action if operation else None, request_id), plain
        headers = [*answer.headers, *addressing_headers(action, relates_to=request_id)]
        if garbage is not None:  # carried out, but the answer comes out broken
            return operation, *processed_answer(garbage, headers, answer.body, answer.attachments, action)
        envelope = _serialize(build_envelope(headers, answer.body))
        if answer.attachments is not None and len(answer.attachments):
            content_type_out, multipart = mtom.package(envelope, answer.attachments, action)
            return operation, 200, multipart, content_type_out
        return operation, 200, envelope, plain

    def _disrupted(self, disruption: Disruption, action: str | None,
                   request_id: str | None) -> tuple[str | None, int, bytes, str]:
        if disruption.delay:
            time.sleep(disruption.delay)
        operation = ACTIONS.get(action or "")
        if disruption.kind == "garbage":
            return operation, *unprocessed_answer(disruption.garbage or "text", action, request_id)
        if disruption.kind == "http":
            return operation, disruption.http_status or 503, b"", "text/plain"
        fault = SimulatedFault(disruption.code or "9030", disruption.reason)
        return operation, *self._fault_answer(fault, action, request_id), f"{SOAP12_CONTENT_TYPE}; charset=utf-8"

    def _fault_answer(self, fault: SimulatedFault, action: str | None, request_id: str | None) -> tuple[int, bytes]:
        self.store.count_fault(fault.code)
        entry = faults.FAULT_TABLE.get(fault.code)
        exception_type = fault.exception_type or (entry.exception_type if entry else None) or faults.TECHNICAL_PROBLEM
        soap_code = faults.soap_code_for(exception_type)
        element = faults.render_fault(fault.code, fault.reason, exception_type=exception_type, subcode=fault.subcode)
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

def _client_fingerprint(request: HttpRequest) -> str | None:
    pem = request.environ.get("SSL_CLIENT_CERT")
    if not pem:
        return None
    from transport.xta.tls import certificate_fingerprint

    return certificate_fingerprint(pem)


def _serialize(envelope: etree._Element) -> bytes:
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


def _drain(request: HttpRequest) -> None:
    """Read and drop the rest of an over-long body, so the keep-alive connection stays in sync."""
    while request.stream.read(1 << 20):
        pass


# ---------------------------------------------------------------------- server


class RunningSimulator(RunningServer):
    """A simulator serving in a background thread; ``url`` is the SOAP endpoint."""

    def __init__(self, simulator: XtaSimulator, server: NoDelayWSGIServer, thread: threading.Thread) -> None:
        super().__init__(server, thread)
        self.simulator = simulator
        self.url = f"{self.base_url}{SOAP_PATH}"

    @property
    def store(self) -> MessageStore:
        return self.simulator.store

    def inject(self, fault: InjectedFault) -> None:
        self.simulator.inject(fault)


def serve(config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0, *,
          observer: Callable[[Exchange], None] | None = None,
          simulator: XtaSimulator | None = None) -> RunningSimulator:
    """Start an XTA simulator on ``host:port`` (0 = a free port) and return once it accepts.

    Passing a ``simulator`` whose server was stopped serves it again with all its state (issued
    MessageIDs, received messages): an endpoint outage and recovery, as a real server keeps state."""
    simulator = simulator or XtaSimulator(config, observer=observer)
    context = None
    tls = simulator.config.tls
    if tls is not None:
        from transport.xta.tls import server_context

        context = server_context(tls.cert, tls.key, client_ca=tls.client_ca,
                                 require_client_cert=tls.require_client_cert)
    server = NoDelayWSGIServer(host, port, simulator, ssl_context=context)
    return RunningSimulator(simulator, server, start_in_thread(server, "xta-simulator"))


__all__ = ["SOAP_PATH", "Exchange", "RunningSimulator", "XtaSimulator", "serve"]
