"""A missing official standard set skips locally (with the reason) and fails in CI (tests/standards.py)."""

from __future__ import annotations

import pytest

from tests.standards import STANDARDS, standards_path

ABSENT = "no-such-standard-set-0f3c"


def test_present_set_is_returned_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    if not STANDARDS.is_dir():
        pytest.fail(f"{STANDARDS} is absent: nothing to compare with")
    assert standards_path("") == STANDARDS


def _outcome(relative: str, **kw: bool) -> BaseException:
    """The exception ``standards_path`` ends the caller with (a skip must not end *this* test)."""
    try:
        standards_path(relative, **kw)
    except BaseException as exc:  # noqa: BLE001 - pytest's skip/fail outcomes are BaseExceptions
        return exc
    raise AssertionError(f"standards_path({relative!r}) returned for an absent set")


def test_missing_set_skips_with_its_path_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    outcome = _outcome(ABSENT)
    assert isinstance(outcome, pytest.skip.Exception) and ABSENT in str(outcome)


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_missing_set_fails_in_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    for module_level in (False, True):
        outcome = _outcome(ABSENT, module_level=module_level)
        assert isinstance(outcome, pytest.fail.Exception), repr(outcome)
        assert "a failure, not a skip" in str(outcome) and ABSENT in str(outcome)
