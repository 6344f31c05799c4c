"""Bearer tokens of the tracking API: hashed only, scoped, rotated by rewriting the file."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

import pytest

from hub.errors import ConfigError
from hub.tracking.auth import TokenRegistry, hash_token, new_token, parse_tokens
from hub.tracking.model import Scope


class Clock:
    """A hand-driven monotonic clock: the registry looks at the file only when it says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entry(name: str, token: str, portal: str | None = None) -> str:
    who = f'portal = "{portal}"' if portal else "operator = true"
    return f'[[tokens]]\nname = "{name}"\n{who}\nsha256 = "{hash_token(token)}"\n'


def write(path: Path, text: str) -> None:
    """Rewrite in place, as an editor does (the same inode; mtime and maybe size change)."""
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.toml"
    write(path, entry("portal-a-1", "secret-a-1", "portal-a") + entry("ops", "secret-ops"))
    return path


def test_hash_token_is_the_hex_sha256_of_the_token() -> None:
    assert hash_token("abc") == hashlib.sha256(b"abc").hexdigest()
    assert len(hash_token(new_token())) == 64
    assert new_token() != new_token()


def test_a_portal_token_is_scoped_to_its_portal_and_an_operator_token_to_all(tokens_file: Path) -> None:
    registry = TokenRegistry.from_file(tokens_file)
    assert registry.scope_for("secret-a-1") == Scope("portal-a")
    assert registry.scope_for("secret-ops") == Scope.operator()
    assert registry.scope_for("secret-ops").allows("portal-b")
    assert not registry.scope_for("secret-a-1").allows("portal-b")


@pytest.mark.parametrize("token", ["", "secret-a-2", "SECRET-A-1", "secret-a-1 ", hash_token("secret-a-1"),
                                   "x" * 10_000, "secret-a-\udc80"])
def test_anything_but_a_configured_token_has_no_scope(tokens_file: Path, token: str) -> None:
    assert TokenRegistry.from_file(tokens_file).scope_for(token) is None


def test_no_tokens_file_means_nobody_can_read_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="hub.tracker.auth"):
        registry = TokenRegistry.from_file(None)
    assert registry.scope_for("anything") is None
    assert any("no tokens_file" in r.getMessage() and "401" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("text", "problem"), [
    ("[[tokens]\n", "not valid TOML"),
    ('[[tokens]]\nname = "a"\nportal = "p"\ntoken = "in-clear"\nsha256 = "' + "0" * 64 + '"\n', "unknown key"),
    ('[[tokens]]\nname = "a"\nportal = "p"\nsha256 = "in-clear-token"\n', "64 hex digits"),
    ('[[tokens]]\nname = "a"\nportal = "p"\n', "64 hex digits"),
    ('[[tokens]]\nname = "a"\nsha256 = "' + "0" * 64 + '"\n', "names no portal"),
    ('[[tokens]]\nname = "a"\nportal = "p"\noperator = true\nsha256 = "' + "0" * 64 + '"\n', "operator token"),
    ('[[tokens]]\nname = "a"\nportal = "p"\noperator = "yes"\nsha256 = "' + "0" * 64 + '"\n', "true or false"),
    (entry("same", "t1", "p") + entry("same", "t2", "q"), "used twice"),
    (entry("one", "t1", "p") + entry("two", "t1", "q"), "same sha256"),
    ('[[tokens]]\nportal = "p"\nsha256 = "' + "0" * 64 + '"\n', "name"),
    ('tokens = "all"\n', "array of tables"),
    ('[other]\nx = 1\n', "unknown top-level"),
])
def test_a_broken_file_at_start_is_a_one_line_config_error(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "tokens.toml"
    write(path, text)
    with pytest.raises(ConfigError) as caught:
        TokenRegistry.from_file(path)
    message = str(caught.value)
    assert problem in message and str(path) in message and "\n" not in message
    assert "in-clear" not in message and "0" * 64 not in message  # neither a token nor a hash is echoed


def test_a_missing_file_at_start_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        TokenRegistry.from_file(tmp_path / "absent.toml")


def test_no_token_is_kept_in_clear(tokens_file: Path) -> None:
    registry = TokenRegistry.from_file(tokens_file)
    assert registry.scope_for("secret-a-1") is not None
    kept = repr(vars(registry)) + repr(registry.names)
    assert "secret-a-1" not in kept and "secret-ops" not in kept
    assert "secret" not in tokens_file.read_text()  # the file itself holds hashes only


def test_rotation_takes_effect_when_the_file_changes_without_a_restart(tokens_file: Path, clock: Clock,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    registry = TokenRegistry.from_file(tokens_file, clock=clock)
    # step 1: the new token is added next to the old one
    write(tokens_file, entry("portal-a-1", "secret-a-1", "portal-a") + entry("portal-a-2", "secret-a-2", "portal-a")
          + entry("ops", "secret-ops"))
    assert registry.scope_for("secret-a-2") is None  # looked at most once a second: not yet
    clock.now += 1.0
    assert registry.scope_for("secret-a-2") == Scope("portal-a")
    assert registry.scope_for("secret-a-1") == Scope("portal-a")
    # step 2: the old token is removed
    write(tokens_file, entry("portal-a-2", "secret-a-2", "portal-a") + entry("ops", "secret-ops"))
    clock.now += 1.0
    with caplog.at_level(logging.INFO, logger="hub.tracker.auth"):
        assert registry.scope_for("secret-a-1") is None
    assert registry.scope_for("secret-a-2") == Scope("portal-a")
    assert registry.names == ("portal-a-2", "ops")
    assert any("re-read" in r.getMessage() for r in caplog.records)


def test_a_rewrite_of_the_same_size_is_seen(tokens_file: Path, clock: Clock) -> None:
    """Swapping one hash for another keeps the size: the mtime/ctime (or inode) still tell."""
    write(tokens_file, entry("a", "token-1", "portal-a"))
    registry = TokenRegistry.from_file(tokens_file, clock=clock)
    size = tokens_file.stat().st_size
    replacement = tokens_file.with_suffix(".new")
    write(replacement, entry("a", "token-2", "portal-a"))
    os.replace(replacement, tokens_file)  # atomic replace, as `hub tracker token new` does
    assert tokens_file.stat().st_size == size
    clock.now += 1.0
    assert registry.scope_for("token-2") == Scope("portal-a")
    assert registry.scope_for("token-1") is None


def test_a_broken_file_after_a_change_fails_closed_and_logs_one_line_per_version(
        tokens_file: Path, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """Keeping the last good set would keep a token working that the edit meant to revoke."""
    registry = TokenRegistry.from_file(tokens_file, clock=clock)
    assert registry.problem is None
    write(tokens_file, entry("portal-a-1", "secret-a-1", "portal-a") + '[[tokens]]\nname = "half')  # half-written
    with caplog.at_level(logging.ERROR, logger="hub.tracker.auth"):
        for _ in range(5):
            clock.now += 1.0
            assert registry.scope_for("secret-a-1") is None
            assert registry.scope_for("secret-ops") is None
            assert registry.problem == "tokens file unusable"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "no token is valid" in errors[0].getMessage() and "\n" not in errors[0].getMessage()
    assert hash_token("secret-a-1") not in errors[0].getMessage()
    # another broken version: one more line
    write(tokens_file, "[[tokens]\n")
    clock.now += 1.0
    assert registry.scope_for("secret-ops") is None
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 2
    # repaired: the new content counts, and the tracker is ready again
    write(tokens_file, entry("portal-b", "secret-b", "portal-b"))
    clock.now += 1.0
    assert registry.scope_for("secret-b") == Scope("portal-b")
    assert registry.scope_for("secret-a-1") is None
    assert registry.problem is None


@pytest.mark.parametrize("damage", ["delete", "unreadable", "not_utf8"])
def test_a_missing_or_unreadable_file_after_a_change_fails_closed(tokens_file: Path, clock: Clock,
                                                                 damage: str) -> None:
    registry = TokenRegistry.from_file(tokens_file, clock=clock)
    good = tokens_file.read_text()
    if damage == "delete":
        tokens_file.unlink()
    elif damage == "unreadable":  # a directory in its place: unreadable even for root
        tokens_file.unlink()
        tokens_file.mkdir()
    else:
        tokens_file.write_bytes(b"\xff\xfe" + good.encode())
    clock.now += 1.0
    assert registry.scope_for("secret-a-1") is None and registry.scope_for("secret-ops") is None
    assert registry.problem == "tokens file unusable"
    if tokens_file.is_dir():
        tokens_file.rmdir()
    write(tokens_file, good)  # restored as it was
    clock.now += 1.0
    assert registry.scope_for("secret-a-1") == Scope("portal-a")
    assert registry.problem is None


def test_a_portal_must_be_a_portal_id(tmp_path: Path) -> None:
    """``(unknown)`` marks events without an app_id: no token may ever be configured for it."""
    for portal in ("(unknown)", "a b", "x" * 65):
        with pytest.raises(ConfigError, match="app_id"):
            parse_tokens(entry("a", "t", portal))


def test_the_file_is_looked_at_once_per_interval_at_most(tokens_file: Path, clock: Clock,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    registry = TokenRegistry.from_file(tokens_file, clock=clock)
    looks = []
    real_stat = Path.stat

    def counting_stat(self: Path, *args: object, **kwargs: object) -> os.stat_result:
        if self == tokens_file:
            looks.append(clock.now)
        return real_stat(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "stat", counting_stat)
    for _ in range(100):
        registry.scope_for("secret-a-1")
        clock.now += 0.05
    assert 4 <= len(looks) <= 5  # 5 seconds of requests: one look per second


def test_concurrent_requests_during_rotation_see_the_old_or_the_new_set(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    write(path, entry("a", "old", "portal-a"))
    registry = TokenRegistry.from_file(path, check_interval=0.0)
    seen: set[tuple[str, Scope | None]] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def ask() -> None:
        try:
            while not stop.is_set():
                for token in ("old", "new"):
                    seen.add((token, registry.scope_for(token)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for n in range(50):
        write(path, entry("a", "new" if n % 2 else "old", "portal-a"))
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors
    assert seen <= {("old", Scope("portal-a")), ("old", None), ("new", Scope("portal-a")), ("new", None)}


def test_parse_tokens_accepts_an_empty_file() -> None:
    assert parse_tokens("") == ()
