"""The fit-connect profile end to end against a loopback Submission API: configuration, what is
uploaded (JWEs that jwcrypto decrypts, metadata valid against the official schema with the right
hashes), the re-send path, the event log as status, and every refusal before anything is uploaded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from jsonschema import Draft202012Validator
from jwcrypto import jwe as jc_jwe
from jwcrypto import jwk as jc_jwk

from adapters.base import Adapter, StatusFollowUp
from adapters.fitconnect import FitConnectAdapter, FitConnectAddress, attachment_ids
from adapters.registry import profile_class
from hub.errors import (
    ConfigError,
    ContentTooLarge,
    DirectoryError,
    MalformedAnswer,
    MessageError,
    SecurityError,
    TransportError,
)
from tests.standards import standards_path
from tests.unit.fitconnect.conftest import (
    DEST,
    DEST_SIG_KID,
    ENC_KID,
    Pki,
    adapter_section,
    context,
    delivery,
    destination_doc,
    jwk,
)
from tests.unit.fitconnect.fake_api import FakeApi, set_payload, sign_set


def _decrypt(pki: Pki, token: str) -> bytes:
    key = jc_jwk.JWK.from_pem(pki.enc_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    received = jc_jwe.JWE()
    received.deserialize(token, key=key)
    return bytes(received.payload)


def _uploads(api: FakeApi) -> list[tuple[str, str]]:
    return [(c[0], c[1]) for c in api.log if c[0] in ("POST", "PUT") and c[1] != "/token"]


# --------------------------------------------------------------------------- configuration


def test_the_profile_is_registered_and_has_the_capabilities(adapter: FitConnectAdapter) -> None:
    assert profile_class("fit-connect") is FitConnectAdapter
    assert isinstance(adapter, StatusFollowUp)
    as_protocol: Adapter = adapter
    assert as_protocol.name == "fc"


@pytest.mark.parametrize(("change", "key"), [
    ({"client_secret_file": "secret.txt"}, "adapters.fc"),  # both secrets
    ({"client_secret_env": None}, "adapters.fc"),  # neither
    ({"key_cache_ttl": "10"}, "adapters.fc.key_cache_ttl"),
    ({"surprise": 1}, "adapters.fc.surprise"),
    ({"submission_api": "ftp://x"}, "adapters.fc.submission_api"),
    ({"trust_anchors": []}, "adapters.fc.trust_anchors"),
])
def test_bad_settings_name_the_key(api: FakeApi, pki: Pki, change: dict[str, Any], key: str) -> None:
    section = {k: v for k, v in (adapter_section(api, pki) | change).items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        FitConnectAdapter.from_config("fc", section, context())
    assert key in str(caught.value)


def test_the_secret_comes_from_the_environment_or_a_file_and_is_never_shown(api: FakeApi, pki: Pki,
                                                                             tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FC_SECRET is not set"):
        FitConnectAdapter.from_config("fc", adapter_section(api, pki), context(environ={}))
    (tmp_path / "secret.txt").write_text("from-a-file\n")
    section = adapter_section(api, pki) | {"client_secret_file": "secret.txt"}
    del section["client_secret_env"]
    built = FitConnectAdapter.from_config("fc", section, context(base_dir=tmp_path))
    try:
        built.check()
        assert api.calls("POST", "/token")[0][3].endswith(b"client_secret=from-a-file")
        assert "from-a-file" not in repr(built.client) and "from-a-file" not in repr(built.settings)
    finally:
        built.close()


@pytest.mark.parametrize("value", ["s3cret-pasted-here!", "9LIVES", "FC SECRET"])
def test_client_secret_env_must_name_a_variable_and_is_never_echoed(api: FakeApi, pki: Pki, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        FitConnectAdapter.from_config("fc", adapter_section(api, pki, client_secret_env=value), context())
    assert "adapters.fc.client_secret_env" in str(caught.value) and value not in str(caught.value)


def test_a_missing_trust_anchor_file_names_the_key(api: FakeApi, pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"adapters\.fc\.trust_anchors"):
        FitConnectAdapter.from_config("fc", adapter_section(api, pki) | {"trust_anchors": ["nope.pem"]},
                                      context(base_dir=tmp_path))


def test_addressing_is_a_destination_uuid(adapter: FitConnectAdapter) -> None:
    assert adapter.addressing("azr:1", "ABH", {"destination_id": DEST.upper()}) == FitConnectAddress(DEST)
    with pytest.raises(ConfigError, match=r"authorities\[azr:1\]\.destination_id"):
        adapter.addressing("azr:1", "ABH", {"destination_id": "not-a-uuid"})
    with pytest.raises(ConfigError, match=r"authorities\[azr:1\]\.certificate"):
        adapter.addressing("azr:1", "ABH", {"destination_id": DEST, "certificate": "x.pem"})


# --------------------------------------------------------------------------- delivering


def test_a_delivery_uploads_what_the_destination_can_decrypt_and_verify(api: FakeApi, pki: Pki,
                                                                       adapter: FitConnectAdapter) -> None:
    d = delivery()
    adapter.prepare(d)
    tid = adapter.new_transport_id(d)
    steps: list[str] = []
    receipt = adapter.deliver(d, tid, ready=lambda: steps.append(f"ready after {len(_uploads(api))} uploads"))
    submission_id, case_id, _ = tid.split(":")
    assert receipt.transport_message_id == tid and not receipt.accepted_on_resend
    assert steps == ["ready after 1 uploads"]  # only the create; nothing of the content before ready()
    stored = api.submissions[submission_id]
    assert stored["case"] == case_id
    create = stored["create"]
    assert create["announcedAttachments"] == attachment_ids(d) and len(set(create["announcedAttachments"])) == 2
    assert create["serviceType"] == {"name": "Aufenthaltstitel", "identifier": d.service}
    for aid, part in zip(attachment_ids(d), d.content.attachments, strict=True):
        assert _decrypt(pki, stored["attachments"][aid]) == part.data
    assert _decrypt(pki, stored["submit"]["encryptedData"]) == d.content.message.data
    metadata = json.loads(_decrypt(pki, stored["submit"]["encryptedMetadata"]))
    schema = json.loads(standards_path("fit-connect/schemas/metadata/1.0.0/metadata.schema.json").read_text("utf-8"))
    Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(metadata)
    assert metadata["contentStructure"]["data"]["hash"]["content"] == hashlib.sha512(d.content.message.data).hexdigest()
    assert [a["attachmentId"] for a in metadata["contentStructure"]["attachments"]] == attachment_ids(d)
    upload = api.calls("PUT", rf"/v1/submissions/{submission_id}/attachments/.*")[0]
    assert upload[2]["Content-Type"] == "application/jose"


def test_attachment_ids_are_stable_per_message_and_differ_between_messages() -> None:
    assert attachment_ids(delivery()) == attachment_ids(delivery())
    assert attachment_ids(delivery()) != attachment_ids(delivery(message_id="another"))
    assert attachment_ids(delivery(attachments=())) == []


def test_a_resend_after_a_submit_uploads_nothing(api: FakeApi, adapter: FitConnectAdapter) -> None:
    d = delivery()
    tid = adapter.new_transport_id(d)
    adapter.deliver(d, tid)
    before = len(_uploads(api))
    receipt = adapter.deliver(d, tid, resend=True)
    assert receipt.accepted_on_resend and len(_uploads(api)) == before


def test_a_resend_before_the_submit_resumes_the_same_submission(api: FakeApi, adapter: FitConnectAdapter) -> None:
    d = delivery()
    tid = adapter.new_transport_id(d)
    submission_id = tid.split(":")[0]
    api.fail_next("PUT", rf"/v1/submissions/{submission_id}", 503, b"down")
    with pytest.raises(MalformedAnswer.__mro__[1]):  # EndpointUnavailable: transient
        adapter.deliver(d, tid)
    receipt = adapter.deliver(d, tid, resend=True)
    assert not receipt.accepted_on_resend
    assert len(api.submissions) == 1 and api.submissions[submission_id]["submit"] is not None
    assert len(api.calls("PUT", rf"/v1/submissions/{submission_id}/attachments/.*")) == 4  # re-uploaded


def _refused_before_upload(api: FakeApi, adapter: FitConnectAdapter, error: type[Exception], reason: str) -> None:
    d = delivery()
    with pytest.raises(error) as caught:
        adapter.prepare(d)
    assert getattr(caught.value, "reason", None) == reason and not getattr(caught.value, "transient", True)
    assert _uploads(api) == []


@pytest.mark.parametrize("kind", ["small", "no_x5c", "untrusted", "alg"])
def test_a_refused_key_stops_the_delivery_before_anything_is_uploaded(api: FakeApi, pki: Pki,
                                                                     adapter: FitConnectAdapter, kind: str) -> None:
    doc = {"small": lambda: jwk(pki.small_key, [pki.small_cert, pki.intermediate], kid=ENC_KID),
           "no_x5c": lambda: jwk(pki.enc_key, [], kid=ENC_KID),
           "untrusted": lambda: jwk(pki.enc_key, [pki.mallory_cert, pki.mallory_root], kid=ENC_KID),
           "alg": lambda: jwk(pki.enc_key, [pki.enc_cert, pki.intermediate], kid=ENC_KID, alg="RSA1_5")}[kind]()
    api.keys[(DEST, ENC_KID)] = doc
    reasons = {"small": "fitconnect_key_too_small", "no_x5c": "fitconnect_key_x5c",
               "untrusted": "fitconnect_key_untrusted", "alg": "fitconnect_key_alg"}
    _refused_before_upload(api, adapter, SecurityError, reasons[kind])


@pytest.mark.parametrize("status", ["inactive", "created"])
def test_a_destination_not_active_yet_or_for_now_is_transient(api: FakeApi, adapter: FitConnectAdapter,
                                                              status: str) -> None:
    api.destinations[DEST] = destination_doc(status=status)
    with pytest.raises(DirectoryError) as caught:
        adapter.prepare(delivery())
    assert caught.value.transient and caught.value.reason == "fitconnect_destination_inactive"
    assert not isinstance(caught.value, TransportError)  # the breaker does not count one paused destination
    assert _uploads(api) == []


def test_a_decommissioned_destination_is_refused(api: FakeApi, adapter: FitConnectAdapter) -> None:
    api.destinations[DEST] = destination_doc(status="decommissioned")
    _refused_before_upload(api, adapter, DirectoryError, "fitconnect_destination_decommissioned")


def test_a_destination_without_metadata_1_0_0_is_refused(api: FakeApi, adapter: FitConnectAdapter) -> None:
    api.destinations[DEST] = destination_doc() | {"metadataVersions": ["2.0.0", "2.1.0"]}
    _refused_before_upload(api, adapter, DirectoryError, "fitconnect_metadata_version")


def test_a_service_that_is_no_leika_id_is_refused_naming_the_setting(api: FakeApi, adapter: FitConnectAdapter) -> None:
    api.destinations[DEST] = destination_doc(service="urn:de:fim:leika:leistung:9901000300100")  # 13 digits
    with pytest.raises(MessageError) as caught:
        adapter.prepare(delivery(service="urn:de:fim:leika:leistung:9901000300100"))
    assert caught.value.reason == "fitconnect_service_invalid" and not caught.value.transient
    assert "set `service` of adapter 'fc'" in str(caught.value)
    assert api.log == []


def test_a_destination_without_the_service_is_refused(api: FakeApi, adapter: FitConnectAdapter) -> None:
    api.destinations[DEST] = destination_doc(service="urn:de:fim:leika:leistung:99999999999999")
    _refused_before_upload(api, adapter, DirectoryError, "fitconnect_service_unavailable")


def test_an_unknown_destination_is_refused(api: FakeApi, adapter: FitConnectAdapter) -> None:
    del api.destinations[DEST]
    _refused_before_upload(api, adapter, DirectoryError, "fitconnect_destination_unknown")


def test_oversized_parts_are_refused_before_any_call(api: FakeApi, pki: Pki) -> None:
    small = FitConnectAdapter.from_config("fc", adapter_section(api, pki, max_attachment_bytes=8), context())
    try:
        with pytest.raises(ContentTooLarge, match="content part 1"):
            small.prepare(delivery(message=b"<a/>", attachments=(b"123456789",)))
        assert api.log == []
    finally:
        small.close()


def test_the_key_is_cached(api: FakeApi, adapter: FitConnectAdapter) -> None:
    for message_id in ("m1", "m2", "m3"):
        d = delivery(message_id=message_id)
        adapter.prepare(d)
        adapter.deliver(d, adapter.new_transport_id(d))
    assert len(api.calls("GET", rf"/v1/destinations/{DEST}/keys/{ENC_KID}")) == 1


# --------------------------------------------------------------------------- status from the event log


def _delivered(adapter: FitConnectAdapter) -> tuple[str, str, str]:
    d = delivery()
    tid = adapter.new_transport_id(d)
    adapter.deliver(d, tid)
    submission_id, case_id, _ = tid.split(":")
    return tid, submission_id, case_id


def test_submitted_is_open(adapter: FitConnectAdapter) -> None:
    tid, submission_id, case_id = _delivered(adapter)
    report = adapter.transport_report(tid)
    assert (report.status, report.final, report.detail()) == (0, False, {
        "submission_id": submission_id, "case_id": case_id, "status": 0, "status_name": "submitted", "problems": []})


def test_accept_by_the_destination_is_green_and_final(api: FakeApi, pki: Pki, adapter: FitConnectAdapter) -> None:
    tid, submission_id, case_id = _delivered(adapter)
    api.add_event(case_id, sign_set(pki.sig_key_pem.read_bytes(), DEST_SIG_KID,
                                    set_payload("accept-submission", submission_id, case_id, iss=DEST)))
    report = adapter.transport_report(tid)
    assert (report.status, report.final, report.detail()["status_name"]) == (1, True, "accepted")
    assert api.calls("GET", rf"/v1/destinations/{DEST}/keys/{DEST_SIG_KID}")  # the destination's own key


def test_reject_is_red_and_final_with_the_problems(api: FakeApi, pki: Pki, adapter: FitConnectAdapter) -> None:
    tid, submission_id, case_id = _delivered(adapter)
    problem = {"type": "https://schema.fitko.de/fit-connect/events/problems/hash-mismatch",
               "title": "Prüfsumme stimmt nicht", "detail": "Die Prüfsumme der Anlage stimmt nicht.",
               "instance": "attachment:x"}
    api.add_event(case_id, sign_set(pki.sig_key_pem.read_bytes(), DEST_SIG_KID,
                                    set_payload("reject-submission", submission_id, case_id, iss=DEST,
                                                body={"problems": [problem]})))
    api.add_event(case_id, sign_set(pki.sig_key_pem.read_bytes(), DEST_SIG_KID,  # later events do not undo it
                                    set_payload("accept-submission", submission_id, case_id, iss=DEST)))
    report = adapter.transport_report(tid)
    assert (report.status, report.final) == (3, True)
    assert report.detail()["problems"] == [problem] and report.detail()["status_name"] == "rejected"


def test_delete_is_red_and_events_of_other_submissions_are_ignored(api: FakeApi, pki: Pki,
                                                                   adapter: FitConnectAdapter) -> None:
    tid, submission_id, case_id = _delivered(adapter)
    api.add_event(case_id, api._sign(set_payload("accept-submission", "ce75a6b8-d72f-4b94-b09e-af6be35bc2ae",
                                                 case_id)))
    assert adapter.transport_report(tid).status == 0
    api.add_event(case_id, api._sign(set_payload("delete-submission", submission_id, case_id)))
    report = adapter.transport_report(tid)
    assert (report.status, report.final, report.detail()["status_name"]) == (3, True, "deleted")


def test_a_forged_event_is_a_malformed_answer_not_a_status(api: FakeApi, pki: Pki, adapter: FitConnectAdapter) -> None:
    tid, submission_id, case_id = _delivered(adapter)
    forged = sign_set(pki.enc_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()),
                      DEST_SIG_KID, set_payload("accept-submission", submission_id, case_id, iss=DEST))
    api.add_event(case_id, forged)
    with pytest.raises(MalformedAnswer) as caught:
        adapter.transport_report(tid)
    assert caught.value.transient


def test_a_set_key_outside_the_trust_anchors_is_a_malformed_answer(api: FakeApi, pki: Pki,
                                                                   adapter: FitConnectAdapter) -> None:
    tid, submission_id, case_id = _delivered(adapter)
    api.keys[(DEST, "mallory-sig")] = jwk(pki.enc_key, [pki.mallory_cert, pki.mallory_root], kid="mallory-sig",
                                          alg="PS512", ops=("verify",))
    forged = sign_set(pki.enc_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()),
                      "mallory-sig", set_payload("accept-submission", submission_id, case_id, iss=DEST))
    api.add_event(case_id, forged)
    with pytest.raises(MalformedAnswer) as caught:
        adapter.transport_report(tid)
    assert caught.value.reason == "fitconnect_set_key_refused"


def test_check_fetches_a_token_and_the_info(api: FakeApi, adapter: FitConnectAdapter) -> None:
    adapter.check()
    assert api.calls("POST", "/token") and api.calls("GET", "/v1/info")


def test_the_json_bodies_sent_match_the_official_request_schemas(api: FakeApi, adapter: FitConnectAdapter) -> None:
    """CreateSubmission and SubmitSubmission as the OpenAPI document defines them (its components,
    read as JSON Schema; the simulator checks whole requests with openapi-core)."""
    import yaml

    spec = yaml.safe_load(standards_path("fit-connect/openapi/submission-api-1.1.3.yaml").read_text("utf-8"))

    def validator(component: str) -> Any:
        return Draft202012Validator({"$ref": f"#/components/schemas/{component}", "components": spec["components"]},
                                    format_checker=Draft202012Validator.FORMAT_CHECKER)

    d = delivery()
    tid = adapter.new_transport_id(d)
    adapter.deliver(d, tid)
    create = json.loads(api.calls("POST", "/v1/submissions")[0][3])
    submit = json.loads(api.calls("PUT", rf"/v1/submissions/{tid.split(':')[0]}")[0][3])
    validator("CreateSubmission").validate(create)
    validator("SubmitSubmission").validate(submit)
    assert not validator("CreateSubmission").is_valid({**create, "serviceType": {"identifier": "not a urn"}})
