"""`hub stack` before it starts anything: the derived Prometheus config differs from
monitoring/prometheus.yml only in what it must (global intervals, absolute rule paths), and a taken
port or a missing prometheus binary ends the command with one line, not a traceback. The running
stack itself is exercised by tests/integration/test_live_monitoring.py."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hub.processes import ProcessError, free_port
from hub.stack import Stack, StackOptions, derived_prometheus_config

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "monitoring" / "prometheus.yml"


def _hub_stack(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub", "stack", "--repo", str(ROOT), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False, env=env)


def test_derived_config_changes_only_the_global_intervals(tmp_path: Path) -> None:
    original = yaml.safe_load(PROM.read_text(encoding="utf-8"))
    derived = yaml.safe_load(derived_prometheus_config(PROM, tmp_path / "p.yml", "1s").read_text(encoding="utf-8"))
    assert derived["global"] == {**original["global"], "scrape_interval": "1s", "evaluation_interval": "1s"}
    assert derived["rule_files"] == [str(PROM.parent / r) for r in original["rule_files"]]
    assert all(Path(r).is_file() for r in derived["rule_files"])
    assert {k: v for k, v in derived.items() if k not in ("global", "rule_files")} == \
        {k: v for k, v in original.items() if k not in ("global", "rule_files")}
    unchanged = yaml.safe_load(derived_prometheus_config(PROM, tmp_path / "q.yml", None).read_text(encoding="utf-8"))
    assert unchanged["global"] == original["global"]
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed (Debian package prometheus)", pytrace=False)
    result = subprocess.run([promtool, "check", "config", str(tmp_path / "p.yml")], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr  # also loads the rule file by its new path


def test_a_taken_port_stops_the_stack_with_one_line() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = _hub_stack("--prometheus-port", str(port))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"port {port} (Prometheus (--prometheus-port)) is taken" in lines[0], lines[0]


def test_a_missing_prometheus_stops_the_stack_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PATH"}
    env["PATH"] = str(tmp_path)  # nothing on it: no prometheus (python runs by its full path)
    result = _hub_stack(env=env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "prometheus is not installed" in lines[0], result.stderr


def test_config_is_refused_with_one_line() -> None:
    for args in (["stack", "--config", "hub.toml"], ["--config", "hub.toml", "stack"]):
        result = subprocess.run([sys.executable, "-m", "hub", *args, "--repo", str(ROOT)], cwd=ROOT,
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "--config does not apply to `hub stack`" in lines[0], (args, result.stderr)


def test_a_hanging_topology_step_ends_the_start_with_a_hub_error(tmp_path: Path) -> None:
    """A broker that accepts TCP and never answers: `hub topology apply` hangs (pika's own timeouts are
    longer than the start timeout); the start ends with a HubError (one line at the CLI), no traceback
    of subprocess.TimeoutExpired, and the hanging child is stopped."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        options = StackOptions(repo=ROOT, state=tmp_path, prometheus_port=free_port(), start_timeout=2,
                               amqp_url=f"amqp://guest:guest@127.0.0.1:{silent.getsockname()[1]}/%2F")
        stack = Stack(options)
        with pytest.raises(ProcessError, match="hub topology apply did not finish within 2s"):
            stack.start()
    assert stack.children == []
