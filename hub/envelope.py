"""The message contract between portals and the hub (documented in docs/message-contract.md).

AMQP properties: ``message_id`` = the payload's message UUID (XÖV nachrichtenUUID; the idempotency
key), ``correlation_id`` (portal's own reference, optional), ``app_id`` = portal id,
``content_type`` = ``CONTENT_TYPE``, ``timestamp``, ``delivery_mode`` 2 (persistent).
Headers: ``x-destination`` (DVDV Behördenkennung, also the routing key), ``x-service``,
``x-message-type``, ``x-business-scenario`` (optional), ``x-envelope-version``, ``x-test`` (optional).
Two body formats, selected by ``content_type`` (and ``x-envelope-version``, which must agree):

* version 1, ``CONTENT_TYPE``: JSON ``{"message": PART, "attachments": [PART...]}``, PART =
  ``{"filename", "content_type", "size", "sha256", "data" (base64)}``; read without copying its
  base64 (hub/envelope_body.py);
* version 2, ``CONTENT_TYPE_V2``: the parts as raw bytes behind a short JSON preamble
  (hub/envelope_v2.py); decoding is slicing plus the hash check. ``publish_envelope`` writes it.

Either way size and sha256 are checked on arrival, and sizes before anything is decoded or hashed
(hub/limits.py). ``Envelope.body()`` and ``properties()`` write version 1 unless asked for
``version=2`` (replies to portals and old tests keep the JSON format).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pika

from hub.config import DESTINATION_PATTERN
from hub.envelope_body import CutStrings, read_body
from hub.envelope_v2 import CONTENT_TYPE_V2, decode_parts, encode_body, encode_chunks
from hub.errors import ContentTooLarge, EnvelopeError
from hub.limits import SizeLimits
from transport.content import Content, ContentPart

CONTENT_TYPE = "application/vnd.xoev-hub.envelope+json"
ENVELOPE_VERSION = 1
# what publish_envelope writes; workers read both (a rolling upgrade updates workers first)
PUBLISH_VERSION = 2
CONTENT_TYPES = {1: CONTENT_TYPE, 2: CONTENT_TYPE_V2}

H_DESTINATION = "x-destination"
H_SERVICE = "x-service"
H_MESSAGE_TYPE = "x-message-type"
H_BUSINESS_SCENARIO = "x-business-scenario"
H_VERSION = "x-envelope-version"
H_TEST = "x-test"


@dataclass(frozen=True)
class Envelope:
    """One application as it travels through the broker."""

    message_id: str
    destination: str
    message_type: str
    content: Content
    portal: str
    service: str | None = None
    business_scenario: str | None = None
    correlation_id: str | None = None
    test: bool = False
    timestamp: int = field(default_factory=lambda: int(time.time()))

    def properties(self, extra_headers: Mapping[str, Any] | None = None, *,
                   version: int = ENVELOPE_VERSION) -> pika.BasicProperties:
        """The AMQP properties of this envelope written in ``version`` (content type and header)."""
        content_type = _content_type(version)
        headers: dict[str, Any] = {
            H_DESTINATION: self.destination,
            H_MESSAGE_TYPE: self.message_type,
            H_VERSION: version,
        }
        if self.service:
            headers[H_SERVICE] = self.service
        if self.business_scenario:
            headers[H_BUSINESS_SCENARIO] = self.business_scenario
        if self.test:
            headers[H_TEST] = True
        headers.update(extra_headers or {})
        return pika.BasicProperties(
            message_id=self.message_id,
            correlation_id=self.correlation_id,
            app_id=self.portal,
            content_type=content_type,
            delivery_mode=pika.DeliveryMode.Persistent,
            timestamp=self.timestamp,
            headers=headers,
        )

    def body_chunks(self, *, version: int = ENVELOPE_VERSION) -> list[bytes | memoryview]:
        """The AMQP body in ``version`` as pieces in order: for 2 the head and the parts' own
        bytes (no copy; ``ConfirmingPublisher.publish`` streams them), for 1 the whole JSON."""
        if _content_type(version) == CONTENT_TYPE_V2:
            return encode_chunks(self.content)
        return [self.body(version=version)]

    def body(self, *, version: int = ENVELOPE_VERSION) -> bytes:
        """The AMQP body in ``version``: 1 JSON with base64, 2 raw parts (one join, no other copy)."""
        if _content_type(version) == CONTENT_TYPE_V2:
            return encode_body(self.content)
        return json.dumps(
            {"message": _part_to_json(self.content.message), "attachments": [_part_to_json(a) for a in self.content.attachments]},
            separators=(",", ":"),
        ).encode("ascii")


def _content_type(version: int) -> str:
    if type(version) is not int or version not in CONTENT_TYPES:
        raise EnvelopeError(f"envelope version {version!r} is unknown (known: {sorted(CONTENT_TYPES)})")
    return CONTENT_TYPES[version]


def new_envelope(
    *,
    destination: str,
    message_type: str,
    message: bytes,
    portal: str,
    message_id: str | None = None,
    filename: str = "nachricht.xml",
    attachments: tuple[ContentPart, ...] = (),
    **kwargs: Any,
) -> Envelope:
    """Build an envelope, checking the destination syntax early (the publisher's first guard)."""
    if not DESTINATION_PATTERN.match(destination):
        raise EnvelopeError(f"destination '{destination}' is not a Behördenkennung 'praefix:kennung'")
    content = Content(ContentPart(message, "application/xml", filename), tuple(attachments))
    return Envelope(
        message_id=message_id or str(uuid.uuid4()),
        destination=destination,
        message_type=message_type,
        content=content,
        portal=portal,
        **kwargs,
    )


def _part_to_json(part: ContentPart) -> dict[str, Any]:
    return {
        "filename": part.filename,
        "content_type": part.content_type,
        "size": part.size,
        "sha256": part.sha256,
        "data": base64.b64encode(part.data).decode("ascii"),
    }


@dataclass(frozen=True)
class _DeclaredPart:
    """A part's fields as the body declares them, checked before its data is decoded."""

    where: str
    data: str
    size: int
    content_type: str
    digest: str
    filename: str | None


def _declared_part(obj: Any, where: str, strings: CutStrings) -> _DeclaredPart:
    if not isinstance(obj, dict):
        raise EnvelopeError(f"body.{where}: expected an object")
    try:
        data = obj["data"]
        content_type = str(strings.text(obj["content_type"], where))
        size = obj["size"]
        digest = str(strings.text(obj["sha256"], where))
    except KeyError as exc:
        raise EnvelopeError(f"body.{where}: missing field {exc.args[0]}") from None
    try:
        size = int(size)
    except (ValueError, TypeError, OverflowError):
        raise EnvelopeError(f"body.{where}: size is not a number") from None
    if size < 0:
        raise EnvelopeError(f"body.{where}: size {size} is negative")
    if not isinstance(data, str):
        raise EnvelopeError(f"body.{where}: data is not valid base64")
    if strings.is_cut(data):  # long: its length must fit the declared size before it is decoded
        received = strings.claim_base64(data, where)
        if received != size:
            raise EnvelopeError(f"body.{where}: size {size} declared, {received} bytes received")
    filename = strings.text(obj.get("filename"), where)
    return _DeclaredPart(where, data, size, content_type, digest, str(filename) if filename else None)


def _decoded_part(part: _DeclaredPart, strings: CutStrings) -> ContentPart:
    if strings.is_cut(part.data):
        data = strings.decode_base64(part.data, part.where)
    else:
        try:
            data = base64.b64decode(part.data, validate=True)
        except (binascii.Error, ValueError):
            raise EnvelopeError(f"body.{part.where}: data is not valid base64") from None
    if len(data) != part.size:
        raise EnvelopeError(f"body.{part.where}: size {part.size} declared, {len(data)} bytes received")
    if hashlib.sha256(data).hexdigest() != part.digest.lower():
        raise EnvelopeError(f"body.{part.where}: sha256 does not match the data")
    return ContentPart(data, part.content_type, part.filename)


def decode_envelope(properties: pika.BasicProperties, body: bytes | bytearray, limits: SizeLimits | None = None) -> Envelope:
    """Check an arriving message against the contract; every violation is an EnvelopeError, a
    message above the size limit a ContentTooLarge (refused before its body is decoded or hashed).
    The content type selects the body format (1: JSON, 2: raw parts); ``x-envelope-version`` must
    name the same version."""
    limits = limits or SizeLimits()
    headers = properties.headers or {}
    if not properties.message_id:
        raise EnvelopeError("message_id property is missing")
    content_type = (properties.content_type or "").split(";")[0].strip()
    versions = {t: v for v, t in CONTENT_TYPES.items()}
    if content_type not in versions:
        raise EnvelopeError(f"content_type must be {CONTENT_TYPE} or {CONTENT_TYPE_V2}, got "
                            f"'{properties.content_type}'")
    expected = versions[content_type]
    version = headers.get(H_VERSION)
    if type(version) is not int or version != expected:
        raise EnvelopeError(f"header {H_VERSION} must be {expected} for content_type {content_type}, got {version!r}")
    destination = _text_header(headers, H_DESTINATION, required=True)
    message_type = str(_text_header(headers, H_MESSAGE_TYPE, required=True))
    limit, key = limits.content_limit(message_type), limits.limit_key(message_type)
    if expected == 2:
        parts = decode_parts(body, limit, key)
    else:
        # version 1 is read from bytes (a body above 1 MiB arrives as a bytearray: one more copy, v1 only)
        parts = _decode_json_parts(bytes(body), limits, message_type)
    return Envelope(
        message_id=str(properties.message_id),
        destination=str(destination),
        message_type=message_type,
        content=Content(parts[0], tuple(parts[1:])),
        portal=str(properties.app_id or "unknown"),
        service=_text_header(headers, H_SERVICE),
        business_scenario=_text_header(headers, H_BUSINESS_SCENARIO),
        correlation_id=properties.correlation_id,
        test=_bool_header(headers, H_TEST),
        timestamp=int(properties.timestamp or 0),
    )


def _decode_json_parts(body: bytes, limits: SizeLimits, message_type: str) -> list[ContentPart]:
    """The parts of a version 1 (JSON) body: sizes checked against the limit before any base64 is decoded."""
    limit, key = limits.content_limit(message_type), limits.limit_key(message_type)
    if len(body) > limits.body_limit(message_type):
        raise ContentTooLarge(f"body of {len(body)} bytes exceeds {limits.body_limit(message_type)} bytes, the most "
                              f"an envelope within the limit of {limit} bytes ({key}) needs; not read")
    doc, strings = read_body(body)
    if not isinstance(doc, dict) or "message" not in doc:
        raise EnvelopeError("body must be an object with 'message' and 'attachments'")
    attachments_raw = doc.get("attachments", [])
    if not isinstance(attachments_raw, list):
        raise EnvelopeError("body.attachments must be a list")
    declared = [_declared_part(doc["message"], "message", strings),
                *(_declared_part(a, f"attachments[{i}]", strings) for i, a in enumerate(attachments_raw))]
    total = sum(p.size for p in declared)
    if total > limit:
        raise ContentTooLarge(f"content of {total} bytes ({len(declared)} parts) exceeds the limit of {limit} "
                              f"bytes ({key}); not decoded")
    strings.check_all_taken()
    return [_decoded_part(p, strings) for p in declared]  # one at a time: each data string is read once


def copy_properties(props: pika.BasicProperties, headers: Mapping[str, Any]) -> pika.BasicProperties:
    """The same message properties with other headers (for retry, dead-letter and replay copies);
    persistent, and ``user_id`` dropped (the broker would refuse another connection's user)."""
    return pika.BasicProperties(
        content_type=props.content_type, content_encoding=props.content_encoding, headers=dict(headers),
        delivery_mode=2, priority=props.priority, correlation_id=props.correlation_id, reply_to=props.reply_to,
        message_id=props.message_id, timestamp=props.timestamp, type=props.type, app_id=props.app_id)


def _bool_header(headers: Mapping[str, Any], name: str) -> bool:
    """A real AMQP boolean only: the string "false" must not turn an application into a test message."""
    value = headers.get(name, False)
    if not isinstance(value, bool):
        raise EnvelopeError(f"header {name} must be a boolean, got {type(value).__name__}")
    return value


def _text_header(headers: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = headers.get(name)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if value is None or value == "":
        if required:
            raise EnvelopeError(f"header {name} is missing")
        return None
    return str(value)
