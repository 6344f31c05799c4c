"""The README's first command, `make demo` (= `hub --config examples/demo.toml demo`), end to end.

Runs `hub demo --count 20` as a subprocess exactly as an operator would, against the real RabbitMQ on
a throwaway vhost (``AMQP_URL``), with a copy of examples/demo.toml in a temporary folder (the demo
writes its keys, ledger and logs beside the config). It must exit 0, print a summary with every
application delivered, none dead-lettered, all byte-identical and signature-verified at the
simulator with green transport reports -- and leave no process of its own running.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.standards import STANDARDS, in_ci, missing_reason

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]
COUNT = 20


def _session_members(session_id: int) -> list[str]:
    """Live processes (pid and command) in the session the demo was started in; zombies excluded."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended meanwhile
            continue
        fields = text.rpartition(")")[2].split()  # after "pid (comm)": state ppid pgrp session ...
        if int(fields[3]) == session_id and fields[0] != "Z":
            found.append(f"{stat.parent.name} {text.partition(' ')[2].partition(')')[0]})")
    return found


def _stop_session(session_id: int) -> None:
    try:
        os.killpg(session_id, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.timeout(900)
def test_demo_delivers_every_application_and_leaves_nothing_running(broker_url: str, tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    examples.mkdir()
    config = examples / "demo.toml"
    shutil.copyfile(ROOT / "examples" / "demo.toml", config)
    env = {**os.environ, "AMQP_URL": broker_url}
    env.pop("HUB_CONFIG", None)
    started = time.monotonic()
    demo = subprocess.Popen([sys.executable, "-m", "hub", "--config", str(config), "demo", "--count", str(COUNT)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own session: every process it starts is findable
    try:
        output, _ = demo.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        _stop_session(demo.pid)
        output, _ = demo.communicate()
        pytest.fail(f"hub demo did not finish within 600 s:\n{output[-4000:]}")
    took = time.monotonic() - started

    deadline = time.monotonic() + 30  # the demo's children are stopped before it exits; allow reaping
    leftovers = _session_members(demo.pid)
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.5)
        leftovers = _session_members(demo.pid)
    _stop_session(demo.pid)
    assert not leftovers, f"hub demo left processes running: {leftovers}"

    assert demo.returncode == 0, output[-4000:]
    summary = output.partition("\nsummary\n")[2]
    assert summary, output[-4000:]
    assert re.search(rf"^  delivered: +{COUNT}/{COUNT}$", summary, re.MULTILINE), summary
    assert re.search(r"^  dead-lettered: +0$", summary, re.MULTILINE), summary
    # XTA: signature verified at the simulator; FIT-Connect: decrypted with the destination's key, hashes
    # checked, accepted, and every request and answer valid against the official OpenAPI document
    assert f"at the simulators: {COUNT} byte-identical (message + attachment), {COUNT} verified " in summary
    assert re.search(r"^  FIT-Connect: +0 OpenAPI/metadata-schema violations at the simulator$", summary,
                     re.MULTILINE), summary
    assert "FIT-Connect simulator: http://127.0.0.1:" in output
    if in_ci() or missing_reason(STANDARDS / "fit-connect") is None:  # checked whenever the official set is there
        assert "(requests checked against the official OpenAPI document)" in output
    assert re.search(rf"^  transport reports: {COUNT} green$", summary, re.MULTILINE), summary
    # spread over both XTA adapters and the FIT-Connect one
    for authority, adapter in (("azr:000100", "advis"), ("azr:000200", "advis"), ("azr:000300", "auso"),
                               ("azr:000400", "auso"), ("azr:000500", "fitconnect")):
        assert re.search(rf"^  {authority} .* adapter {adapter} +delivered {COUNT // 5}$", summary,
                         re.MULTILINE), summary
    # the return channel: every 5th application got a reply, all came back to the portal's queue
    replies = COUNT // 5
    assert re.search(rf"^  replies: +{replies} sent by the authorities, {replies} received at hub.replies.demo-portal "
                     rf"\({replies} naming their application\)$", summary, re.MULTILINE), summary
    assert re.search(rf"^  tracker: +.*\b{COUNT} delivered\b", summary, re.MULTILINE), summary
    timeline = summary.partition("  timeline of ")[2]
    for event in ("accepted", "delivering", "delivered", "transport_report", "reply_received"):
        assert re.search(rf"^    \S+  {event} ", timeline, re.MULTILINE), timeline
    assert "return channel and tracking succeeded" in summary
    assert summary.rstrip().endswith("demo succeeded"), summary
    assert f"published {COUNT} applications (all confirmed)" in output
    assert (tmp_path / "var" / "demo" / "ledger.db").is_file()  # wrote beside its config, not in the repo
    assert (tmp_path / "var" / "demo" / "tracking.db").is_file()
    print(f"hub demo --count {COUNT}: {took:.1f} s")
