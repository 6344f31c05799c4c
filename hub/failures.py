"""What the hub writes into a message's headers when it fails, and how it reads them back.

Headers arriving with a message are untrusted (any AMQP client may set ``x-hub-*``): every read
here is defensive, so a forged or garbled value can neither crash a worker nor misroute a retry.
Texts written here carry ids, element names and codes, never payload values: for exceptions the
hub did not raise itself only the class name is kept, for XTA faults only type and code (a
server's fault text may quote the payload).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from hub.errors import HubError, XtaFault

H_ATTEMPT = "x-hub-attempt"
H_FIRST_FAILURE = "x-hub-first-failure"
H_LAST_REASON = "x-hub-last-reason"
HUB_FAILURE_HEADERS = ("x-hub-reason", "x-hub-error-class", "x-hub-error-message", "x-hub-xta-code",
                       "x-hub-attempts", "x-hub-adapter", "x-hub-destination", "x-hub-first-failure",
                       "x-hub-last-failure", H_ATTEMPT, H_LAST_REASON)
BROKER_DEATH_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
                        "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason", "x-delivery-count")
_MAX_TEXT = 1000


def epoch_ms() -> int:
    """Times in headers are integer epoch milliseconds (pika cannot encode floats in tables)."""
    return int(time.time() * 1000)


def header_int(headers: Mapping[str, Any], name: str, default: int, *, minimum: int = 0,
               maximum: int = 2**62) -> int:
    """An integer header, or ``default`` when it is missing, not an integer or out of range."""
    value = headers.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        return default
    return value


def error_reason(error: BaseException) -> str:
    return error.reason if isinstance(error, HubError) else "internal_error"


def safe_error_text(error: BaseException) -> str:
    """A description fit for headers and logs: no payload values, no remote free text."""
    if isinstance(error, XtaFault):
        return f"XTA {error.exception_type} errorCode {error.code or 'unknown'}"
    if isinstance(error, HubError):
        return str(error)[:_MAX_TEXT]
    return f"unexpected {type(error).__name__} (details in the worker log)"


def retry_headers(headers: Mapping[str, Any], error: BaseException, attempts: int, first_failure: int) -> dict[str, Any]:
    return {**headers, H_ATTEMPT: attempts, H_FIRST_FAILURE: first_failure, H_LAST_REASON: error_reason(error)}


def dead_letter_headers(headers: Mapping[str, Any], error: BaseException, *, adapter: str, destination: str | None,
                        attempts: int, first_failure: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        **headers,
        "x-hub-reason": error_reason(error),
        "x-hub-error-class": type(error).__name__,
        "x-hub-error-message": safe_error_text(error),
        "x-hub-attempts": attempts,
        "x-hub-adapter": adapter,
        "x-hub-first-failure": first_failure,
        "x-hub-last-failure": epoch_ms(),
    }
    if destination:
        out["x-hub-destination"] = destination
    if isinstance(error, XtaFault) and error.code:
        out["x-hub-xta-code"] = error.code
    return out


def clean_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The headers a portal sent, without what the hub or the broker added on failure."""
    return {k: v for k, v in headers.items() if k not in HUB_FAILURE_HEADERS and k not in BROKER_DEATH_HEADERS}
