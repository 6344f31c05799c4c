"""The SHA-512 checks of contentStructure against the decrypted parts (always on)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from transport.fitconnect.simulator.service import Problem, _check_hashes


def _hash(content: bytes) -> dict[str, str]:
    return {"type": "sha512", "content": hashlib.sha512(content).hexdigest()}


def _metadata(data: bytes | None, attachments: dict[str, bytes]) -> dict[str, Any]:
    structure: dict[str, Any] = {"attachments": [{"attachmentId": a, "hash": _hash(c)} for a, c in attachments.items()]}
    if data is not None:
        structure["data"] = {"hash": _hash(data)}
    return {"contentStructure": structure}


def test_matching_hashes_pass() -> None:
    _check_hashes(_metadata(b"data", {"a": b"x", "b": b"y"}), b"data", {"a": b"x", "b": b"y"})
    _check_hashes(_metadata(None, {}), None, {})


@pytest.mark.parametrize(("metadata", "data", "attachments", "detail"), [
    (_metadata(b"data", {}), b"datA", {}, "data"),
    (_metadata(b"data", {"a": b"x"}), b"data", {"a": b"X"}, "attachment a"),
    (_metadata(b"data", {"a": b"x"}), b"data", {"a": b"x", "b": b"y"}, "exactly"),
    (_metadata(b"data", {"a": b"x", "b": b"y"}), b"data", {"a": b"x"}, "exactly"),
    (_metadata(b"data", {}), None, {}, "disagree"),
    (_metadata(None, {}), b"data", {}, "disagree"),
    ({}, b"data", {}, "contentStructure"),
    ({"contentStructure": {"data": {"hash": {"type": "sha256", "content": hashlib.sha512(b"d").hexdigest()}},
                           "attachments": []}}, b"d", {}, "data"),
])
def test_mismatches_are_422(metadata: dict[str, Any], data: bytes | None, attachments: dict[str, bytes],
                            detail: str) -> None:
    with pytest.raises(Problem) as refused:
        _check_hashes(metadata, data, attachments)
    assert refused.value.status == 422 and detail in refused.value.detail
