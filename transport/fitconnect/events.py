"""The event log of a case -> the status of one submission, from verified, bound SETs only.

Only SETs whose ``sub`` is ``submission:<this submission>`` and whose ``txn`` is ``case:<its case>``
count, and they are picked by those (unverified) claims *before* anything is verified: a SET of
another submission of the case, even one that cannot be verified, never blocks this one's status.

Who may say what (a SET signed by anyone else is never believed; ``FitConnectMalformed``):

- create-, submit-, notify-, delete-submission: the delivery service, with a key of its
  ``/.well-known/jwks.json`` (cached). Its ``iss`` is not checked: the service's base URL is what
  the documentation promises, but its own example and the test environment disagree on it.
- accept-, forward-submission: the destination, ``iss`` == the destination id, signed with the
  destination's signature key (``GET /v1/destinations/{id}/keys/{kid}``, validated against the
  trust anchors, cached).
- reject-submission: the destination as above, or the delivery service with a JWKS key (it
  rejects submissions left unfetched, and may reject for the receiver).

Mapping: accept -> 1 green, final; reject -> 3 red, final, with its problems (clipped); delete ->
3 red, final; create/submit/notify/forward -> 0 open. The first final event decides.
"""

from __future__ import annotations

import re
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
from transport.fitconnect.jose import (
    public_key,
    unverified_payload,
    validate_signature_key,
    verify_set,
)
from transport.fitconnect.models import EVENT_PREFIX, SetPayload

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
SERVICE_EVENTS = frozenset({"create-submission", "submit-submission", "notify-submission", "delete-submission"})
RECEIVER_EVENTS = frozenset({"accept-submission", "reject-submission", "forward-submission"})
SUBMITTED_EVENTS = frozenset({"submit-submission", "notify-submission", "forward-submission",
                              "accept-submission", "reject-submission"})
MAX_PROBLEMS = 20
MAX_PROBLEM_TEXT = 300
PROBLEM_FIELDS = ("type", "title", "detail", "instance")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


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
        """An earlier attempt got through: the service or the receiver saw this submission
        submitted (create alone is not; a deletion alone is an incomplete submission dropped)."""
        return any(e in SUBMITTED_EVENTS for e in self.events)

    @property
    def gone(self) -> bool:
        """Deleted before it was ever submitted: the service dropped the incomplete submission."""
        return "delete-submission" in self.events and not self.submitted

    def detail(self) -> dict[str, Any]:
        """JSON-ready summary for a status event (codes and the receiver's reasons only)."""
        return {"submission_id": self.submission_id, "case_id": self.case_id, "status": self.status,
                "status_name": self.status_name, "problems": [dict(p) for p in self.problems]}


def clip(value: str) -> str:
    """A text from a remote party as it may go into status events: control characters gone,
    at most ``MAX_PROBLEM_TEXT`` characters."""
    return _CONTROL.sub(" ", value).strip()[:MAX_PROBLEM_TEXT]


def problems_of(payload: SetPayload) -> tuple[dict[str, str], ...]:
    """The rejection's problems, clipped: only the four RFC 7807 text fields, each bounded."""
    raw = payload.events[payload.event_uri].get("problems")
    if not isinstance(raw, list):
        return ()
    out = []
    for problem in raw[:MAX_PROBLEMS]:
        if isinstance(problem, dict):
            fields = {k: clip(problem[k]) for k in PROBLEM_FIELDS if isinstance(problem.get(k), str)}
            out.append({k: v for k, v in fields.items() if v})
    return tuple(out)


def status_of(payloads: Sequence[SetPayload], submission_id: str, case_id: str) -> SubmissionStatus:
    """Fold the verified SETs of a case into the status of ``submission_id`` (only those naming
    this submission and this case count)."""
    status = SubmissionStatus(submission_id, case_id)
    seen: list[str] = []
    for payload in payloads:
        if not _names(payload.sub, payload.txn, submission_id, case_id):
            continue
        seen.append(payload.event)
        if status.final or payload.event not in _STATES:
            continue
        code, name = _STATES[payload.event]
        problems = problems_of(payload) if payload.event == "reject-submission" else ()
        status = SubmissionStatus(submission_id, case_id, code, name, problems)
    return SubmissionStatus(status.submission_id, status.case_id, status.status, status.status_name,
                            status.problems, tuple(seen))


class SetKeys:
    """Where SET keys come from, cached: the delivery service's JWKS (refetched at most every
    ``refresh`` seconds when a kid is unknown) and destinations' validated signature keys."""

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

    def service_key(self, kid: str) -> RSAKey | None:
        """The delivery service's key ``kid`` from its JWKS, None if it has none such."""
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

    def destination_key(self, destination_id: str, kid: str) -> RSAKey:
        """The destination's validated signature key ``kid``; a refused or unknown key is the
        service's fault (``FitConnectMalformed``), not the message's."""
        now = self._clock()
        with self._lock:
            cached = self._destination_keys.get((destination_id, kid))
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            validated = validate_signature_key(self._client.get_key(destination_id, kid), self._anchors)
        except (KeyRefused, DestinationUnavailable) as exc:
            raise FitConnectMalformed(f"SET key {kid} of destination {destination_id} refused: {exc}",
                                      reason="fitconnect_set_key_refused") from None
        with self._lock:
            self._destination_keys[(destination_id, kid)] = (validated.key, now + self._ttl)
        return validated.key


def read_status(client: FitConnectClient, keys: SetKeys, submission_id: str, case_id: str,
                destination_id: str) -> SubmissionStatus:
    """Fetch the case's event log, pick this submission's SETs, verify each with the key its
    event requires, fold them into the submission's status."""
    payloads = []
    for token in client.events(case_id):
        event = _event_of(token, submission_id, case_id)
        if event is not None:
            payloads.append(verify_bound(token, event, keys, destination_id))
    return status_of(payloads, submission_id, case_id)


def verify_bound(token: str, event: str, keys: SetKeys, destination_id: str) -> SetPayload:
    """Verify a SET of ``event`` with the key that party may use (see the module docstring);
    ``FitConnectMalformed`` if it is signed or issued by anyone else."""
    issuer = unverified_payload(token).get("iss")
    by_destination = event in RECEIVER_EVENTS and isinstance(issuer, str) and _same_uuid(issuer, destination_id)
    if by_destination:
        payload = verify_set(token, lambda kid, _: keys.destination_key(destination_id, kid))
    elif event in SERVICE_EVENTS or event == "reject-submission":
        payload = verify_set(token, lambda kid, _: keys.service_key(kid))
    else:
        raise FitConnectMalformed(f"{event} SET not issued by destination {destination_id}",
                                  reason="fitconnect_set_issuer")
    if payload.event != event or (by_destination and not _same_uuid(payload.iss, destination_id)):
        raise FitConnectMalformed("SET claims changed under verification", reason="fitconnect_set_invalid")
    return payload


def _event_of(token: str, submission_id: str, case_id: str) -> str | None:
    """The short event name of a SET about this submission in this case (unverified claims), None
    for anything else: other submissions, other cases, events that do not count, garbage."""
    try:
        claims = unverified_payload(token)
    except FitConnectMalformed:
        return None
    sub, txn, events = claims.get("sub"), claims.get("txn"), claims.get("events")
    if not (isinstance(sub, str) and isinstance(txn, str) and _names(sub, txn, submission_id, case_id)):
        return None
    if not (isinstance(events, dict) and len(events) == 1):
        return None
    uri = next(iter(events))
    if not (isinstance(uri, str) and uri.startswith(EVENT_PREFIX)):
        return None
    event = uri.removeprefix(EVENT_PREFIX)
    return event if event in _STATES else None


def _names(sub: str, txn: str | None, submission_id: str, case_id: str) -> bool:
    return (sub.lower() == f"submission:{submission_id}".lower()
            and txn is not None and txn.lower() == f"case:{case_id}".lower())


def _same_uuid(value: str, expected: str) -> bool:
    try:
        return uuid.UUID(value) == uuid.UUID(expected)
    except ValueError:
        return False
