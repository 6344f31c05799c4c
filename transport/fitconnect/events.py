"""The event log of a case -> the status of one submission, from verified SETs only.

Keys: the delivery service signs its own SETs (create/submit/notify/delete) with a key from its
``/.well-known/jwks.json`` (cached); a receiving system signs accept/reject with its destination's
signature key (``GET /v1/destinations/{iss}/keys/{kid}``, validated against the trust anchors and
cached). Mapping: accept-submission -> 1 green, final; reject-submission -> 3 red, final, with its
problems; delete-submission -> 3 red, final; create/submit/notify/forward -> 0 open. The first final
event decides; events of other submissions of the case (replies) are ignored.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from joserfc.jwk import RSAKey

from hub.errors import HubError
from transport.fitconnect.client import FitConnectClient
from transport.fitconnect.errors import DestinationUnavailable, FitConnectMalformed, KeyRefused
from transport.fitconnect.jose import public_key, validate_signature_key, verify_set
from transport.fitconnect.models import SetPayload

OPEN, GREEN, RED = 0, 1, 3
_STATES = {
    "create-submission": (OPEN, "created"),
    "submit-submission": (OPEN, "submitted"),
    "notify-submission": (OPEN, "notified"),
    "forward-submission": (OPEN, "forwarded"),
    "accept-submission": (GREEN, "accepted"),
    "reject-submission": (RED, "rejected"),
    "delete-submission": (RED, "deleted"),
}
MAX_PROBLEMS = 20


@dataclass(frozen=True)
class SubmissionStatus:
    """The state of one submission after its case's event log (no payload): ``status`` 0 open,
    1 green, 3 red; ``problems`` of a rejection (type, title, detail, instance)."""

    submission_id: str
    case_id: str
    status: int = OPEN
    status_name: str = "unknown"
    problems: tuple[dict[str, str], ...] = ()
    events: tuple[str, ...] = field(default=())

    @property
    def final(self) -> bool:
        return self.status != OPEN

    @property
    def submitted(self) -> bool:
        """The submission was submitted (an earlier attempt got through)."""
        return any(e != "create-submission" for e in self.events)

    def detail(self) -> dict[str, Any]:
        """JSON-ready summary for a status event (codes and the receiver's reasons only)."""
        return {"submission_id": self.submission_id, "case_id": self.case_id, "status": self.status,
                "status_name": self.status_name, "problems": [dict(p) for p in self.problems]}


def status_of(payloads: Sequence[SetPayload], submission_id: str, case_id: str) -> SubmissionStatus:
    """Fold the verified SETs of a case into the status of ``submission_id``."""
    subject = f"submission:{submission_id}".lower()
    status = SubmissionStatus(submission_id, case_id)
    seen: list[str] = []
    for payload in payloads:
        if payload.sub.lower() != subject:
            continue
        seen.append(payload.event)
        if status.final or payload.event not in _STATES:
            continue
        code, name = _STATES[payload.event]
        problems = tuple({k: v for k, v in p.model_dump(exclude_none=True).items() if k != "status"}
                         for p in payload.problems[:MAX_PROBLEMS]) if payload.event == "reject-submission" else ()
        status = SubmissionStatus(submission_id, case_id, code, name, problems)
    return SubmissionStatus(status.submission_id, status.case_id, status.status, status.status_name,
                            status.problems, tuple(seen))


class SetKeys:
    """Where a SET's key comes from, cached: the delivery service's JWKS (refetched at most every
    ``refresh`` seconds when a kid is unknown), else the issuing destination's validated key."""

    def __init__(self, client: FitConnectClient, trust_anchors: Sequence[x509.Certificate], *,
                 ttl: float = 3600.0, refresh: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._anchors = tuple(trust_anchors)
        self._ttl = ttl
        self._refresh = refresh
        self._clock = clock
        self._lock = threading.Lock()
        self._jwks: dict[str, RSAKey] = {}
        self._jwks_at: float | None = None
        self._destination_keys: dict[tuple[str, str], tuple[RSAKey, float]] = {}

    def __call__(self, kid: str, payload: dict[str, Any]) -> RSAKey | None:
        key = self._service_key(kid)
        if key is not None:
            return key
        issuer = payload.get("iss")
        if not (isinstance(issuer, str) and _is_uuid(issuer)):
            return None
        try:
            return self._destination_key(issuer, kid)
        except (KeyRefused, DestinationUnavailable) as exc:  # the SET cannot be trusted: not the message's fault
            raise FitConnectMalformed(f"SET key {kid} of destination {issuer} refused: {exc}",
                                      reason="fitconnect_set_key_refused") from None

    def _service_key(self, kid: str) -> RSAKey | None:
        now = self._clock()
        with self._lock:
            age = None if self._jwks_at is None else now - self._jwks_at
            if age is not None and age < self._ttl and kid in self._jwks:
                return self._jwks[kid]
            if age is not None and age < self._refresh:  # just fetched: the kid is not there
                return self._jwks.get(kid)
        keys: dict[str, RSAKey] = {}
        for jwk in self._client.jwks().keys:
            try:
                keys[jwk.kid] = public_key(jwk)
            except HubError:
                continue  # an unusable key in the set: SETs signed with it stay unverified
        with self._lock:
            self._jwks, self._jwks_at = keys, now
        return keys.get(kid)

    def _destination_key(self, destination_id: str, kid: str) -> RSAKey:
        now = self._clock()
        with self._lock:
            cached = self._destination_keys.get((destination_id, kid))
        if cached is not None and cached[1] > now:
            return cached[0]
        validated = validate_signature_key(self._client.get_key(destination_id, kid), self._anchors)
        with self._lock:
            self._destination_keys[(destination_id, kid)] = (validated.key, now + self._ttl)
        return validated.key


def read_status(client: FitConnectClient, keys: SetKeys, submission_id: str, case_id: str) -> SubmissionStatus:
    """Fetch the case's event log, verify every SET, fold it into the submission's status."""
    payloads = [verify_set(token, keys) for token in client.events(case_id)]
    return status_of(payloads, submission_id, case_id)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
