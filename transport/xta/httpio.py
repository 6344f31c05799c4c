"""The XTA client's HTTP: one bounded urllib3 keep-alive pool per client, shared by its threads.

Why not ``requests``: per call it merges settings, prepares and hooks a request and wraps the answer,
~0.15 ms of CPU on top of urllib3 (``bench/bench_http.py``) for nothing the XTA client uses. The pool
(``HTTPConnectionPool``/``HTTPSConnectionPool``, or a ``ProxyManager`` when the environment names a
proxy for the endpoint) is thread-safe; ``pool_size`` idle connections are kept (more concurrent
callers get short-lived extra ones, and urllib3 logs a warning that the pool is too small).

TLS: every https connection uses the one ``ssl.SSLContext`` prepared at start-up
(``transport.xta.tls.client_context``: client identity, trust anchors, hostname check, TLS >= 1.2).

Stale keep-alive connections and the no-resend rule: before a pooled connection is reused, urllib3
checks whether the server has closed it (EOF or reset already received); such a connection is
dropped and the request goes out on a fresh one -- nothing had been sent. Once any byte of a request
has been written, a failure is never retried here: the server may have acted on it (a sendMessage
it accepted would, re-sent, come back as 9024 or be delivered twice), so the failure is raised as
``EndpointUnavailable`` and the worker's retry ladder decides. Redirects are not followed (a SOAP
POST is not re-sent elsewhere): a 3xx is an answer like any other and ``parse_reply`` rejects it.

Failures are translated here (``faults.TRANSPORT_CONDITIONS``):

    connect/read timeout                            -> EndpointUnavailable("timeout after ...")
    TLS failure (handshake refused, unverifiable)   -> EndpointUnavailable(reason="tls_handshake_failed")
    refused, reset, closed mid-answer, DNS, proxy   -> EndpointUnavailable("connection failed ...")
    an answer larger than ``limit`` bytes           -> MalformedAnswer
    any other HTTP-level error (undecodable body)   -> MalformedAnswer
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import urllib3
from urllib3.exceptions import (
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    SSLError,
)
from urllib3.exceptions import (
    TimeoutError as Urllib3Timeout,
)

from hub.errors import EndpointUnavailable, MalformedAnswer

_CHUNK = 1 << 20


@dataclass(frozen=True)
class HttpAnswer:
    """What the server sent: status, Content-Type and the (decoded) body."""

    status: int
    content_type: str
    content: bytes


def environment_proxy(url: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy the environment names for ``url`` (``https_proxy``/``http_proxy``/``all_proxy``,
    minus ``no_proxy``), read once at start-up as ``requests`` did, or None."""
    parsed = urlparse(url)
    proxies = urllib.request.getproxies_environment() if environ is None else {
        key[:-6].lower(): value for key, value in environ.items() if key.lower().endswith("_proxy") and value}
    no_proxy = proxies.pop("no", None)
    if no_proxy is not None and _bypassed(parsed.hostname or "", parsed.port, no_proxy):
        return None
    return proxies.get(parsed.scheme) or proxies.get("all") or None


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """``no_proxy`` as requests read it: ``*``, host names and domain suffixes (with or without a
    port), and for an IP address also networks in CIDR notation (``10.0.0.0/8``)."""
    if no_proxy.strip() == "*":
        return True
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    names = {host, f"{host}:{port}"} if port else {host}
    for entry in (e.strip().lstrip(".") for e in no_proxy.split(",")):
        if not entry:
            continue
        if any(name == entry or name.endswith("." + entry) for name in names):
            return True
        if address is not None and "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


class PooledHttp:
    """POSTs to one URL over a keep-alive pool; ``close`` drops idle connections (usable after)."""

    def __init__(self, url: str, *, timeout: float, pool_size: int, user_agent: str,
                 ssl_context: ssl.SSLContext | None = None, proxy: str | None = None,
                 limit: int) -> None:
        parsed = urlparse(url)
        self.url = url
        self._target = url if proxy else (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self._seconds = timeout
        self._limit = limit
        self._user_agent = user_agent
        self._make = self._factory(url, pool_size, ssl_context, proxy)
        self._lock = threading.Lock()
        self._pool = self._make()

    def _factory(self, url: str, pool_size: int, context: ssl.SSLContext | None, proxy: str | None) -> Any:
        tls: dict[str, Any] = {"ssl_context": context} if urlparse(url).scheme == "https" else {}
        common: dict[str, Any] = {"maxsize": pool_size, "block": False, "retries": False, "timeout": self._timeout}
        if proxy:
            return lambda: urllib3.ProxyManager(proxy, num_pools=1, **common, **tls)
        return lambda: urllib3.connection_from_url(url, **common, **tls)

    def post(self, operation: str, body: bytes | Iterable[bytes | memoryview], length: int,
             content_type: str) -> HttpAnswer:
        """POST ``body`` (bytes, or buffers streamed with the known ``length``) and read the answer."""
        headers = {"User-Agent": self._user_agent, "Content-Type": content_type, "Content-Length": str(length)}
        response = None
        try:
            response = self._pool.urlopen("POST", self._target, body=body, headers=headers, retries=False,
                                          redirect=False, timeout=self._timeout, preload_content=False,
                                          decode_content=True, assert_same_host=False)
            content = self._read(response, operation)
            answer = HttpAnswer(response.status, response.headers.get("Content-Type", ""), content)
        except BaseException as exc:
            if response is not None:  # unread rest: the connection cannot be reused
                response.close()
                response.release_conn()
            if isinstance(exc, HTTPError):
                raise _translate(exc, operation, self._seconds) from exc
            raise
        response.release_conn()  # fully read: back into the pool, kept alive
        return answer

    def _read(self, response: Any, operation: str) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self._limit:
            raise MalformedAnswer(f"XTA {operation}: answer of {declared} bytes exceeds {self._limit}")
        buffer = bytearray()
        for chunk in response.stream(_CHUNK):
            buffer += chunk
            if len(buffer) > self._limit:
                raise MalformedAnswer(f"XTA {operation}: answer exceeds {self._limit} bytes")
        return bytes(buffer)

    def close(self) -> None:
        """Close idle connections; later calls open a fresh pool."""
        with self._lock:
            old, self._pool = self._pool, self._make()
        if isinstance(old, urllib3.PoolManager):
            old.clear()
        else:
            old.close()


def _translate(exc: HTTPError, operation: str, timeout: float) -> Exception:
    if isinstance(exc, MaxRetryError) and exc.reason is not None:  # only with retries, kept for safety
        inner = exc.reason
        if isinstance(inner, HTTPError):
            exc = inner
    if isinstance(exc, SSLError):  # refused/unverifiable certificate, or TLS broken
        return EndpointUnavailable(f"XTA {operation}: TLS handshake failed ({tls_reason(exc)})",
                                   reason="tls_handshake_failed")
    if isinstance(exc, (NewConnectionError, ProxyError)):  # NewConnectionError is a ConnectTimeoutError
        return EndpointUnavailable(f"XTA {operation}: connection failed ({_cause_name(exc)})")
    if isinstance(exc, Urllib3Timeout):
        return EndpointUnavailable(f"XTA {operation}: timeout after {timeout}s")
    if isinstance(exc, ProtocolError):  # reset, closed before or while answering, truncated body
        return EndpointUnavailable(f"XTA {operation}: connection failed ({_cause_name(exc)})")
    return MalformedAnswer(f"XTA {operation}: HTTP request failed ({type(exc).__name__})")


def _cause_name(exc: BaseException) -> str:
    for arg in exc.args:
        if isinstance(arg, BaseException):
            return type(arg).__name__
    return type(exc).__name__


def tls_reason(exc: BaseException) -> str:
    """A short, payload-free reason from a TLS failure (e.g. CERTIFICATE_VERIFY_FAILED)."""
    text = str(exc)
    for marker in ("CERTIFICATE_VERIFY_FAILED", "TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_BAD_CERTIFICATE",
                   "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_HANDSHAKE_FAILURE", "WRONG_VERSION_NUMBER"):
        if marker in text:
            return marker
    return type(exc).__name__
