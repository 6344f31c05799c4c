"""The monitoring, proven against what it watches: ``hub stack`` (hub/stack.py: the processes of
compose.yaml, two workers of one adapter, the simulator, tracker, reply poller, and a real Prometheus
from Debian's package with the project's scrape config and alert rules; the broker's prometheus plugin
on 15692) gets traffic with a delivery, a red transport report, a retry, a dead letter, a parked and a
published reply, and then an endpoint outage that opens the circuit breaker. Then Prometheus' HTTP API
must evaluate every PromQL expression of every dashboard panel and every alert rule without error,
every panel over hub_* metrics must return series carrying the labels its legend names, every
hub_*/rabbitmq_* selector of the alert rules must return series, and HubBreakerOpen must be pending or
firing."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from adapters.xta2 import Xta2Addressing, xta2_addressing
from hub.config import AuthorityConfig, HubConfig
from hub.demo_replies import send_demo_replies
from hub.envelope import Envelope, new_envelope
from hub.processes import free_port
from hub.publisher import ConfirmingPublisher, publish_envelope
from hub.replies_load import sample_reply, send_replies
from hub.samples import make_ozg_application
from hub.stack import PROMETHEUS_ENV, Stack, StackOptions
from tests.integration.helpers import wait_for
from tests.monitoring_support import (
    ROOT,
    alert_rules,
    catalogue,
    catalogued,
    metric_names,
    panel_queries,
    selectors,
)
from transport.security.keys import load_certificate, load_signing_identity
from transport.xta.metadata import Party

pytestmark = pytest.mark.broker

ADAPTER = "advis"  # the two workers' adapter (examples/stack.toml)
GREEN, RED, NO_WORKER = "azr:000100", "azr:000200", "azr:000300"  # advis, advis (red reports), auso
PORTAL = "demo-portal"
BREAKER_ALERT = "HubBreakerOpen"


# --- Prometheus HTTP API ---------------------------------------------------------------------
def _get(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            body: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # 400/422: the query did not parse or evaluate
        body = json.loads(exc.read() or b"{}") or {"status": "error", "error": f"HTTP {exc.code}"}
    return body


def query(prometheus: str, expr: str) -> tuple[list[dict[str, Any]], str | None]:
    """Instant query: (vector result, None) or ([], the error Prometheus gave)."""
    body = _get(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    if body.get("status") != "success":
        return [], f"{body.get('errorType')}: {body.get('error')}"
    data = body["data"]
    if data["resultType"] != "vector":
        return [], f"result type {data['resultType']}, expected a vector"
    return list(data["result"]), None


def value(prometheus: str, expr: str) -> float:
    result, error = query(prometheus, expr)
    assert error is None, f"{expr}: {error}"
    return sum(float(r["value"][1]) for r in result)


def at_least_one(prometheus: str, expr: str) -> bool:
    return value(prometheus, expr) >= 1


def _post(url: str, payload: dict[str, Any]) -> None:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status in (200, 201, 204), resp.status


# --- traffic -----------------------------------------------------------------------------------
def _reader(config: HubConfig, authority: AuthorityConfig) -> Xta2Addressing:
    """The authority's xta2 keys as the adapter reads them (paths against the config's folder)."""
    base = config.source.parent if config.source else Path.cwd()
    return xta2_addressing(authority.addressing, base, f"authorities[{authority.id}]")


def _application(config: HubConfig, destination: str, seed: int) -> Envelope:
    authority = next(a for a in config.authorities if a.id == destination)
    author = config.adapters[authority.adapter].author
    assert author is not None  # the xta2 adapters of the stack name their author
    xml, message_id = make_ozg_application(
        reader=Party(authority.id, authority.name, _reader(config, authority).reader_category),
        author=Party(author.identifier, author.name, author.category), seed=seed)
    return new_envelope(destination=destination, message_type="OZG.Antrag.130101", message=xml, portal=PORTAL,
                        message_id=message_id, filename="antrag.xml", test=True)


def _invalid(destination: str) -> Envelope:
    """Well-formed XML that is no XAusländer application: schema_violation, a dead letter."""
    return new_envelope(destination=destination, message_type="OZG.Antrag.130101", portal=PORTAL,
                        message=b"<antrag xmlns='urn:example:not-xauslaender'><x/></antrag>",
                        message_id=str(uuid.uuid4()), filename="antrag.xml", test=True)


def _publish(config: HubConfig, envelopes: list[Envelope]) -> None:
    with ConfirmingPublisher(config.broker, "live-monitoring-test") as publisher:
        for future in [publish_envelope(publisher, e) for e in envelopes]:
            future.result(timeout=60)


def _send_replies(config: HubConfig, sim_url: str, delivered: Envelope) -> None:
    """One reply that reaches the portal's queue and one encrypted for the wrong key (parked)."""
    send_demo_replies(config, PORTAL, f"{sim_url}/xta", [delivered], every=1)
    mailbox = config.mailboxes[PORTAL]
    portal = Party(mailbox.account.identifier, mailbox.account.name, mailbox.account.category)
    authority = next(a for a in config.authorities if a.id == delivered.destination)
    reader = _reader(config, authority)
    party = Party(authority.id, authority.name, reader.reader_category)
    key = reader.certificate.with_name(reader.certificate.name.replace(".cert.pem", ".key.pem"))
    wrong = load_certificate(reader.certificate)  # the portal cannot decrypt what is meant for the authority
    forged = sample_reply("OZG.Statusmeldung.130104", portal_party=portal, authority_party=party,
                          antragsidentifikation="unknown-application", seed=99, encrypt_for=wrong)
    portal_cert = load_certificate(mailbox.decryption_key.with_name("portal.cert.pem"))
    send_replies(f"{sim_url}/xta", [forged], authority_identity=load_signing_identity(key, reader.certificate),
                 authority_party=party, portal_party=portal, portal_certificate=portal_cert)


# --- the checks ----------------------------------------------------------------------------------
def _check_panels(prometheus: str, timeout: float) -> list[str]:
    """Every dashboard expression evaluates; those over hub_* metrics (and the broker's) return series
    with the labels their legend names. Retried until ``timeout``: rates need two scrapes."""
    known = catalogue()
    pending = panel_queries()
    deadline = time.monotonic() + timeout
    final: list[str] = []  # errors and wrong labels: waiting does not heal them
    waiting: list[str] = []  # no series (yet): retried until the deadline
    while pending:
        waiting, still = [], []
        for q, variables in pending:
            expr = q.substituted(variables)
            result, error = query(prometheus, expr)
            if error is not None:
                final.append(f"{q.where}: {expr} -> {error}")
                continue
            names = metric_names(q.expr)
            if not names:
                continue  # `up` only: evaluated, nothing of the hub's to look for
            if not result:
                still.append((q, variables))
                waiting.append(f"{q.where}: {expr} -> no series")
                continue
            wanted = q.legend_labels()
            if any((entry := catalogued(n, known)) and "adapter" in known[entry] for n in names):
                wanted.add("adapter")
            bad = [r["metric"] for r in result if not wanted <= set(r["metric"])]
            if bad:
                final.append(f"{q.where}: {expr} -> series without {sorted(wanted)}: {bad[:3]}")
            elif "adapter" in wanted and ADAPTER not in {r["metric"]["adapter"] for r in result}:
                still.append((q, variables))
                waiting.append(f"{q.where}: {expr} -> no series of adapter {ADAPTER}")
        if not still or time.monotonic() > deadline:
            break
        pending = still
        time.sleep(2)
    return final + waiting


def _check_alert_rules(prometheus: str) -> list[str]:
    problems = []
    for rule in alert_rules():
        _, error = query(prometheus, rule["expr"])
        if error is not None:
            problems.append(f"{rule['alert']}: {error}")
        for selector in selectors(rule["expr"]):
            result, error = query(prometheus, selector)
            if error is not None or not result:
                problems.append(f"{rule['alert']}: selector {selector} -> {error or 'no series'}")
    return problems


def _breaker_alert(prometheus: str) -> list[dict[str, Any]]:
    alerts = _get(f"{prometheus}/api/v1/alerts")["data"]["alerts"]
    return [a for a in alerts if a["labels"].get("alertname") == BREAKER_ALERT
            and a["labels"].get("adapter") == ADAPTER and a["state"] in ("pending", "firing")]


def test_dashboards_and_alert_rules_evaluate_on_the_live_stack(broker_url: str, tmp_path: Path) -> None:
    started = time.monotonic()
    options = StackOptions(
        repo=ROOT, state=tmp_path, adapter=ADAPTER, scrape_interval="1s", amqp_url=broker_url,
        prometheus_port=free_port(),
        simulator_args=("--report-status", f"{RED}=3"),  # deliveries to RED get a red transport report
        environ={f"HUB_ADAPTERS__{ADAPTER.upper()}__BREAKER__CONSECUTIVE_FAILURES": "3"})
    stack = Stack(options)
    try:
        stack.start()
        assert stack.config is not None
        config, prom, sim = stack.config, stack.prometheus_url, stack.simulator_url
        (prometheus,) = [c for c in stack.children if c.name == "prometheus"]
        environ = Path(f"/proc/{prometheus.process.pid}/environ").read_bytes().split(b"\0")
        names = {entry.split(b"=", 1)[0].decode() for entry in environ if entry}
        assert names <= set(PROMETHEUS_ENV), f"Prometheus got {sorted(names - set(PROMETHEUS_ENV))}"  # no AMQP_URL
        wait_for(lambda: value(prom, f'count(hub_consumer_connected{{adapter="{ADAPTER}"}} == 1)') == 2, 60,
                 interval=1, what="both workers scraped as targets of one adapter")

        # a delivery, a red report, a retry (one 503 on sendMessage), a dead letter, a queue without consumer
        _post(f"{sim}/_sim/inject", {"operation": "sendMessage", "http_status": 503, "count": 1})
        good = [_application(config, GREEN, seed) for seed in range(3)]
        _publish(config, [*good, *(_application(config, RED, 10 + s) for s in range(2)),
                          _application(config, NO_WORKER, 20), _invalid(GREEN)])
        wait_for(lambda: value(prom, 'sum(hub_messages_processed_total{outcome="delivered"})') >= 1, 60, interval=1,
                 what="a delivery")
        delivered = next(e for e in good if _simulator_has(sim, e))
        _send_replies(config, sim, delivered)
        for what, expr in (
            ("a retry", 'sum(hub_messages_processed_total{outcome="retry_scheduled"})'),
            ("a dead letter", 'sum(hub_messages_dead_lettered_total{reason="schema_violation"})'),
            ("a red transport report", 'sum(hub_transport_reports_total{result="red"})'),
            ("a published reply", 'sum(hub_replies_total{outcome="published"})'),
            ("a parked reply", "sum(hub_replies_parked_total)"),
        ):
            wait_for(functools.partial(at_least_one, prom, expr), 60, interval=1, what=what)

        # the endpoint goes down: every call 503, the breakers open
        _post(f"{sim}/_sim/chaos", {"outages": [{"start": 0, "duration": 900, "mode": "503"}]})
        _publish(config, [_application(config, GREEN, 100 + s) for s in range(10)])
        wait_for(lambda: value(prom, f'max(hub_circuit_breaker_state{{adapter="{ADAPTER}"}})') >= 1, 60, interval=1,
                 what="an open breaker")

        problems = _check_panels(prom, timeout=45)
        problems += _check_alert_rules(prom)
        assert not problems, "\n".join(problems) + _log_tails(stack.log_dir)

        # max(state) >= 1 for 10m: pending from the first evaluation that sees the open breaker
        wait_for(lambda: _breaker_alert(prom), timeout=60, interval=1, what=f"{BREAKER_ALERT} pending or firing")
        assert stack.exited() is None, f"{stack.exited()} died during the test"
    finally:
        stack.stop()
    print(f"live monitoring test: {time.monotonic() - started:.0f}s")


def _log_tails(log_dir: Path, lines: int = 5) -> str:
    """The last lines of every process' log, for a failure message."""
    out = []
    for log in sorted(log_dir.glob("*.log")):
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        out.append(f"--- {log.name}\n" + "\n".join(tail))
    return "\n" + "\n".join(out)


def _simulator_has(sim: str, envelope: Envelope) -> bool:
    with urllib.request.urlopen(f"{sim}/_sim/messages", timeout=10) as resp:
        messages = json.loads(resp.read())
    digest = envelope.content.message.sha256
    return any(m.get("parts") and m["parts"][0]["sha256"] == digest for m in messages)


def _start_hub_stack(broker_url: str, state: Path) -> subprocess.Popen[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HUB_")}, "AMQP_URL": broker_url}
    return subprocess.Popen([sys.executable, "-m", "hub", "stack", "--repo", str(ROOT), "--state", str(state),
                             "--prometheus-port", str(free_port()), "--scrape-interval", "1s"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _read_until(proc: subprocess.Popen[str], prefix: str, timeout: float = 120) -> list[str]:
    """Lines of `hub stack` up to the first starting with ``prefix`` (or up to its end)."""
    assert proc.stdout is not None
    output: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        output.append(line)
        if line.startswith(prefix):
            break
    assert output and output[-1].startswith(prefix), "".join(output)
    return output


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _alive(pids: list[int]) -> list[int]:
    """Those still running (a zombie not yet reaped by init has ended)."""
    out = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            out.append(pid)
    return out


def _cleanup(proc: subprocess.Popen[str], children: list[int]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pid in _alive(children):  # only the stack's own children, by pid
        os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_hub_stack_stops_every_process_on_a_signal(broker_url: str, tmp_path: Path, sig: signal.Signals) -> None:
    """The command as operators run it: starts the six long-running processes, and SIGTERM (what
    Ctrl-C also triggers) or SIGHUP (the terminal closed) ends every one of them and the command with 0."""
    proc = _start_hub_stack(broker_url, tmp_path)
    children: list[int] = []
    try:
        _read_until(proc, "stack running")
        children = _children(proc.pid)
        names = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[-60:] for pid in children]
        assert len(children) == 6, (children, names)  # simulator, 2 workers, tracker, replies, prometheus
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 0
        assert proc.stdout is not None
        rest = proc.stdout.read()
        assert "stack stopped" in rest, rest
        assert _alive(children) == [], f"still running after {sig.name}: {_alive(children)}"
    finally:
        _cleanup(proc, children)


def test_hub_stack_stops_on_sigint_during_start_up(broker_url: str, tmp_path: Path) -> None:
    """Ctrl-C while the workers are still starting ends the start-up there: no "stack running", nothing
    started after the signal, every process started before it stopped."""
    proc = _start_hub_stack(broker_url, tmp_path)
    children: list[int] = []
    try:
        _read_until(proc, "simulator:")  # the workers, tracker and reply poller are spawned, not ready yet
        children = _children(proc.pid)
        assert children, "no child running while the stack starts"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert proc.stdout is not None
        rest = proc.stdout.read()
        assert "stop requested during start-up" in rest and "stack running" not in rest, rest
        assert "prometheus" not in rest, rest  # nothing started after the signal
        assert _alive(children) == [], f"still running after SIGINT: {_alive(children)}"
    finally:
        _cleanup(proc, children)
