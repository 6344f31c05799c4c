"""Editing the tracker's token file ([tracker] tokens_file) for `hub tracker token new|revoke`.

The file holds hashes only: a new token is shown once to whoever created it and stored as the
hex SHA-256 of its text. The format is ``hub.tracking.auth``'s (every change is checked with its parser before it is
written)::

    [[tokens]]
    name = "portal-a-20261201-093000"
    portal = "portal-a"          # absent for an operator token
    operator = false             # true: sees every portal
    sha256 = "<64 hex digits>"

Every change replaces the file atomically (a temporary file in the same folder, then rename), so
the tracker, which re-reads the file when it changes, never sees half an entry. The replacement
keeps the mode of the file it replaces (and its owner and group when run as root), so the tracker's
service user can still read it after an operator edited it with sudo; a new file is ``0600``.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.config import PORTAL_PATTERN
from hub.errors import ConfigError, HubError
from hub.tracking.auth import hash_token, new_token, parse_tokens

_HEADER = ("# Bearer tokens of the tracking API: SHA-256 hashes only, never a token in clear.\n"
           "# Managed with `hub tracker token new|revoke`; the tracker re-reads this file when it changes.\n")


class TokenFileError(HubError):
    """The token file cannot be changed as asked (unknown name, name taken, unreadable file)."""

    reason = "token_file"


@dataclass(frozen=True)
class NewToken:
    name: str
    token: str  # in clear: shown once, never stored
    sha256: str


def read_entries(path: Path) -> list[dict[str, Any]]:
    """The ``[[tokens]]`` entries of the file ([] when it does not exist yet)."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"tracker.tokens_file: cannot read {path}: {type(exc).__name__}: {exc}") from None
    entries = doc.get("tokens", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"tracker.tokens_file: {path}: 'tokens' must be an array of tables ([[tokens]])")
    return entries


def _default_name(portal: str | None, taken: set[str]) -> str:
    stem = f"{(portal or 'operator')[:40]}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}"
    return name


def add_token(path: Path, *, portal: str | None, name: str | None = None) -> NewToken:
    """Create a random token for ``portal`` (None: an operator token, sees every portal), append
    its hash under ``name`` and return it (the only time it exists in clear)."""
    if portal is not None and not PORTAL_PATTERN.match(portal):
        raise TokenFileError(f"'{portal[:64]}' is not a portal id (letters, digits, '-', '_'; the app_id)")
    entries = read_entries(path)
    taken = {str(e.get("name")) for e in entries}
    if name is not None:
        if name in taken:
            raise TokenFileError(f"a token named '{name}' exists already in {path}: revoke it or choose another name")
    else:
        name = _default_name(portal, taken)
    token = new_token()
    digest = hash_token(token)
    lines = ["", f"# created {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} by `hub tracker token new`",
             "[[tokens]]", f"name = {json.dumps(name)}"]
    if portal is not None:
        lines.append(f"portal = {json.dumps(portal)}")
    lines += [f"operator = {'false' if portal is not None else 'true'}", f'sha256 = "{digest}"', ""]
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = _HEADER
    except OSError as exc:
        raise ConfigError(f"tracker.tokens_file: cannot read {path}: {exc.strerror}") from None
    if text and not text.endswith("\n"):
        text += "\n"
    _replace(path, _checked(path, text + "\n".join(lines)))
    return NewToken(name, token, digest)


def revoke_token(path: Path, name: str) -> None:
    """Remove the entry called ``name`` (its token stops working when the tracker re-reads the file)."""
    entries = read_entries(path)
    if not any(e.get("name") == name for e in entries):
        known = ", ".join(sorted(str(e.get("name")) for e in entries)) or "none"
        raise TokenFileError(f"no token named '{name}' in {path} (known: {known})")
    text = path.read_text(encoding="utf-8")
    kept = _without_entry(text, name)
    remaining = tomllib.loads(kept).get("tokens", [])
    if remaining != [e for e in entries if e.get("name") != name]:  # hand-edited beyond what we can cut safely
        raise TokenFileError(f"cannot remove '{name}' from {path} safely: edit the file by hand")
    _replace(path, _checked(path, kept))


def _checked(path: Path, text: str) -> str:
    """``text`` if the tracker will accept it as its tokens file (else nothing is written)."""
    try:
        parse_tokens(text)
    except ConfigError as exc:
        raise TokenFileError(f"{path} would not be a valid tokens file: {exc}; nothing changed") from None
    return text


def _without_entry(text: str, name: str) -> str:
    """``text`` without the ``[[tokens]]`` block whose name is ``name`` (and the comment lines
    directly above its header)."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip().startswith("[")]
    for n, start in enumerate(starts):
        if lines[start].strip() != "[[tokens]]":
            continue
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        block = "".join(lines[start:end])
        try:
            if tomllib.loads(block.replace("[[tokens]]", "[t]", 1)).get("t", {}).get("name") != name:
                continue
        except tomllib.TOMLDecodeError:
            continue
        first = start
        while first > 0 and lines[first - 1].lstrip().startswith("#") and lines[first - 1] not in _HEADER:
            first -= 1
        while end > first and end - 1 > start and lines[end - 1].lstrip().startswith("#"):
            end -= 1  # the comments at the end of the block belong to the next entry
        return "".join(lines[:first] + lines[end:])
    return text


def _replace(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        old: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        old = None
    except OSError as exc:
        raise ConfigError(f"tracker.tokens_file: cannot read {path}: {exc.strerror}") from None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if old is None:
            os.chmod(tmp, 0o600)  # hashes only, but nobody else needs to read them
        else:
            os.chmod(tmp, stat.S_IMODE(old.st_mode))
            if os.geteuid() == 0:  # root (sudo) edits the service user's file: it stays theirs
                os.chown(tmp, old.st_uid, old.st_gid)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ConfigError(f"tracker.tokens_file: cannot write {path}: {exc.strerror}") from None
