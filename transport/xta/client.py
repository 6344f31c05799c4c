"""XTA 2.1.1 client (checkAccountActive, createMessageId, sendMessage) over zeep, SOAP 1.2 + WS-Addressing.

One zeep client is built per ``XtaClient`` from the project's own WSDL (``schemas/xta/xta.wsdl``),
loaded from local files only; every call reuses it. HTTP goes through one ``requests.Session`` per
thread (keep-alive, no shared connection pool state), so the worker's thread pool may call the
same ``XtaClient`` concurrently. Every third-party error is translated here, at the edge:

    requests ConnectionError / Timeout / broken response stream -> EndpointUnavailable (transient)
    HTTP 5xx, 408, 429 without a SOAP fault                     -> EndpointUnavailable (transient)
    SOAP fault with an xta exception                            -> XtaFault(code=...)
    anything that is not a SOAP/XTA answer                      -> ProtocolError

Payloads are never logged (zeep's own transport logs whole envelopes at DEBUG; ours does not).
"""

from __future__ import annotations

import copy
import functools
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests
import zeep
import zeep.exceptions
from lxml import etree
from zeep.transports import Transport

from hub.errors import ConfigError, EndpointUnavailable, HubError, ProtocolError, XtaFault
from schemas.xta import WSDL_PATH
from transport.xta.container import GENERIC_CONTENT_CONTAINER
from transport.xta.faults import PERMISSION_DENIED, error_from_zeep_fault
from transport.xta.metadata import MessageMetaData, Party
from transport.xta.ns import SOAP12, WSA, XTA, q
from transport.xta.soap import (
    addressing_headers,
    render_author_header,
    render_message_metadata,
    reply_to_anonymous_header,
)

log = logging.getLogger(__name__)

MANAGEMENT_BINDING = f"{{{XTA}}}managementHttpsBinding"
SEND_BINDING = f"{{{XTA}}}sendXTAHttpsBinding"
USER_AGENT = "xoev-hub-xta/0.1"


@dataclass(frozen=True)
class XtaEndpoint:
    """Where one XTA server listens; ``timeout`` (seconds) applies to connect and to each read."""

    url: str
    timeout: float = 30.0


class _LocalTransport(Transport):
    """zeep transport that loads WSDL/XSD from local files only and posts via per-thread sessions."""

    def __init__(self, timeout: float, session_factory: Callable[[], requests.Session]) -> None:
        # zeep.Transport.__init__ would create and mutate a shared session: set up our own state.
        self.cache = None
        self._close_session = False  # zeep.Transport.__del__ reads it
        self.load_timeout = timeout
        self.operation_timeout = timeout
        self.logger = log
        self._session_factory = session_factory
        self._local = threading.local()
        self._sessions: weakref.WeakSet[requests.Session] = weakref.WeakSet()
        self._sessions_lock = threading.Lock()

    @property
    def session(self) -> requests.Session:  # type: ignore[override]
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._session_factory()
            self._local.session = session
            with self._sessions_lock:
                self._sessions.add(session)
        return session

    def load(self, url: str) -> bytes:
        """Read a WSDL/XSD; anything that is not a local file is refused (never the network)."""
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
        return self.session.post(address, data=message, headers=headers,
                                 timeout=(self.operation_timeout, self.operation_timeout))

    def close(self) -> None:
        with self._sessions_lock:
            sessions = list(self._sessions)
            self._sessions = weakref.WeakSet()
        self._local = threading.local()
        for session in sessions:
            session.close()


def default_session(url: str) -> requests.Session:
    """A keep-alive session for ``url`` with proxy/CA settings read from the environment once.

    requests would otherwise re-read proxy variables and ~/.netrc on every call (~0.3 ms each).
    """
    session = requests.Session()
    env = session.merge_environment_settings(url, {}, None, None, None)
    session.trust_env = False
    session.proxies.update(env.get("proxies") or {})
    session.verify = env.get("verify", True)
    session.headers["User-Agent"] = USER_AGENT
    return session


class XtaClient:
    """Thread-safe XTA 2.1.1 client for one endpoint (build once, call from many threads)."""

    def __init__(
        self,
        endpoint: XtaEndpoint,
        *,
        wsdl: Path | str | None = None,
        session_factory: Callable[[], requests.Session] | None = None,
    ) -> None:
        """``wsdl`` may point at another local XTA 2.1.1 WSDL (e.g. the official one);
        ``session_factory`` builds each thread's session (the seam for mTLS and test capture)."""
        scheme = urlparse(endpoint.url).scheme
        if scheme not in ("http", "https"):
            raise ConfigError(f"XTA endpoint URL must be http(s), got {endpoint.url!r}")
        self.endpoint = endpoint
        self._transport = _LocalTransport(endpoint.timeout,
                                          session_factory or functools.partial(default_session, endpoint.url))
        settings = zeep.Settings(strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=True,
                                 xml_huge_tree=False)
        try:
            self._zeep = zeep.Client(str(wsdl or WSDL_PATH), transport=self._transport, settings=settings)
        except HubError:
            raise
        except Exception as exc:  # zeep raises many kinds while loading a broken WSDL
            raise ConfigError(f"cannot load XTA WSDL {wsdl or WSDL_PATH}: {exc}") from exc
        self._options = {"address": endpoint.url}
        self._management = self._zeep.wsdl.bindings[MANAGEMENT_BINDING]
        self._send = self._zeep.wsdl.bindings[SEND_BINDING]

    # ------------------------------------------------------------------ operations

    def check_account_active(self, author: Party) -> bool:
        """True if the server knows ``author``'s account and it is active, False on PermissionDenied.

        Other faults (e.g. a technical problem) raise, so an outage is not mistaken for a lock-out.
        """
        try:
            self._call(self._management, "checkAccountActive", [render_author_header(author)])
        except XtaFault as fault:
            if fault.exception_type == PERMISSION_DENIED:
                return False
            raise
        return True

    def create_message_id(self, author: Party) -> str:
        """Ask the server for a new XTA MessageID (keep it across retries of the same message)."""
        result = self._call(self._management, "createMessageId", [render_author_header(author)])
        value = getattr(result, "_value_1", result)
        if not isinstance(value, str) or not value.strip():
            raise ProtocolError("createMessageId answered without a MessageID")
        return value.strip()

    def send_message(self, metadata: MessageMetaData, container: etree._Element) -> None:
        """Deliver one xta:GenericContentContainer (plain or encrypted) with its MessageMetaData.

        The container is copied into the request, the caller's element is left untouched.
        """
        if container.tag != GENERIC_CONTENT_CONTAINER:
            raise ValueError("send_message expects an xta:GenericContentContainer element")
        self._call(self._send, "sendMessage", [render_message_metadata(metadata)], body=container)

    def close(self) -> None:
        """Close every thread's HTTP connections (the client stays usable: sessions reopen lazily)."""
        self._transport.close()

    def __enter__(self) -> XtaClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _call(self, binding: Any, operation: str, headers: list[etree._Element],
              body: etree._Element | None = None) -> Any:
        # zeep renders the envelope and the WS-Addressing Action/MessageID/To headers (from the
        # WSDL's wsam:Action); we add ReplyTo and put the caller's container into the body.
        envelope, http_headers = binding._create(operation, (), {"_soapheaders": headers},
                                                 client=self._zeep, options=self._options)
        soap_header = envelope.find(q(SOAP12, "Header"))
        if soap_header is None:
            soap_header = etree.Element(q(SOAP12, "Header"))
            envelope.insert(0, soap_header)
        if soap_header.find(q(WSA, "Action")) is None:  # a WSDL without wsam:Action: add them ourselves
            soap_header.extend(addressing_headers(binding.get(operation).soapaction, to=self.endpoint.url))
        soap_header.append(reply_to_anonymous_header())
        if body is not None:
            soap_body = envelope.find(q(SOAP12, "Body"))
            for child in list(soap_body):
                soap_body.remove(child)
            soap_body.append(copy.deepcopy(body))
        try:
            response = self._transport.post_xml(self.endpoint.url, envelope, http_headers)
        except requests.exceptions.Timeout as exc:
            raise EndpointUnavailable(f"XTA {operation}: timeout after {self.endpoint.timeout}s") from exc
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise EndpointUnavailable(f"XTA {operation}: connection failed ({type(exc).__name__})") from exc
        except requests.exceptions.RequestException as exc:
            raise ProtocolError(f"XTA {operation}: HTTP request failed ({type(exc).__name__})") from exc
        return self._reply(binding, operation, response)

    def _reply(self, binding: Any, operation: str, response: requests.Response) -> Any:
        status = response.status_code
        try:
            return binding.process_reply(self._zeep, binding.get(operation), response)
        except zeep.exceptions.Fault as fault:
            raise error_from_zeep_fault(fault, http_status=status) from None
        except zeep.exceptions.TransportError as exc:
            if status >= 500 or status in (408, 429):
                raise EndpointUnavailable(f"XTA {operation}: HTTP {status} without SOAP fault") from None
            raise ProtocolError(f"XTA {operation}: HTTP {status}, not a SOAP answer") from exc
        except (zeep.exceptions.Error, etree.LxmlError, ValueError, TypeError, AttributeError,
                LookupError) as exc:
            if status >= 500:
                raise EndpointUnavailable(f"XTA {operation}: HTTP {status} without SOAP fault") from None
            raise ProtocolError(f"XTA {operation}: unreadable answer ({type(exc).__name__})") from exc
