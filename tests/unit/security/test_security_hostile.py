"""The hostile corpus: every file is rejected with a permanent, specific HubError (see hostile/)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import hub.errors
from hub.errors import HubError, MessageError, SecurityError
from transport.security.encryption import decrypt_xml
from transport.security.keys import load_certificate, load_private_key
from transport.security.signature import verify_content, verify_enveloped
from transport.security.xml import parse_xml
from transport.xta.container import parse_content_container

HOSTILE = Path(__file__).resolve().parent / "hostile"
MANIFEST = json.loads((HOSTILE / "manifest.json").read_text(encoding="utf-8"))
CASES = {name: case for name, case in MANIFEST.items() if not name.startswith("_")}


def run_check(name: str, check: str) -> object:
    data = (HOSTILE / name).read_bytes()
    trusted = [load_certificate(HOSTILE / "pki" / "ca.cert.pem")]
    if check == "parse":
        return parse_xml(data)
    if check == "enveloped":
        return verify_enveloped(data, trusted)
    if check == "container":
        return verify_content(parse_content_container(parse_xml(data)), trusted)
    if check == "decrypt":
        return decrypt_xml(parse_xml(data), load_private_key(HOSTILE / "pki" / "other.key.pem"))  # type: ignore[arg-type]
    raise AssertionError(f"unknown check {check!r} in manifest.json")


def test_manifest_lists_every_file() -> None:
    files = {p.name for p in HOSTILE.glob("*.xml")}
    assert files == set(CASES), "every corpus file needs a manifest entry and vice versa"
    kinds = {c["check"] for c in CASES.values()}
    assert kinds == {"parse", "enveloped", "container", "decrypt"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input_is_rejected_permanently_and_specifically(name: str) -> None:
    case = CASES[name]
    if case["error"] is None:  # a control: the same check accepts the untampered original
        run_check(name, case["check"])
        return
    with pytest.raises(HubError) as info:
        run_check(name, case["check"])
    error = info.value
    assert type(error) is getattr(hub.errors, case["error"])
    assert isinstance(error, (MessageError, SecurityError))
    assert error.transient is False
    assert error.reason == case["reason"]
    assert re.search(case["match"], str(error)), str(error)
    assert len(str(error)) < 200  # a short reason, never a dump of the input

