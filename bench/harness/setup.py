"""What a benchmark run stands on: vhosts (management API), test PKI, one hub config, processes."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
AMQP_BASE = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
MANAGEMENT = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672/api")


def _management(method: str, path: str, body: bytes | None = None, deadline: float = 60.0) -> None:
    """One call of the management API, retried while it refuses connections (the plugin restarts
    its listener when someone runs `rabbitmq-plugins enable`, e.g. scripts/bootstrap.sh)."""
    until = time.monotonic() + deadline
    while True:
        try:
            _management_once(method, path, body)
            return
        except urllib.error.HTTPError:
            raise
        except urllib.error.URLError:
            if time.monotonic() > until:
                raise
            time.sleep(1)


def _management_once(method: str, path: str, body: bytes | None = None) -> None:
    parts = urllib.parse.urlsplit(AMQP_BASE)
    user, password = urllib.parse.unquote(parts.username or "guest"), urllib.parse.unquote(parts.password or "guest")
    request = urllib.request.Request(f"{MANAGEMENT}/{path}", data=body, method=method, headers={
        "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
        "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30):
        pass


def create_vhost(label: str) -> tuple[str, str]:
    """A fresh vhost (like tests/conftest.py's _fresh_vhost) -> (name, AMQP URL)."""
    vhost = f"hub-bench-{label}-{uuid.uuid4().hex[:8]}"
    quoted = urllib.parse.quote(vhost, safe="")
    user = urllib.parse.unquote(urllib.parse.urlsplit(AMQP_BASE).username or "guest")
    _management("PUT", f"vhosts/{quoted}")
    _management("PUT", f"permissions/{quoted}/{urllib.parse.quote(user, safe='')}",
                b'{"configure": ".*", "write": ".*", "read": ".*"}')
    return vhost, f"{AMQP_BASE.rsplit('/', 1)[0]}/{quoted}"


def delete_vhost(vhost: str) -> None:
    try:
        _management("DELETE", f"vhosts/{urllib.parse.quote(vhost, safe='')}")
    except urllib.error.URLError as exc:
        print(f"warning: could not delete vhost {vhost}: {exc}", file=sys.stderr)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(work: Path) -> Path:
    """One hub config for every variant (broker URL, endpoint and ledger come per process from the
    environment: AMQP_URL, HUB_ADAPTERS__ALPHA__ENDPOINT, HUB_LEDGER__URL)."""
    from transport.security.demopki import make_test_pki

    pki = make_test_pki(work / "pki", ["portal", "azr-000100"])
    key, cert = pki["portal"]
    text = f"""
log_level = "WARNING"
[broker]
url = "{AMQP_BASE}"
[ledger]
url = "sqlite:///{work}/ledger.db"
[limits]
max_content_bytes = {41 * 1024 * 1024}
[http]
host = "127.0.0.1"
port = 0
[[message_types]]
code = "OZG.Antrag.130101"
schema = "builtin:xauslaender/ozg-antrag-130101.xsd"
list_uri = "urn:xoev-de:xauslaender:codeliste:nachrichtentyp"
list_version = "26.11"
payload_schema = "http://www.osci.de/xauslaender2611"
[adapters.alpha]
profile = "xta2"
endpoint = "http://127.0.0.1:9/xta"
timeout = 120
signing_key = "{key}"
signing_cert = "{cert}"
service = "xauslaender1211OZGPORTALABH"
{_optional_adapter_keys()}author = {{ identifier = "alp:000001", name = "Bench-Portal", category = "Ausländerportal" }}
[[authorities]]
id = "azr:000100"
name = "ABH Bench"
adapter = "alpha"
certificate = "{pki['azr-000100'][1]}"
[simulator]
host = "127.0.0.1"
port = 0
trusted_signers = ["{pki['ca'][1]}"]
readers."azr:000100".key = "{pki['azr-000100'][0]}"
"""
    path = work / "hub.toml"
    path.write_text(text)
    return path


def _optional_adapter_keys() -> str:
    """Poll transport reports every second where the adapter config still has that key (the report
    scheduler of issue 11 may replace it): the same setting as the issue's figures."""
    # the config schema, read only to stay valid across changes
    from hub.config import AdapterConfig

    fields = getattr(AdapterConfig, "model_fields", {})
    return "report_poll_interval = 1\n" if "report_poll_interval" in fields else ""


def env_for(amqp: str, endpoint: str | None = None, ledger: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "AMQP_URL": amqp, "PYTHONPATH": str(ROOT)}
    if endpoint:
        env["HUB_ADAPTERS__ALPHA__ENDPOINT"] = endpoint
    if ledger:
        env["HUB_LEDGER__URL"] = f"sqlite:///{ledger}"
    return env


def hub(config: Path, *args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A `hub` command (python -m hub) as a child process, output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "hub", "--config", str(config), *args], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def module(name: str, *args: str, env: dict[str, str] | None = None, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", name, *args], cwd=ROOT, env=env or env_for(AMQP_BASE),
                                stdout=out, stderr=subprocess.STDOUT)


def get_json(url: str, timeout: float = 30) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return json.loads(answer.read())


def post(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=30).close()


def tail(log: Path | None, lines: int = 15) -> str:
    """The last lines of a process's log, for an error message."""
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def wait_http(url: str, deadline: float, what: str, proc: subprocess.Popen[bytes] | None = None,
              log: Path | None = None) -> None:
    """Until ``url`` answers 200 (a process that died first fails at once, with its log's tail)."""
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready:\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready within {deadline:.0f} s ({url})")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL after ``timeout``: only processes this harness started."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
