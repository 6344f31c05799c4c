"""The submission metadata the sender writes: the project's own model of the subset of FIT-Connect
metadata 1.0.0 it uses (https://schema.fitko.de/fit-connect/metadata/1.0.0/metadata.schema.json).

The XÖV payload is the submission's ``data`` (``contentStructure.data``: its schema is the message
kind's payload schema, mime type application/xml); every further content part is an attachment
(purpose ``attachment``). Hashes are SHA-512 of the unencrypted bytes, so the receiver can check
that the delivery service exchanged nothing. ``validate_metadata`` checks a document against this
model before it is encrypted; the tests hold the model against the official schema.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from transport.content import Content, ContentPart
from transport.fitconnect.errors import FitConnectRefused

METADATA_SCHEMA: Final = "https://schema.fitko.de/fit-connect/metadata/1.0.0/metadata.schema.json"
_MIME = re.compile(r"^[-\w.]+/[-\w.+]+$")
_SERVICE_URN = re.compile(r"^urn:[a-z0-9][a-z0-9-]{0,31}:[a-z0-9()+,.:=@;$_!*'%/?#-]+$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")


class MetadataInvalid(FitConnectRefused):
    """The metadata built for a delivery breaks the model (permanent: the content or the message
    kind's configuration cannot be sent as it is)."""

    reason = "fitconnect_metadata_invalid"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Hash(_Model):
    type: Literal["sha512"] = "sha512"
    content: str = Field(pattern=r"^[a-f0-9]{128}$")


class SubmissionSchemaRef(_Model):
    schema_uri: str = Field(pattern=_URI.pattern)
    mime_type: Literal["application/json", "application/xml"]


class DataInfo(_Model):
    hash: Hash
    submission_schema: SubmissionSchemaRef


class AttachmentInfo(_Model):
    hash: Hash
    purpose: Literal["form", "attachment", "report"] = "attachment"
    filename: str | None = None
    description: str | None = None
    mime_type: str = Field(pattern=_MIME.pattern)
    attachment_id: str

    @field_validator("attachment_id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        return str(uuid.UUID(value))


class ContentStructure(_Model):
    data: DataInfo | None = None
    attachments: tuple[AttachmentInfo, ...] = ()


class PublicServiceType(_Model):
    identifier: str = Field(min_length=7, max_length=255, pattern=_SERVICE_URN.pattern)
    name: str | None = None


class AdditionalReferenceInfo(_Model):
    sender_reference: str | None = None


class Metadata(_Model):
    schema_uri: Literal["https://schema.fitko.de/fit-connect/metadata/1.0.0/metadata.schema.json"] = Field(
        METADATA_SCHEMA, alias="$schema")
    content_structure: ContentStructure
    public_service_type: PublicServiceType | None = None
    additional_reference_info: AdditionalReferenceInfo | None = None


def _hash(part: ContentPart) -> dict[str, str]:
    return {"type": "sha512", "content": hashlib.sha512(part.data).hexdigest()}


def mime_type(content_type: str) -> str:
    """The bare media type of a part (parameters such as ``charset`` dropped); unknown shapes
    become application/octet-stream rather than a metadata document the schema refuses."""
    bare = content_type.split(";", 1)[0].strip().lower()
    return bare if _MIME.match(bare) else "application/octet-stream"


def build_metadata(content: Content, attachment_ids: Sequence[str], *, schema_uri: str, service: str,
                   service_name: str | None = None, sender_reference: str | None = None) -> dict[str, Any]:
    """The metadata document for ``content``: the message as ``data`` (hash + submission schema
    ``schema_uri``), attachment ``i`` under ``attachment_ids[i]``; checked by ``validate_metadata``."""
    if len(attachment_ids) != len(content.attachments):
        raise MetadataInvalid(f"{len(content.attachments)} attachments but {len(attachment_ids)} attachment ids")
    attachments = [{"hash": _hash(part), "purpose": "attachment", "filename": part.filename,
                    "description": part.description, "mimeType": mime_type(part.content_type), "attachmentId": aid}
                   for part, aid in zip(content.attachments, attachment_ids, strict=True)]
    document: dict[str, Any] = {
        "$schema": METADATA_SCHEMA,
        "contentStructure": {
            "data": {"hash": _hash(content.message),
                     "submissionSchema": {"schemaUri": schema_uri, "mimeType": "application/xml"}},
            "attachments": [{k: v for k, v in a.items() if v is not None} for a in attachments]},
        "publicServiceType": {"identifier": service, **({"name": service_name} if service_name else {})},
    }
    if sender_reference:
        document["additionalReferenceInfo"] = {"senderReference": sender_reference}
    return validate_metadata(document).model_dump(by_alias=True, exclude_none=True, mode="json")


def validate_metadata(document: dict[str, Any]) -> Metadata:
    """Parse a metadata document with the model (unknown fields refused); ``MetadataInvalid``
    names the offending fields, never their values."""
    try:
        return Metadata.model_validate(document)
    except ValidationError as exc:
        raise MetadataInvalid(f"metadata invalid: {_fields(exc)}") from None


def _fields(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['type']}" for e in exc.errors())
