"""The FIT-Connect simulator over real HTTP on loopback, driven with requests and an independent
JOSE library (jwcrypto): JWEs built here must open at the simulator, SETs signed there must verify
here, and every exchange must satisfy the official OpenAPI document (``violations`` stays empty)."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from jwcrypto import jwe, jwk, jws

from tests.clock import SteppedClock
from tests.standards import standards_path
from transport.fitconnect.simulator import (
    DestinationSpec,
    FitConnectSimulatorSettings,
    RunningFitConnectSimulator,
    serve,
)

DESTINATION = "7881dba9-4055-4854-8b6d-11ea5b7f3047"
INACTIVE = "2f59b8c6-3206-4734-aa21-a7b2a4d92f7a"
SERVICE = {"name": "Bauantrag", "identifier": "urn:de:fim:leika:leistung:99010003001006"}
ACCEPT = "https://schema.fitko.de/fit-connect/events/accept-submission"
REJECT = "https://schema.fitko.de/fit-connect/events/reject-submission"
SUBMIT = "https://schema.fitko.de/fit-connect/events/submit-submission"
CREATE = "https://schema.fitko.de/fit-connect/events/create-submission"


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One throwaway PKI per session (RSA 4096 keys take seconds each)."""
    return tmp_path_factory.mktemp("fit-connect-sim")


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def sim(state_dir: Path, clock: SteppedClock) -> Iterator[RunningFitConnectSimulator]:
    settings = FitConnectSimulatorSettings(
        state_dir=state_dir,
        destinations=(DestinationSpec(id=DESTINATION), DestinationSpec(id=INACTIVE, status="inactive")),
        openapi=standards_path("fit-connect/openapi/submission-api-1.1.3.yaml"),
        metadata_schema=standards_path("fit-connect/schemas/metadata/1.0.0/metadata.schema.json"),
        token_lifetime=60, clock=clock)
    with serve(settings) as running:
        yield running


class Sender:
    """A hand-written sender: just enough protocol to drive the simulator."""

    def __init__(self, sim: RunningFitConnectSimulator) -> None:
        self.sim = sim
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {self.token()}"

    def token(self) -> str:
        answer = requests.post(self.sim.token_url, data={"grant_type": "client_credentials",
                               "client_id": self.sim.client_id, "client_secret": self.sim.client_secret}, timeout=10)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["token_type"] == "Bearer" and body["expires_in"] == int(self.sim.app.tokens.lifetime)
        return str(body["access_token"])

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, self.sim.url + path, timeout=30, **kwargs)

    def encryption_key(self, destination: str = DESTINATION) -> jwk.JWK:
        document = self.call("GET", f"/v1/destinations/{destination}").json()
        key = self.call("GET", f"/v1/destinations/{destination}/keys/{document['encryptionKid']}").json()
        return jwk.JWK(**key)

    @staticmethod
    def encrypt(key: jwk.JWK, plaintext: bytes, alg: str = "RSA-OAEP-256") -> str:
        token = jwe.JWE(plaintext, protected=json.dumps({"alg": alg, "enc": "A256GCM", "kid": key["kid"]}))
        token.add_recipient(key)
        return str(token.serialize(compact=True))

    def create(self, attachments: list[str], destination: str = DESTINATION) -> dict[str, Any]:
        answer = self.call("POST", "/v1/submissions", json={
            "destinationId": destination, "announcedAttachments": attachments, "serviceType": SERVICE})
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    def upload(self, submission_id: str, attachment_id: str, token: str) -> requests.Response:
        return self.call("PUT", f"/v1/submissions/{submission_id}/attachments/{attachment_id}", data=token,
                         headers={"Content-Type": "application/jose"})

    def submit(self, submission_id: str, key: jwk.JWK, metadata: dict[str, Any], data: bytes,
               alg: str = "RSA-OAEP-256") -> requests.Response:
        return self.call("PUT", f"/v1/submissions/{submission_id}", json={
            "encryptedMetadata": self.encrypt(key, json.dumps(metadata).encode(), alg),
            "encryptedData": self.encrypt(key, data, alg)})

    def events(self, case_id: str) -> list[str]:
        answer = self.call("GET", f"/v1/cases/{case_id}/events")
        assert answer.status_code == 200, answer.text
        return list(answer.json()["eventLog"])


def metadata(data: bytes, attachments: dict[str, bytes]) -> dict[str, Any]:
    return {"contentStructure": {
        "data": {"hash": {"type": "sha512", "content": hashlib.sha512(data).hexdigest()},
                 "submissionSchema": {"schemaUri": "https://schema.fitko.de/fim/s00000121_1.0.0.schema.json",
                                      "mimeType": "application/xml"}},
        "attachments": [{"hash": {"type": "sha512", "content": hashlib.sha512(c).hexdigest()}, "purpose": "attachment",
                         "mimeType": "application/pdf", "attachmentId": a} for a, c in attachments.items()]}}


def verified(token: str, key: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, payload) of a SET verified with jwcrypto against ``key``."""
    signed = jws.JWS()
    signed.deserialize(token)
    signed.verify(jwk.JWK(**key), alg="PS512")
    return dict(signed.jose_header), json.loads(signed.payload)


def submitted(sender: Sender, data: bytes = b"<antrag>1</antrag>", attachment: bytes = b"%PDF-1.7 ...") -> dict[str, Any]:
    aid = str(uuid.uuid4())
    created = sender.create([aid])
    key = sender.encryption_key()
    assert sender.upload(created["submissionId"], aid, sender.encrypt(key, attachment)).status_code == 204
    answer = sender.submit(created["submissionId"], key, metadata(data, {aid: attachment}), data)
    assert answer.status_code == 202, answer.text
    return {**created, "attachmentId": aid}


def test_round_trip_create_upload_submit_events_and_receiver(sim: RunningFitConnectSimulator) -> None:
    sender = Sender(sim)
    assert sender.call("GET", "/v1/info").json()["version"] == {"major": 1, "minor": 1, "patch": 3}
    destination = sender.call("GET", f"/v1/destinations/{DESTINATION}")
    assert destination.headers["Cache-Control"] == "no-cache" and destination.json()["status"] == "active"
    key = sender.encryption_key()
    assert key["alg"] == "RSA-OAEP-256" and key.get("key_ops") == ["wrapKey"] and len(key["x5c"]) == 2
    aid, data, attachment = str(uuid.uuid4()), b"<antrag>\xc3\xa4</antrag>", bytes(range(256)) * 40
    created = sender.create([aid])
    first, second = sender.encrypt(key, b"first version"), sender.encrypt(key, attachment)
    assert sender.upload(created["submissionId"], aid, first).status_code == 204
    assert sender.upload(created["submissionId"], aid, second).status_code == 204  # re-upload overwrites
    answer = sender.submit(created["submissionId"], key, metadata(data, {aid: attachment}), data)
    assert answer.status_code == 202, answer.text
    assert answer.json()["attachments"] == [aid]

    stored = sim.store.get(created["submissionId"])
    assert stored.status == "submitted" and stored.data == data and stored.attachments == {aid: attachment}
    jwks = sender.call("GET", "/.well-known/jwks.json").json()["keys"]
    log = sender.events(created["caseId"])
    (h1, p1), (_, p2) = (verified(t, jwks[0]) for t in log)
    assert h1["typ"] == "secevent+jwt" and h1["alg"] == "PS512" and h1["kid"] == jwks[0]["kid"]
    assert list(p1["events"]) == [CREATE] and list(p2["events"]) == [SUBMIT]
    assert p2["iss"] == sim.url and p2["sub"] == f"submission:{created['submissionId']}"
    assert p2["txn"] == f"case:{created['caseId']}"
    tags = p2["events"][SUBMIT]["authenticationTags"]
    assert tags["attachments"] == {aid: second.split(".")[4]} and tags["data"] and tags["metadata"]

    pickup = sender.call("GET", "/v1/submissions", params={"destinationId": DESTINATION}).json()
    assert created["submissionId"] in [s["submissionId"] for s in pickup["submissions"]]
    fetched = sender.call("GET", f"/v1/submissions/{created['submissionId']}").json()
    assert fetched["encryptedData"].count(".") == 4
    download = sender.call("GET", f"/v1/submissions/{created['submissionId']}/attachments/{aid}")
    assert download.text == second and download.headers["Content-Type"].startswith("application/jose")

    sim.receiver_accept(created["submissionId"])
    signing = sender.call("GET", f"/v1/destinations/{DESTINATION}/keys/"
                                 f"{sim.app.service.keys[DESTINATION].signature.kid}").json()
    assert signing["alg"] == "PS512" and signing["key_ops"] == ["verify"]
    _, payload = verified(sender.events(created["caseId"])[-1], signing)
    assert list(payload["events"]) == [ACCEPT] and payload["iss"] == DESTINATION
    assert sim.store.get(created["submissionId"]).status == "accepted"
    assert sim.violations == []


def test_request_breaking_the_document_is_refused_and_recorded(sim: RunningFitConnectSimulator) -> None:
    sender = Sender(sim)
    answer = sender.call("POST", "/v1/submissions", json={"destinationId": "not-a-uuid", "serviceType": {}})
    assert answer.status_code == 400
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert "announcedAttachments" in answer.json()["detail"]
    assert [v.kind for v in sim.violations] == ["request"]
    assert sim.store.all() == []


def test_hash_mismatch_is_refused_and_the_submission_stays_incomplete(sim: RunningFitConnectSimulator) -> None:
    sender = Sender(sim)
    aid = str(uuid.uuid4())
    created = sender.create([aid])
    key = sender.encryption_key()
    assert sender.upload(created["submissionId"], aid, sender.encrypt(key, b"attachment")).status_code == 204
    answer = sender.submit(created["submissionId"], key, metadata(b"other data", {aid: b"attachment"}), b"data")
    assert answer.status_code == 422 and "data" in answer.json()["detail"]
    answer = sender.submit(created["submissionId"], key, metadata(b"data", {aid: b"tampered"}), b"data")
    assert answer.status_code == 422 and aid in answer.json()["detail"]
    assert sim.store.get(created["submissionId"]).status == "incomplete"
    assert sim.violations == []


def test_jwe_with_another_algorithm_is_refused(sim: RunningFitConnectSimulator) -> None:
    sender = Sender(sim)
    created = sender.create([])
    key = sender.encryption_key()
    answer = sender.submit(created["submissionId"], key, metadata(b"d", {}), b"d", alg="RSA-OAEP")
    assert answer.status_code == 422 and "RSA-OAEP-256" in answer.json()["detail"]
    assert sim.violations == []


def test_missing_attachment_and_double_submit_are_refused(sim: RunningFitConnectSimulator) -> None:
    sender = Sender(sim)
    aid = str(uuid.uuid4())
    created = sender.create([aid])
    key = sender.encryption_key()
    answer = sender.submit(created["submissionId"], key, metadata(b"d", {}), b"d")
    assert answer.status_code == 422 and answer.json()["type"].endswith("missing-attachments")
    assert sender.upload(created["submissionId"], str(uuid.uuid4()), sender.encrypt(key, b"x")).status_code == 422
    assert sender.upload(created["submissionId"], aid, sender.encrypt(key, b"x")).status_code == 204
    assert sender.submit(created["submissionId"], key, metadata(b"d", {aid: b"x"}), b"d").status_code == 202
    again = sender.submit(created["submissionId"], key, metadata(b"d", {aid: b"x"}), b"d")
    assert again.status_code == 422 and again.json()["type"].endswith("submission-closed")
    assert [json.loads(_b64(t.split(".")[1]))["events"] for t in sender.events(created["caseId"])][-1].keys() == {SUBMIT}
    assert sim.violations == []


def test_inactive_destination_refuses_new_submissions(sim: RunningFitConnectSimulator) -> None:
    sender = Sender(sim)
    answer = sender.call("POST", "/v1/submissions", json={
        "destinationId": INACTIVE, "announcedAttachments": [], "serviceType": SERVICE})
    assert answer.status_code == 422
    assert sender.call("GET", f"/v1/destinations/{uuid.uuid4()}").status_code == 404
    assert sim.violations == []


def test_tokens_expire_and_can_be_invalidated(sim: RunningFitConnectSimulator, clock: SteppedClock) -> None:
    sender = Sender(sim)
    assert sender.call("GET", f"/v1/destinations/{DESTINATION}").status_code == 200
    clock.advance(61)
    expired = sender.call("GET", f"/v1/destinations/{DESTINATION}")
    assert expired.status_code == 401 and expired.headers["Content-Type"] == "application/problem+json"
    sender.http.headers["Authorization"] = f"Bearer {sender.token()}"
    assert sender.call("GET", f"/v1/destinations/{DESTINATION}").status_code == 200
    sim.invalidate_tokens()
    assert sender.call("GET", f"/v1/destinations/{DESTINATION}").status_code == 401
    assert requests.get(f"{sim.url}/v1/destinations/{DESTINATION}", timeout=10).status_code == 401
    wrong = requests.post(sim.token_url, data={"grant_type": "client_credentials", "client_id": sim.client_id,
                                               "client_secret": "wrong"}, timeout=10)
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert sim.violations == []


def test_rate_limit_answers_429_with_retry_after_then_recovers(sim: RunningFitConnectSimulator) -> None:
    sender = Sender(sim)
    sim.faults.update({"retry_after": 7, "next_429": 2})
    statuses = [sender.call("GET", f"/v1/destinations/{DESTINATION}") for _ in range(3)]
    assert [r.status_code for r in statuses] == [429, 429, 200]
    assert statuses[0].headers["Retry-After"] == "7"
    assert sim.violations == []


def test_outage_window_refuses_then_drops_then_ends(sim: RunningFitConnectSimulator, clock: SteppedClock) -> None:
    sender = Sender(sim)
    sim.faults.set_outage(start=10, duration=30)
    assert sender.call("GET", "/v1/info").status_code == 200
    clock.advance(10)
    refused = sender.call("GET", "/v1/info")
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    clock.advance(30)
    assert sender.call("GET", "/v1/info").status_code == 200
    sim.faults.set_outage(start=0, duration=30, mode="drop")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{sim.url}/v1/info", timeout=10)
    clock.advance(30)
    assert requests.get(f"{sim.url}/v1/info", timeout=10).status_code == 200


def test_receiver_reject_and_posted_events(sim: RunningFitConnectSimulator) -> None:
    sender = Sender(sim)
    rejected, posted = submitted(sender), submitted(sender)
    problems = [{"type": "https://schema.fitko.de/fit-connect/events/problems/an-example", "title": "Beispiel",
                 "detail": "Nur ein Beispiel.", "instance": "metadata"}]
    sim.receiver_reject(rejected["submissionId"], problems)
    payload = json.loads(_b64(sender.events(rejected["caseId"])[-1].split(".")[1]))
    assert payload["events"] == {REJECT: {"problems": problems}}
    assert sim.store.get(rejected["submissionId"]).status == "rejected"

    signing_key = jwk.JWK.from_pem(sim.signature_key_path(DESTINATION).read_bytes())
    kid = sim.app.service.keys[DESTINATION].signature.kid
    case = posted["caseId"]

    def event(key: jwk.JWK, event_uri: str, iss: str = DESTINATION) -> str:
        claims = {"$schema": "https://schema.fitko.de/fit-connect/set-payload/1.0.0/set-payload.schema.json",
                  "jti": str(uuid.uuid4()), "iss": iss, "iat": 1700000000,
                  "sub": f"submission:{posted['submissionId']}", "txn": f"case:{case}", "events": {event_uri: {}}}
        token = jws.JWS(json.dumps(claims).encode())
        token.add_signature(key, alg="PS512", protected=json.dumps({"typ": "secevent+jwt", "alg": "PS512", "kid": kid}))
        return str(token.serialize(compact=True))

    def post(token: str) -> requests.Response:
        return sender.call("POST", f"/v1/cases/{case}/events", data=token, headers={"Content-Type": "application/jose"})

    stranger = jwk.JWK.generate(kty="RSA", size=2048)
    assert post(event(stranger, ACCEPT)).status_code == 422  # not the destination's signature
    assert post(event(signing_key, ACCEPT, iss=str(uuid.uuid4()))).status_code == 422
    assert post(event(signing_key, ACCEPT)).status_code == 204
    assert post(event(signing_key, REJECT)).status_code == 409  # accepted is final
    assert sim.store.get(posted["submissionId"]).status == "accepted"
    assert sim.violations == []


def test_auto_accept_and_control_api(state_dir: Path) -> None:
    settings = FitConnectSimulatorSettings(state_dir=state_dir, destinations=(DestinationSpec(id=DESTINATION),),
                                           auto_accept=True)
    with serve(settings) as sim:
        sender = Sender(sim)
        done = submitted(sender)
        assert sim.store.get(done["submissionId"]).status == "accepted"
        listed = requests.get(f"{sim.url}/_simulator/submissions", timeout=10).json()
        assert [s["status"] for s in listed] == ["accepted"] and "data" not in listed[0]
        changed = requests.post(f"{sim.url}/_simulator/faults", json={"next_429": 1}, timeout=10).json()
        assert changed["next_429"] == 1
        assert sender.call("GET", "/v1/info").status_code == 429
        assert requests.post(f"{sim.url}/_simulator/tokens/invalidate", timeout=10).status_code == 204
        assert sender.call("GET", f"/v1/destinations/{DESTINATION}").status_code == 401


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_flawed_key_is_served_without_counting_as_a_violation(state_dir: Path) -> None:
    short = "0f3b5d3e-5a52-4a8e-9a57-3f7f1c1d2e10"
    settings = FitConnectSimulatorSettings(
        state_dir=state_dir, destinations=(DestinationSpec(id=short, key_flaw="short"),),
        openapi=standards_path("fit-connect/openapi/submission-api-1.1.3.yaml"))
    with serve(settings) as sim:
        key = Sender(sim).encryption_key(short)
        assert len(key["n"]) < 683  # under 4096 bits: the JWK schema's minLength
        assert sim.violations == []


def test_parts_of_several_megabytes_are_decrypted_and_stored(sim: RunningFitConnectSimulator) -> None:
    """joserfc refuses ciphertexts above 64 KiB unless told otherwise: a real application (a scanned
    passport, a PDF) is megabytes."""
    data = b"<antrag>" + b"x" * (1024 * 1024) + b"</antrag>"
    attachment = bytes(range(256)) * (12 * 1024 * 1024 // 256)  # 12 MiB
    created = submitted(Sender(sim), data=data, attachment=attachment)
    stored = sim.store.get(created["submissionId"])
    assert stored is not None and stored.status == "submitted"
    assert stored.data == data and list(stored.attachments.values()) == [attachment]
