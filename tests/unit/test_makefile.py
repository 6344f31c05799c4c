"""The Makefile's targets do what README and the Makefile's header say (dry runs: nothing is executed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _dry_run(*args: str) -> subprocess.CompletedProcess[str]:
    make = shutil.which("make")
    if make is None:
        pytest.fail("make is not installed: the README's two commands are make targets")
    return subprocess.run([make, "-n", "-C", str(ROOT), "--no-print-directory", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def _commands(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The recipe lines make would run, without the virtualenv bootstrap it may prepend."""
    return [line for line in result.stdout.splitlines()
            if line and "bootstrap.sh" not in line and "installed-stamp" not in line]


def test_every_phony_target_has_a_rule() -> None:
    makefile = (ROOT / "Makefile").read_text()
    [phony] = re.findall(r"^\.PHONY:(.*)$", makefile, flags=re.MULTILINE)
    for target in phony.split():
        assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.MULTILINE), f"'{target}' is .PHONY without a rule"


def test_worker_runs_the_named_adapter() -> None:
    result = _dry_run("worker", "ADAPTER=advis", "CONFIG=my/hub.toml")
    assert result.returncode == 0, result.stderr
    assert _commands(result) == [".venv/bin/python -m hub --config my/hub.toml worker advis"]


def test_worker_without_adapter_says_how_to_name_one() -> None:
    result = _dry_run("worker")
    assert result.returncode != 0
    assert "make worker ADAPTER=<name>" in result.stderr


def test_simulator_runs_the_simulator() -> None:
    result = _dry_run("simulator")
    assert result.returncode == 0, result.stderr
    assert _commands(result) == [".venv/bin/python -m hub --config examples/demo.toml simulator"]


def test_test_lints_first_and_keeps_pytest_args() -> None:
    result = _dry_run("test", "PYTEST_ARGS=tests/unit -x")
    assert result.returncode == 0, result.stderr
    assert _commands(result) == [".venv/bin/python -m ruff check .", ".venv/bin/python -m mypy",
                                 ".venv/bin/python -m pytest -q tests/unit -x"]


def test_lint_runs_ruff_and_mypy() -> None:
    result = _dry_run("lint")
    assert result.returncode == 0, result.stderr
    assert _commands(result) == [".venv/bin/python -m ruff check .", ".venv/bin/python -m mypy"]
