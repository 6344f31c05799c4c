"""Envelope version 2: the parts travel as raw bytes in the AMQP body behind a short JSON preamble.

Version 1 carries every part as base64 inside JSON: 4/3 of the content on the wire, and decoding
means finding, checking and decoding the base64 (hub/envelope_body.py). Version 2 puts the bytes
themselves in the body, so decoding is slicing (``memoryview``, no copy) plus the SHA-256 check::

    body = MAGIC (4 bytes, b"XHE2") | N (uint32, big-endian) | preamble (N bytes, UTF-8 JSON)
           | data of part 0 (the XML message) | data of part 1 | ...
    preamble = {"parts": [{"content_type": str, "filename": str | null, "size": int, "sha256": hex}, ...]}

Why a preamble in the body and not AMQP headers: the body stays self-describing when the hub
re-publishes it with other headers (retry, dead-letter and replay copies keep the body
byte-identical and replace the headers), one strict parser reads it whatever client library
wrote it (AMQP field tables differ between clients: long strings vs byte arrays, integer
widths), and its size is bounded by our own limit instead of the broker's frame size.

Every check that costs nothing runs before any byte is hashed: the body size against the
content limit, the preamble's size and syntax, the number of parts, each part's fields, the sum
of the declared sizes against the content limit (``ContentTooLarge``) and against the bytes that
follow the preamble (exactly equal). Every violation is an ``EnvelopeError`` (permanent: the
worker dead-letters it with reason ``envelope``) whose text says which rule and which part.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from hub.errors import ContentTooLarge, EnvelopeError
from transport.content import Content, ContentPart

CONTENT_TYPE_V2 = "application/vnd.xoev-hub.envelope-v2"
MAGIC = b"XHE2"
HEAD_BYTES = len(MAGIC) + 4
# The preamble is names, types, sizes and hashes: MAX_PARTS entries of at most ~1.7 KB each (a
# 255-character type of escaped quotes, a 255-character name of 4-byte UTF-8 characters).
MAX_PREAMBLE_BYTES = 512 * 1024
MAX_PARTS = 256
MAX_TEXT = 255  # characters of a filename or a content type

_SHA256 = re.compile(r"[0-9a-f]{64}")
# type "/" subtype, then optional parameters (RFC 6838 restricted names; parameters printable ASCII)
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(\s*;[ -~]*)?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PART_KEYS = frozenset({"content_type", "filename", "size", "sha256"})


def body_limit(content_limit: int) -> int:
    """The largest v2 body a content of ``content_limit`` bytes can need (head + preamble + data)."""
    return content_limit + HEAD_BYTES + MAX_PREAMBLE_BYTES


def encode_body(content: Content) -> bytes:
    """The v2 body of ``content`` in one piece (one join of ``encode_chunks``)."""
    return b"".join(encode_chunks(content))


def encode_chunks(content: Content) -> list[bytes | memoryview]:
    """The v2 body of ``content`` as its pieces in order: the head with the preamble, then each
    part's data itself (no copy). Refuses what a worker would refuse (more than MAX_PARTS parts,
    names or types out of the contract) before anything is sent."""
    if len(content.parts) > MAX_PARTS:
        raise EnvelopeError(f"{len(content.parts)} parts, at most {MAX_PARTS} allowed (the message and "
                            f"{MAX_PARTS - 1} attachments)")
    preamble = json.dumps({"parts": [_describe(p, i) for i, p in enumerate(content.parts)]}, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")
    if len(preamble) > MAX_PREAMBLE_BYTES:
        raise EnvelopeError(f"preamble of {len(preamble)} bytes exceeds {MAX_PREAMBLE_BYTES} bytes")
    return [MAGIC + len(preamble).to_bytes(4, "big") + preamble, *(p.data for p in content.parts)]


def _describe(part: ContentPart, index: int) -> dict[str, Any]:
    _check_text(part.content_type, "content_type", f"parts[{index}]", required=True)
    _check_text(part.filename, "filename", f"parts[{index}]", required=False)
    return {"content_type": part.content_type, "filename": part.filename, "size": part.size, "sha256": part.sha256}


def decode_parts(body: bytes | bytearray, content_limit: int, limit_key: str) -> list[ContentPart]:
    """The parts of a v2 ``body``, each a ``memoryview`` slice of it, hashes checked; the message first."""
    if len(body) > body_limit(content_limit):
        raise ContentTooLarge(f"body of {len(body)} bytes exceeds {body_limit(content_limit)} bytes, the most an "
                              f"envelope within the limit of {content_limit} bytes ({limit_key}) needs; not read")
    view = memoryview(body)
    size, declared = _preamble(view)
    total = sum(p["size"] for p in declared)
    if total > content_limit:
        raise ContentTooLarge(f"content of {total} bytes ({len(declared)} parts) exceeds the limit of {content_limit} "
                              f"bytes ({limit_key}); not decoded")
    start = HEAD_BYTES + size
    if start + total != len(view):
        raise EnvelopeError(f"body: the parts declare {total} bytes, {len(view) - start} bytes follow the preamble")
    parts = []
    for i, entry in enumerate(declared):  # all limits are checked: now hash, slice by slice
        data = view[start:start + entry["size"]]
        start += entry["size"]
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise EnvelopeError(f"body.parts[{i}]: sha256 does not match the data")
        parts.append(ContentPart(data, entry["content_type"], entry["filename"]))
    return parts


def describe_parts(body: bytes) -> list[dict[str, Any]]:
    """The checked preamble entries of a v2 ``body`` (content_type, filename, size, sha256), without
    hashing or slicing the parts: for tools that show a dead letter (``hub dlq show``)."""
    return _preamble(memoryview(body))[1]


def _preamble(view: memoryview) -> tuple[int, list[dict[str, Any]]]:
    """(preamble length, checked entries) of a v2 body: head, bounds and JSON shape checked."""
    if len(view) < HEAD_BYTES or view[:len(MAGIC)] != MAGIC:
        raise EnvelopeError(f"body: not a version 2 envelope (it must start with {MAGIC.decode()} and a length)")
    size = int.from_bytes(view[len(MAGIC):HEAD_BYTES], "big")
    if size > MAX_PREAMBLE_BYTES:
        raise EnvelopeError(f"body: preamble of {size} bytes declared, at most {MAX_PREAMBLE_BYTES} allowed")
    if HEAD_BYTES + size > len(view):
        raise EnvelopeError(f"body: preamble of {size} bytes declared, {len(view) - HEAD_BYTES} bytes follow the head")
    return size, _read_preamble(bytes(view[HEAD_BYTES:HEAD_BYTES + size]))


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):  # two readers could take different values: refuse the ambiguity
        raise EnvelopeError("body: the preamble repeats a key")
    return dict(pairs)


def _read_preamble(raw: bytes) -> list[dict[str, Any]]:
    try:
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise EnvelopeError("body: the preamble is not valid UTF-8 JSON") from None
    if not isinstance(doc, dict) or set(doc) != {"parts"} or not isinstance(doc["parts"], list):
        raise EnvelopeError("body: the preamble must be an object with one key 'parts', a list")
    entries = doc["parts"]
    if not 1 <= len(entries) <= MAX_PARTS:
        raise EnvelopeError(f"body: {len(entries)} parts declared, 1 to {MAX_PARTS} allowed (the message first)")
    return [_checked_entry(entry, f"body.parts[{i}]") for i, entry in enumerate(entries)]


def _checked_entry(entry: Any, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise EnvelopeError(f"{where}: expected an object")
    missing = sorted(_PART_KEYS - {"filename"} - set(entry))
    if missing:
        raise EnvelopeError(f"{where}: missing field {missing[0]}")
    unknown = sorted(set(entry) - _PART_KEYS)
    if unknown:
        raise EnvelopeError(f"{where}: unknown field {unknown[0][:40]!r}")
    size = entry["size"]
    if type(size) is not int:  # not a float, not a bool
        raise EnvelopeError(f"{where}: size is not an integer")
    if size < 0:
        raise EnvelopeError(f"{where}: size {size} is negative")
    if size >= 1 << 63:  # beyond any body: keep the number out of the messages that follow
        raise ContentTooLarge(f"{where}: size of {len(str(size))} digits declared; not decoded")
    digest = entry["sha256"]
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise EnvelopeError(f"{where}: sha256 must be 64 lower-case hex digits")
    _check_text(entry["content_type"], "content_type", where, required=True)
    _check_text(entry.get("filename"), "filename", where, required=False)
    return {"size": size, "sha256": digest, "content_type": entry["content_type"],
            "filename": entry.get("filename") or None}


def _check_text(value: Any, name: str, where: str, *, required: bool) -> None:
    """Names and media types end up in XML attributes, logs and file names: printable and short."""
    if value is None and not required:
        return
    if not isinstance(value, str) or not value:
        raise EnvelopeError(f"{where}: {name} must be a non-empty string")
    if len(value) > MAX_TEXT:
        raise EnvelopeError(f"{where}: {name} longer than {MAX_TEXT} characters")
    if _CONTROL.search(value) or "\ufffd" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise EnvelopeError(f"{where}: {name} contains control or invalid characters")
    if name == "content_type" and not _MEDIA_TYPE.fullmatch(value):
        raise EnvelopeError(f"{where}: content_type is not a media type 'type/subtype'")
    if name == "filename" and ("/" in value or "\\" in value or value in (".", "..")):
        raise EnvelopeError(f"{where}: filename must be a name, not a path")
