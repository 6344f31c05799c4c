"""`hub tracker token new|revoke` rewrite the tokens file atomically, keeping who may read it: the
mode of an existing file (and its owner and group when run as root); 0600 for a new file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hub.tracking.auth import TokenRegistry
from hub.tracking.model import Scope
from hub.tracking.tokenfile import add_token, revoke_token


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    add_token(path, portal="portal-a")
    assert _mode(path) == 0o600


def test_a_rewrite_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    first = add_token(path, portal="portal-a", name="a")
    os.chmod(path, 0o640)  # the tracker's service group reads it
    second = add_token(path, portal="portal-b", name="b")
    assert _mode(path) == 0o640
    revoke_token(path, "a")
    assert _mode(path) == 0o640
    registry = TokenRegistry.from_file(path)
    assert registry.scope_for(first.token) is None and registry.scope_for(second.token) == Scope("portal-b")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_root_keeps_the_owner_and_group_of_the_file_it_replaces(tmp_path: Path) -> None:
    """An operator with sudo must not leave the tracker's service user unable to read its file."""
    path = tmp_path / "tokens.toml"
    add_token(path, portal="portal-a", name="a")
    os.chown(path, 4321, 4322)
    add_token(path, portal="portal-b", name="b")
    st = path.stat()
    assert (st.st_uid, st.st_gid) == (4321, 4322) and _mode(path) == 0o600
    revoke_token(path, "a")
    assert (path.stat().st_uid, path.stat().st_gid) == (4321, 4322)
