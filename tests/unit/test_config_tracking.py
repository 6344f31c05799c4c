"""[tracker] and [mailboxes.<portal>]: defaults, cross-checks against [[message_types]], paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.config import REPLY_MESSAGE_TYPES, parse_config
from hub.errors import ConfigError


def _raw(**extra: Any) -> dict[str, Any]:
    types = [{"code": code, "schema": "builtin:x.xsd", "list_uri": "urn:x", "list_version": "1",
              "payload_schema": "urn:y"} for code in ("OZG.Antrag.130101", *REPLY_MESSAGE_TYPES)]
    return {"message_types": types, **extra}


def _mailbox(**extra: Any) -> dict[str, Any]:
    return {"endpoint": "http://127.0.0.1:1/xta", "account": {"identifier": "alp:000001"},
            "decryption_key": "keys/portal.key.pem", "trusted_signers": ["pki/ca.pem"], **extra}


def test_defaults_need_no_section() -> None:
    config = parse_config(_raw(), base=Path("/etc/hub"), environ={})
    assert config.tracker.store.startswith("sqlite:///") and config.tracker.port == 9410
    assert config.tracker.tokens_file is None and config.mailboxes == {}


def test_mailbox_paths_resolve_against_the_config_folder() -> None:
    config = parse_config(_raw(mailboxes={"demo-portal": _mailbox()}, tracker={"tokens_file": "tokens.toml"}),
                          base=Path("/etc/hub"), environ={})
    mailbox = config.mailboxes["demo-portal"]
    assert mailbox.decryption_key == Path("/etc/hub/keys/portal.key.pem")
    assert mailbox.trusted_signers == (Path("/etc/hub/pki/ca.pem"),)
    assert mailbox.message_types == REPLY_MESSAGE_TYPES
    assert config.tracker.tokens_file == Path("/etc/hub/tokens.toml")


def test_a_reply_type_without_a_schema_is_named() -> None:
    raw = _raw(mailboxes={"demo-portal": _mailbox(message_types=["OZG.Unzustaendig.130109"])})
    with pytest.raises(ConfigError, match=r"mailboxes\.demo-portal\.message_types: 'OZG\.Unzustaendig\.130109'"):
        parse_config(raw, base=Path("/etc/hub"), environ={})


@pytest.mark.parametrize("portal", ["demo.portal", "-x", "a b"])
def test_a_portal_id_that_cannot_be_a_routing_key_is_refused(portal: str) -> None:
    with pytest.raises(ConfigError, match="portal ids are"):
        parse_config(_raw(mailboxes={portal: _mailbox()}), base=Path("/etc/hub"), environ={})


def test_a_mailbox_endpoint_must_be_http() -> None:
    with pytest.raises(ConfigError, match=r"mailboxes\.demo-portal\.endpoint"):
        parse_config(_raw(mailboxes={"demo-portal": _mailbox(endpoint="ftp://x")}), base=Path("/etc/hub"), environ={})


def test_two_mailboxes_of_one_account_are_refused_naming_both() -> None:
    raw = _raw(mailboxes={"portal-a": _mailbox(), "portal-b": _mailbox(account={"identifier": " ALP:000001 "})})
    with pytest.raises(ConfigError, match=r"mailboxes\.portal-b\.account\.identifier: ' ALP:000001 ' is also the "
                                          r"account of mailboxes\.portal-a"):
        parse_config(raw, base=Path("/etc/hub"), environ={})
    other = _raw(mailboxes={"portal-a": _mailbox(), "portal-b": _mailbox(account={"identifier": "alp:000002"})})
    assert set(parse_config(other, base=Path("/etc/hub"), environ={}).mailboxes) == {"portal-a", "portal-b"}
