"""The metadata the sender builds validates against the official metadata 1.0.0 schema (jsonschema,
draft 2020-12, with format checks), carries SHA-512 hashes of the unencrypted parts, and the model
refuses what the schema refuses."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.standards import standards_path
from tests.unit.fitconnect.conftest import SERVICE, delivery
from transport.fitconnect.metadata import (
    MetadataInvalid,
    build_metadata,
    mime_type,
    validate_metadata,
)

IDS = ["0b7a8e1c-1f7e-4c36-9d0c-6a0c1d3b9e01", "0b7a8e1c-1f7e-4c36-9d0c-6a0c1d3b9e02"]
SCHEMA_URI = "http://www.osci.de/xauslaender/2611"


def _official() -> Draft202012Validator:
    schema = json.loads(standards_path("fit-connect/schemas/metadata/1.0.0/metadata.schema.json")
                        .read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _build(**kw: Any) -> dict[str, Any]:
    d = delivery()
    return build_metadata(d.content, kw.pop("ids", IDS), schema_uri=kw.pop("schema_uri", SCHEMA_URI),
                          service=kw.pop("service", SERVICE), service_name="Aufenthaltstitel",
                          sender_reference=d.message_id, **kw)


def test_built_metadata_validates_against_the_official_schema() -> None:
    document = _build()
    errors = sorted(_official().iter_errors(document), key=str)
    assert not errors, [e.message for e in errors]
    validate_metadata(document)  # and against the project's own model


def test_hashes_are_sha512_of_the_unencrypted_parts_and_the_message_is_the_data() -> None:
    d = delivery()
    document = _build()
    structure = document["contentStructure"]
    assert structure["data"]["hash"] == {"type": "sha512", "content": hashlib.sha512(d.content.message.data).hexdigest()}
    assert structure["data"]["submissionSchema"] == {"schemaUri": SCHEMA_URI, "mimeType": "application/xml"}
    for info, part, aid in zip(structure["attachments"], d.content.attachments, IDS, strict=True):
        assert info["hash"]["content"] == hashlib.sha512(part.data).hexdigest()
        assert info["attachmentId"] == aid and info["purpose"] == "attachment"
        assert info["mimeType"] == "application/pdf" and info["filename"] == part.filename
    assert document["publicServiceType"]["identifier"] == SERVICE


@pytest.mark.parametrize(("kw", "field"), [
    ({"service": "leika 99010003001006"}, "publicServiceType.identifier"),
    ({"schema_uri": "no uri"}, "schemaUri"),
    ({"ids": ["not-a-uuid", IDS[1]]}, "attachmentId"),
])
def test_what_the_official_schema_refuses_the_model_refuses(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(MetadataInvalid) as caught:
        _build(**kw)
    assert field in str(caught.value) and caught.value.reason == "fitconnect_metadata_invalid"
    assert not caught.value.transient
    for value in kw.values():  # values are not echoed, only the field names
        assert str(value) not in str(caught.value)


def test_a_hash_the_schema_refuses_is_refused_by_validate_metadata() -> None:
    tampered = _build()
    tampered["contentStructure"]["data"]["hash"]["content"] = "ABC"
    assert not _official().is_valid(tampered)
    with pytest.raises(MetadataInvalid, match="hash.content"):
        validate_metadata(tampered)


def test_unknown_fields_are_refused_by_the_model() -> None:
    with pytest.raises(MetadataInvalid):
        validate_metadata({**_build(), "surprise": 1})


@pytest.mark.parametrize(("given", "expected"), [
    ("application/xml; charset=utf-8", "application/xml"), ("Application/PDF", "application/pdf"),
    ("nonsense", "application/octet-stream")])
def test_mime_types_are_bare(given: str, expected: str) -> None:
    assert mime_type(given) == expected
