"""Where the tests find the official standard sets: ``../shared/standards`` beside the project,
read in place (never copied, never fetched). The one place that decides what a missing set means.

Locally a missing set skips the tests that need it, with the reason (``-rs`` lists every skip). In CI
(``CI=true``) the folder is always laid beside the clone, so a missing set is a failure: a green run
must have held the hub against the official schemas.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STANDARDS = ROOT.parent / "shared" / "standards"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing_reason(path: Path) -> str | None:
    """None if ``path`` is there; else why the tests that need it cannot run."""
    if path.exists():
        return None
    return f"official standards {path} are absent (they live in ../shared/standards beside the project)"


def standards_path(relative: str, *, module_level: bool = False) -> Path:
    """``../shared/standards/<relative>``; skips (locally) or fails (CI) the caller when absent.

    ``module_level=True`` for use at import time of a test module (skips or fails the whole module)."""
    path = STANDARDS / relative
    reason = missing_reason(path)
    if reason is not None:
        if in_ci():
            pytest.fail(f"{reason}; CI=true: a missing standard set is a failure, not a skip", pytrace=False)
        pytest.skip(reason, allow_module_level=module_level)
    return path
