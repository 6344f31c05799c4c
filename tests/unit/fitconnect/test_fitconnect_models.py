"""The spec's own examples (../shared/standards/fit-connect/examples) parse with the adapter's models,
and every example file is either mapped to a model here or named as receiver-side (not read by the
sender), so a new example cannot go unnoticed."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from tests.standards import standards_path
from transport.fitconnect.models import (
    JWK,
    JWKS,
    Destination,
    EventLog,
    Info,
    Problem,
    SetPayload,
    SubmissionCreated,
    SubmissionReduced,
)

EXAMPLES = "fit-connect/examples/submission-api-1.1.3"
MODELS: dict[str, type[BaseModel]] = {
    "components.examples.Destination.json": Destination,
    "components.examples.PublicDestination.json": Destination,
    "components.examples.Info.json": Info,
    "components.examples.JWKVerify.json": JWK,
    "components.examples.JWKWrapKey.json": JWK,
    "components.examples.SubmissionCreated.json": SubmissionCreated,
    "paths.v1.cases.caseId.events.get.200.example.json": EventLog,
    "paths.v1.submissions.submissionId.put.202.example.json": SubmissionReduced,
    "paths.well-known.jwks.json.get.200.example.json": JWKS,
}
# what the sender writes (checked against the OpenAPI elsewhere) or only a receiver reads
NOT_READ_BY_THE_SENDER = {
    "components.examples.CreateSubmission.json", "components.examples.Submission.json",
    "components.examples.EncryptedMessage.jwe.txt", "paths.v1.submissions.get.200.example.json",
}


def _examples() -> Path:
    return standards_path(EXAMPLES)


def test_every_example_file_is_accounted_for() -> None:
    names = {p.name for p in _examples().iterdir()}
    assert names == set(MODELS) | NOT_READ_BY_THE_SENDER


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_spec_examples_parse(name: str) -> None:
    doc = json.loads((_examples() / name).read_text(encoding="utf-8"))
    parsed = MODELS[name].model_validate(doc)
    # what the adapter relies on is there, under its Python name
    if isinstance(parsed, Destination):
        assert parsed.status == "active" and parsed.encryption_kid and parsed.services[0].identifier
    if isinstance(parsed, EventLog):
        assert len(parsed.event_log) == parsed.count == 2


def test_the_example_set_payloads_parse() -> None:
    folder = standards_path("fit-connect/examples/set")
    payloads = []
    for path in sorted(folder.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        payloads.append(SetPayload.model_validate(doc.get("payload", doc)))
    assert {p.event for p in payloads} == {"create-submission", "submit-submission", "reject-submission"}
    reject = next(p for p in payloads if p.event == "reject-submission")
    assert reject.problems[0].title == "Nur ein Beispiel" and reject.problems[0].instance == "metadata"


def test_the_event_log_examples_tokens_carry_set_payloads() -> None:
    log = EventLog.model_validate(json.loads((_examples() / "paths.v1.cases.caseId.events.get.200.example.json")
                                             .read_text(encoding="utf-8")))
    for token in log.event_log:
        header_b64, payload_b64, _ = token.split(".")
        header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
        payload = SetPayload.model_validate_json(base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4)))
        assert header["typ"] == "secevent+jwt" and header["alg"] == "PS512"
        assert payload.event == "create-submission"


def test_a_set_with_two_events_is_refused() -> None:
    with pytest.raises(ValueError, match="exactly one event"):
        SetPayload.model_validate({"jti": "x", "iss": "i", "iat": 1622796532, "sub": "submission:x",
                                   "events": {"a": {}, "b": {}}})


def test_problem_defaults() -> None:
    assert Problem.model_validate({"title": "t"}).type == "about:blank"
