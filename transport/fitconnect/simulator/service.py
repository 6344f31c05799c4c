"""The delivery service's rules, apart from HTTP: destinations, submissions, submit checks, events.

Each refusal is a ``Problem`` (RFC 7807 status, title, detail) the WSGI layer answers as
``application/problem+json``. Submit opens every part with the destination's private key, checks
the metadata (schema when configured) and ALWAYS the SHA-512 hashes of ``contentStructure``
against the decrypted parts; only then is the submission ``submitted`` and a SET issued.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from transport.fitconnect.simulator import jose
from transport.fitconnect.simulator.pki import DestinationKeys, SimulatorPki
from transport.fitconnect.simulator.settings import DestinationSpec, FitConnectSimulatorSettings
from transport.fitconnect.simulator.store import (
    ACCEPTED,
    INCOMPLETE,
    REJECTED,
    SUBMITTED,
    Submission,
    SubmissionStore,
)

PROBLEM_BASE = "https://schema.fitko.de/fit-connect/submission-api/problems/"
_DECISIONS = {jose.ACCEPT: ACCEPTED, jose.REJECT: REJECTED}


class Problem(Exception):
    """An answer other than success: HTTP ``status`` with an RFC 7807 body."""

    def __init__(self, status: int, slug: str, title: str, detail: str = "") -> None:
        super().__init__(f"{status} {slug}: {detail or title}")
        self.status, self.slug, self.title, self.detail = status, slug, title, detail

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": PROBLEM_BASE + self.slug, "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        return body


class DeliveryService:
    """Destinations with their keys, the submission store, and the SETs the service issues."""

    def __init__(self, settings: FitConnectSimulatorSettings) -> None:
        self.settings = settings
        self.pki = SimulatorPki(settings.state_dir)
        self.destinations: dict[str, DestinationSpec] = {d.id: d for d in settings.destinations}
        self.keys: dict[str, DestinationKeys] = {d.id: self.pki.destination(d) for d in settings.destinations}
        self.store = SubmissionStore()
        self.base_url = ""  # set once the server is bound: the ``iss`` of the service's SETs
        self._metadata_schema: Draft202012Validator | None = None
        if settings.metadata_schema is not None:
            self._metadata_schema = Draft202012Validator(_load_json(settings.metadata_schema),
                                                         format_checker=Draft202012Validator.FORMAT_CHECKER)

    # ------------------------------------------------------------------ documents

    def destination_document(self, destination_id: str) -> dict[str, Any]:
        spec = self._destination(destination_id)
        return {"destinationId": spec.id, "status": spec.status,
                "services": [{"identifier": s.identifier, "regions": list(s.regions),
                              "submissionSchemas": [{"schemaUri": x.schema_uri, "mimeType": x.mime_type}
                                                    for x in s.submission_schemas]} for s in spec.services],
                "encryptionKid": self.keys[spec.id].encryption.kid,
                "metadataVersions": list(spec.metadata_versions)}

    def key_document(self, destination_id: str, kid: str) -> tuple[dict[str, Any], bool]:
        """(JWK, deliberately flawed) for one of the destination's keys."""
        keys = self.keys[self._destination(destination_id).id]
        if kid == keys.encryption.kid:
            return keys.encryption_jwk(), keys.flaw is not None
        if kid == keys.signature.kid:
            return keys.signature_jwk(), False
        raise Problem(404, "key-not-found", "Key not found", "no key with this kid at this destination")

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.pki.delivery_service.public_jwk("PS512", ["verify"])]}

    # ------------------------------------------------------------------ sender side

    def create(self, body: dict[str, Any]) -> Submission:
        spec = self._destination(str(body.get("destinationId", "")))
        if spec.status != "active":
            raise Problem(422, "destination-not-active", "Destination not active",
                          f"the destination is {spec.status}")
        service = body.get("serviceType") or {}
        if service.get("identifier") not in {s.identifier for s in spec.services}:
            raise Problem(422, "service-not-offered", "Service not offered",
                          "the destination does not offer this serviceType.identifier")
        announced = [str(a) for a in body.get("announcedAttachments") or []]
        if len(set(announced)) != len(announced):
            raise Problem(422, "duplicate-attachment", "Attachment announced twice")
        case_id = body.get("caseId")
        if case_id is not None and not self.store.case_known(str(case_id)):
            raise Problem(404, "case-not-found", "Case not found", "caseId names no known case")
        submission = self.store.create(spec.id, service, announced, case_id)
        self._issue(submission, jose.CREATE)
        return submission

    def upload(self, submission_id: str, attachment_id: str, jwe_text: str) -> None:
        submission = self.store.get(submission_id)
        if submission is None:  # the document allows no 404 here
            raise Problem(422, "submission-not-found", "Submission not found")
        if attachment_id not in submission.announced:
            raise Problem(422, "attachment-not-announced", "Attachment not announced",
                          "upload attachments under their announced ids")
        if submission.status != INCOMPLETE:
            raise Problem(422, "submission-closed", "Submission already submitted")
        self.store.upload(submission_id, attachment_id, jwe_text.strip())

    def submit(self, submission_id: str, body: dict[str, Any]) -> Submission:
        submission = self.store.get(submission_id)
        if submission is None:
            raise Problem(404, "submission-not-found", "Submission not found")
        if submission.status != INCOMPLETE:
            raise Problem(422, "submission-closed", "Submission already submitted",
                          f"the submission is {submission.status}")
        missing = [a for a in submission.announced if a not in submission.uploads]
        if missing:
            raise Problem(422, "missing-attachments", "Announced attachments missing",
                          f"{len(missing)} announced attachment(s) not uploaded")
        keys = self.keys[submission.destination_id]
        key, kid = keys.encryption.key, keys.encryption.kid
        encrypted_metadata, encrypted_data = body.get("encryptedMetadata"), body.get("encryptedData")
        if not isinstance(encrypted_metadata, str):
            raise Problem(400, "bad-request", "encryptedMetadata missing")
        try:
            raw_metadata = jose.decrypt(encrypted_metadata, key, kid, "metadata")
            data = jose.decrypt(encrypted_data, key, kid, "data") if isinstance(encrypted_data, str) else None
            attachments = {aid: jose.decrypt(token, key, kid, f"attachment {aid}")
                           for aid, token in submission.uploads.items()}
        except jose.JoseRefused as exc:
            raise Problem(422, "encryption-refused", "Encryption not acceptable", str(exc)) from None
        metadata = self._metadata(raw_metadata)
        _check_hashes(metadata, data, attachments)
        updated = self.store.update(
            submission_id, INCOMPLETE, status=SUBMITTED, submitted_at=time.time(),
            encrypted_metadata=encrypted_metadata, encrypted_data=encrypted_data, metadata=metadata,
            data=data, attachments=attachments)
        if updated is None:  # a concurrent submit won
            raise Problem(422, "submission-closed", "Submission already submitted")
        tags: dict[str, Any] = {"metadata": jose.authentication_tag(encrypted_metadata),
                                "attachments": {a: jose.authentication_tag(t) for a, t in submission.uploads.items()}}
        if isinstance(encrypted_data, str):
            tags["data"] = jose.authentication_tag(encrypted_data)
        self._issue(updated, jose.SUBMIT, {"authenticationTags": tags})
        return updated

    def events(self, case_id: str) -> list[str]:
        log = self.store.events(case_id)
        if log is None:
            raise Problem(404, "case-not-found", "Case not found")
        return log

    # ------------------------------------------------------------------ receiver side

    def receiver_event(self, case_id: str, token: str) -> Submission:
        """Take an accept/reject SET signed by the destination (POST /v1/cases/{caseId}/events)."""
        if not self.store.case_known(case_id):
            raise Problem(404, "case-not-found", "Case not found")
        try:
            _, claims = jose.unverified_set(token)
            submission = self._submission_of(claims, case_id)
            signer = self.keys[submission.destination_id].signature
            payload = jose.verify_set(token, signer.key.public_key(), signer.kid)
        except jose.JoseRefused as exc:
            raise Problem(422, "invalid-set", "Security Event Token invalid", str(exc)) from None
        if payload.get("iss") != submission.destination_id:
            raise Problem(422, "invalid-set", "Security Event Token invalid", "iss is not the destination id")
        (event, detail), = payload["events"].items()
        status = _DECISIONS.get(event)
        if status is None:
            raise Problem(422, "invalid-set", "Security Event Token invalid", "event not accepted from receivers")
        problems = tuple(detail.get("problems") or ()) if isinstance(detail, dict) else ()
        updated = self.store.update(submission.submission_id, SUBMITTED, status=status,
                                    decided_at=time.time(), problems=problems)
        if updated is None:
            raise Problem(409, "invalid-state-transition", "Invalid state transition",
                          f"the submission is {self.store.get(submission.submission_id).status}")  # type: ignore[union-attr]
        self.store.append_event(case_id, token)
        return updated

    def receiver_set(self, submission_id: str, event: str, detail: dict[str, Any] | None = None) -> str:
        """A SET about the submission signed with its destination's signature key (the receiver)."""
        submission = self.store.get(submission_id)
        if submission is None:
            raise KeyError(submission_id)
        signer = self.keys[submission.destination_id].signature
        return jose.sign_set(signer.key, signer.kid, issuer=submission.destination_id,
                             submission_id=submission_id, case_id=submission.case_id, event=event, detail=detail)

    # ------------------------------------------------------------------ helpers

    def _destination(self, destination_id: str) -> DestinationSpec:
        spec = self.destinations.get(destination_id)
        if spec is None:
            raise Problem(404, "destination-not-found", "Destination not found")
        return spec

    def _submission_of(self, claims: dict[str, Any], case_id: str) -> Submission:
        sub, txn = str(claims.get("sub", "")), claims.get("txn")
        submission = self.store.get(sub.removeprefix("submission:")) if sub.startswith("submission:") else None
        if submission is None or txn != f"case:{case_id}" or submission.case_id != case_id:
            raise jose.JoseRefused("sub/txn name no submission of this case")
        return submission

    def _issue(self, submission: Submission, event: str, detail: dict[str, Any] | None = None) -> None:
        signer = self.pki.delivery_service
        token = jose.sign_set(signer.key, signer.kid, issuer=self.base_url, submission_id=submission.submission_id,
                              case_id=submission.case_id, event=event, detail=detail)
        self.store.append_event(submission.case_id, token)

    def _metadata(self, raw: bytes) -> dict[str, Any]:
        try:
            metadata = json.loads(raw)
        except ValueError:
            raise Problem(422, "metadata-invalid", "Metadata invalid", "metadata is not JSON") from None
        if not isinstance(metadata, dict):
            raise Problem(422, "metadata-invalid", "Metadata invalid", "metadata is not a JSON object")
        if self._metadata_schema is not None:
            errors = sorted(self._metadata_schema.iter_errors(metadata), key=lambda e: list(e.absolute_path))
            if errors:
                where = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.validator}"
                                  for e in errors[:5])
                raise Problem(422, "metadata-invalid", "Metadata invalid", f"against the schema: {where}")
        return metadata


def _check_hashes(metadata: dict[str, Any], data: bytes | None, attachments: dict[str, bytes]) -> None:
    """contentStructure's SHA-512 hashes must match the decrypted data and every attachment."""
    structure = metadata.get("contentStructure")
    if not isinstance(structure, dict):
        raise Problem(422, "hash-mismatch", "Hash check failed", "metadata has no contentStructure")
    declared = structure.get("data")
    if (data is None) != (declared is None):
        raise Problem(422, "hash-mismatch", "Hash check failed", "data and contentStructure.data disagree")
    if data is not None and not _matches(declared, data):
        raise Problem(422, "hash-mismatch", "Hash check failed", "data: SHA-512 does not match")
    listed = {str(a.get("attachmentId")): a for a in structure.get("attachments") or [] if isinstance(a, dict)}
    if set(listed) != set(attachments):
        raise Problem(422, "hash-mismatch", "Hash check failed",
                      "contentStructure.attachments does not list exactly the uploaded attachments")
    for aid, content in attachments.items():
        if not _matches(listed[aid], content):
            raise Problem(422, "hash-mismatch", "Hash check failed", f"attachment {aid}: SHA-512 does not match")


def _matches(entry: Any, content: bytes) -> bool:
    digest = entry.get("hash") if isinstance(entry, dict) else None
    return (isinstance(digest, dict) and digest.get("type") == "sha512"
            and digest.get("content") == hashlib.sha512(content).hexdigest())


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
