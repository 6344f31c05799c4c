"""The FIT-Connect branches of the hub's one error tree (``hub.errors``).

Transient errors carry ``retry_after`` (seconds, from an HTTP ``Retry-After`` header) so that the
hub can wait at least as long as the delivery service asked. Messages hold ids, statuses and the
service's problem title/detail, never payload.
"""

from __future__ import annotations

from hub.errors import (
    DirectoryError,
    EndpointUnavailable,
    MalformedAnswer,
    MessageError,
    SecurityError,
    TransportIdInvalid,
)


class FitConnectUnavailable(EndpointUnavailable):
    """Timeout, connection error, HTTP 429 or 5xx: retry later, not before ``retry_after`` seconds."""

    reason = "fitconnect_unavailable"

    def __init__(self, message: str = "", *, reason: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class FitConnectMalformed(MalformedAnswer):
    """The service answered, but not what the API promises (not JSON, a missing field, a SET that
    does not verify): the endpoint's fault, retried and counted by the breaker."""

    reason = "fitconnect_malformed"

    def __init__(self, message: str = "", *, reason: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class FitConnectRefused(MessageError):
    """The service refused what was sent (400, 409, 415, 422): permanent; the message names the
    problem's title and detail as the service gave them."""

    reason = "fitconnect_refused"

    def __init__(self, message: str = "", *, reason: str | None = None, status: int | None = None) -> None:
        super().__init__(message, reason=reason)
        self.status = status


class FitConnectAccessDenied(EndpointUnavailable):
    """The service refused our credentials (401 after a fresh token, 403, token endpoint 400/401).
    Not the application's fault: dead-lettering it would lose a valid application to a wrong or
    expired secret. Transient, so the breaker opens and the consumer pauses until the credentials
    are fixed; the readiness probe (``check``) says why meanwhile."""

    reason = "fitconnect_access_denied"


class FitConnectNotFound(TransportIdInvalid):
    """A submission or case the service does not know (404 other than a destination): the id the
    hub recorded is gone (the service dropped an incomplete submission), so the pipeline forgets
    it and the next attempt creates a new submission."""

    reason = "fitconnect_not_found"


class DestinationUnavailable(DirectoryError):
    """The destination is unknown, decommissioned, does not offer the service or metadata 1.0.0
    (permanent)."""

    reason = "fitconnect_destination"


class DestinationNotReady(DirectoryError):
    """The destination exists but is not taking submissions yet or for now (``created``,
    ``inactive``): transient. A directory error, not a transport one, so the breaker does not count
    it: one paused destination must not stop the adapter's other deliveries."""

    transient = True
    reason = "fitconnect_destination_inactive"


class KeyRefused(SecurityError):
    """A destination's key failed validation before anything was encrypted for it or uploaded;
    ``reason`` says why (fitconnect_key_too_small, fitconnect_key_alg, fitconnect_key_ops,
    fitconnect_key_type, fitconnect_key_x5c, fitconnect_key_usage, fitconnect_key_untrusted,
    fitconnect_key_expired)."""

    reason = "fitconnect_key"
