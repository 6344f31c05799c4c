"""What the simulated delivery service holds: submissions, their uploads and the case event logs.

Thread-safe: every read and write goes through one lock (each connection is served on its own
thread). ``Submission.summary`` never carries payload bytes or JWEs; tests read the decrypted parts
from the ``Submission`` objects ``get`` hands out (copies, safe to keep).
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

INCOMPLETE, SUBMITTED, ACCEPTED, REJECTED = "incomplete", "submitted", "accepted", "rejected"


@dataclass(frozen=True)
class Submission:
    """One submission as the delivery service knows it (a snapshot; the store keeps the original)."""

    submission_id: str
    destination_id: str
    case_id: str
    service_type: dict[str, Any]
    announced: tuple[str, ...]
    status: str = INCOMPLETE
    created_at: float = field(default_factory=time.time)
    submitted_at: float | None = None
    decided_at: float | None = None
    uploads: dict[str, str] = field(default_factory=dict, repr=False)  # attachment id -> JWE as sent
    encrypted_metadata: str | None = field(default=None, repr=False)
    encrypted_data: str | None = field(default=None, repr=False)
    metadata: dict[str, Any] | None = field(default=None, repr=False)  # decrypted, parsed
    data: bytes | None = field(default=None, repr=False)  # decrypted
    attachments: dict[str, bytes] = field(default_factory=dict, repr=False)  # decrypted, by id
    problems: tuple[dict[str, Any], ...] = ()  # of a rejection

    def summary(self) -> dict[str, Any]:
        """Ids, status, sizes, SHA-256 digests of the decrypted parts and times: no content."""
        return {"submissionId": self.submission_id, "destinationId": self.destination_id,
                "caseId": self.case_id, "status": self.status, "serviceType": self.service_type,
                "announcedAttachments": list(self.announced), "uploadedAttachments": sorted(self.uploads),
                "dataBytes": None if self.data is None else len(self.data),
                "attachmentBytes": {k: len(v) for k, v in self.attachments.items()},
                "dataSha256": None if self.data is None else hashlib.sha256(self.data).hexdigest(),
                "attachmentSha256": {k: hashlib.sha256(v).hexdigest() for k, v in self.attachments.items()},
                "createdAt": self.created_at, "submittedAt": self.submitted_at, "decidedAt": self.decided_at,
                "problems": list(self.problems)}


class SubmissionStore:
    """Submissions by id and the event log (SETs, oldest first) of every case."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._submissions: dict[str, Submission] = {}
        self._events: dict[str, list[str]] = {}

    def create(self, destination_id: str, service_type: dict[str, Any], announced: list[str],
               case_id: str | None = None) -> Submission:
        submission = Submission(str(uuid.uuid4()), destination_id, case_id or str(uuid.uuid4()),
                                dict(service_type), tuple(announced))
        with self._lock:
            self._submissions[submission.submission_id] = submission
            self._events.setdefault(submission.case_id, [])
        return submission

    def get(self, submission_id: str) -> Submission | None:
        with self._lock:
            return self._submissions.get(submission_id)

    def all(self, destination_id: str | None = None, status: str | None = None) -> list[Submission]:
        with self._lock:
            found = list(self._submissions.values())
        return sorted((s for s in found if destination_id in (None, s.destination_id)
                       and status in (None, s.status)), key=lambda s: s.created_at)

    def upload(self, submission_id: str, attachment_id: str, jwe: str) -> None:
        with self._lock:
            current = self._submissions[submission_id]
            self._submissions[submission_id] = replace(current, uploads={**current.uploads, attachment_id: jwe})

    def update(self, submission_id: str, expected_status: str, **changes: Any) -> Submission | None:
        """Apply ``changes`` if the submission is still in ``expected_status`` (else None): the
        check-and-set that makes a concurrent second submit or decision lose cleanly."""
        with self._lock:
            current = self._submissions.get(submission_id)
            if current is None or current.status != expected_status:
                return None
            updated = replace(current, **changes)
            self._submissions[submission_id] = updated
            return updated

    def case_known(self, case_id: str) -> bool:
        with self._lock:
            return case_id in self._events

    def append_event(self, case_id: str, token: str) -> None:
        with self._lock:
            self._events.setdefault(case_id, []).append(token)

    def events(self, case_id: str) -> list[str] | None:
        with self._lock:
            log = self._events.get(case_id)
            return None if log is None else list(log)

    def reset(self) -> None:
        with self._lock:
            self._submissions.clear()
            self._events.clear()
