"""Page sessions (hub/tracking/session.py): a signed value naming a token entry, never the token;
checked on every page, ended by expiry, revocation, rotation or a tracker restart."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from hub.tracking.auth import TokenRegistry, hash_token
from hub.tracking.model import Scope
from hub.tracking.session import SESSION_SECONDS, SessionSigner


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _entry(name: str, token: str, portal: str) -> str:
    return f'[[tokens]]\nname = "{name}"\nportal = "{portal}"\nsha256 = "{hash_token(token)}"\n'


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, TokenRegistry, SessionSigner, Clock]:
    path = tmp_path / "tokens.toml"
    path.write_text(_entry("a", "tok-a", "portal-a") + _entry("b", "tok-b", "portal-b"))
    registry = TokenRegistry.from_file(path, check_interval=0.0)
    clock = Clock()
    return path, registry, SessionSigner(registry, clock=clock), clock


def test_a_session_names_its_entry_and_holds_neither_the_token_nor_its_hash(setup) -> None:
    _path, registry, sessions, _clock = setup
    entry = registry.identify("tok-a")
    assert entry is not None
    value = sessions.issue(entry)
    assert sessions.scope_for(value) == Scope("portal-a")
    decoded = base64.urlsafe_b64decode(value.split(".")[0] + "==").decode()
    assert "tok-a" not in value and "tok-a" not in decoded
    assert hash_token("tok-a") not in decoded and hash_token("tok-a")[:16] not in decoded
    assert all(c.isalnum() or c in "-_." for c in value)  # a plain cookie value, nothing to quote


def test_a_session_expires_after_twelve_hours(setup) -> None:
    _path, registry, sessions, clock = setup
    value = sessions.issue(registry.identify("tok-a"))
    clock.now += SESSION_SECONDS - 1
    assert sessions.scope_for(value) == Scope("portal-a")
    clock.now += 1
    assert sessions.scope_for(value) is None


def test_revoking_or_rotating_the_entry_ends_its_sessions(setup) -> None:
    path, registry, sessions, _clock = setup
    a = sessions.issue(registry.identify("tok-a"))
    b = sessions.issue(registry.identify("tok-b"))
    # a gets a new token under the same name; b is revoked
    path.write_text(_entry("a", "tok-a-2", "portal-a") + "\n# b revoked\n")
    assert sessions.scope_for(a) is None
    assert sessions.scope_for(b) is None
    assert sessions.scope_for(sessions.issue(registry.identify("tok-a-2"))) == Scope("portal-a")


def test_forged_and_foreign_sessions_are_refused(setup) -> None:
    _path, registry, sessions, clock = setup
    value = sessions.issue(registry.identify("tok-a"))
    payload, mac = value.split(".")
    # b's name with a's signature; a longer expiry with a's signature; a flipped MAC
    forged_name = base64.urlsafe_b64encode(
        base64.urlsafe_b64decode(payload + "==").replace(b"a|", b"b|", 1)).rstrip(b"=").decode()
    expiry = int(clock.now + SESSION_SECONDS)
    later = base64.urlsafe_b64encode(base64.urlsafe_b64decode(payload + "==").replace(
        str(expiry).encode(), str(expiry + 10**6).encode())).rstrip(b"=").decode()
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    for bad in (f"{forged_name}.{mac}", f"{later}.{mac}", f"{payload}.{flipped}", payload, "", ".", "tok-a",
                hash_token("tok-a"), "x" * 10_000, f"{payload}.{mac}\u00e9", f"{payload}.!!!", "a.b.c"):
        assert sessions.scope_for(bad) is None, bad
    # another tracker process (or this one after a restart) has another key
    assert SessionSigner(registry, clock=clock).scope_for(value) is None
    assert SessionSigner(registry, clock=clock, key=b"k" * 32).scope_for(value) is None
