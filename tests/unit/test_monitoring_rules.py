"""The alert rules and the scrape config are proven with promtool, and every alert is covered.

Why: an alert that never fires (wrong metric name, wrong label, wrong bucket bound) looks exactly
like a quiet system. So every rule runs against promtool's unit tests (fires and stays silent),
every alert has a runbook paragraph, and every hub metric a rule uses is in the catalogue and
written the way the hub writes it. promtool comes from Debian's `prometheus` package
(scripts/bootstrap.sh); without it these tests fail, they never skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from hub.metrics import WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
ALERTS = MONITORING / "alerts.yml"
SCRAPE = MONITORING / "prometheus.yml"
RULE_TESTS = sorted((MONITORING / "tests").glob("*.yml"))
OPERATIONS = ROOT / "docs" / "operations.md"
CATALOGUE = ROOT / "docs" / "metrics.md"
RUNBOOK_PREFIX = "docs/operations.md#"
SEVERITIES = {"critical", "warning"}
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
# RabbitMQ's /metrics/detailed only answers the families asked for (rabbitmq-server,
# deps/rabbitmq_prometheus/src/collectors/prometheus_rabbitmq_core_metrics_collector.erl)
RABBITMQ_FAMILIES = {
    "rabbitmq_detailed_queue_messages_ready": "queue_coarse_metrics",
    "rabbitmq_detailed_queue_messages_unacked": "queue_coarse_metrics",
    "rabbitmq_detailed_queue_messages": "queue_coarse_metrics",
    "rabbitmq_detailed_queue_consumers": "queue_consumer_count",
}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: install Debian's `prometheus` package "
                    "(scripts/bootstrap.sh does) to check the alert rules", pytrace=False)
    return subprocess.run([promtool, *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _alerts() -> dict[str, dict[str, Any]]:
    rules = [rule for group in _load(ALERTS)["groups"] for rule in group["rules"]]
    return {rule["alert"]: rule for rule in rules if "alert" in rule}


def _rule_test_cases() -> list[dict[str, Any]]:
    """Every `alert_rule_test` entry of every promtool test file."""
    cases: list[dict[str, Any]] = []
    for path in RULE_TESTS:
        for test in _load(path)["tests"]:
            cases.extend(test.get("alert_rule_test", []))
    return cases


def _slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading (lowercase, punctuation dropped, spaces to '-')."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(markdown: str) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+)$", markdown, re.MULTILINE)}


def test_promtool_accepts_the_scrape_config() -> None:
    result = _promtool("check", "config", str(SCRAPE.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_rules() -> None:
    result = _promtool("check", "rules", str(ALERTS.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    assert RULE_TESTS, "no promtool unit tests in monitoring/tests/"
    result = _promtool("test", "rules", *(str(p.relative_to(ROOT)) for p in RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_tests_load_the_projects_rules() -> None:
    for path in RULE_TESTS:
        assert _load(path)["rule_files"] == ["../alerts.yml"], f"{path.name} must test monitoring/alerts.yml"


def test_every_alert_has_a_test_that_fires_it_and_one_that_keeps_it_silent() -> None:
    cases = _rule_test_cases()
    fired = {c["alertname"] for c in cases if c.get("exp_alerts")}
    silent = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    alerts = set(_alerts())
    assert not alerts - fired, f"alerts no promtool test fires: {sorted(alerts - fired)}"
    assert not alerts - silent, f"alerts no promtool test keeps silent: {sorted(alerts - silent)}"
    assert not (fired | silent) - alerts, f"tests of unknown alerts: {sorted((fired | silent) - alerts)}"


def test_firing_cases_check_labels_and_annotations() -> None:
    for case in _rule_test_cases():
        for expected in case.get("exp_alerts") or []:
            assert expected.get("exp_labels", {}).get("severity") in SEVERITIES, case["alertname"]
            assert "runbook" in expected.get("exp_annotations", {}), case["alertname"]


def test_every_alert_has_severity_summary_and_a_runbook_that_exists() -> None:
    anchors = _anchors(OPERATIONS.read_text())
    section = OPERATIONS.read_text().split("\n## Alerts and runbooks\n", 1)
    assert len(section) == 2, "docs/operations.md has no '## Alerts and runbooks' section"
    section_anchors = _anchors(section[1])
    for name, rule in _alerts().items():
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity label"
        annotations = rule.get("annotations", {})
        assert annotations.get("summary"), f"{name}: summary annotation"
        runbook = annotations.get("runbook", "")
        assert runbook.startswith(RUNBOOK_PREFIX), f"{name}: runbook must point into docs/operations.md"
        anchor = runbook.removeprefix(RUNBOOK_PREFIX)
        assert anchor in anchors, f"{name}: docs/operations.md has no heading for #{anchor}"
        assert anchor in section_anchors, f"{name}: #{anchor} is not under 'Alerts and runbooks'"


def _hub_metrics_in_rules() -> set[str]:
    return {m for rule in _alerts().values() for m in re.findall(r"\bhub_[a-z0-9_]+", rule["expr"])}


def test_every_hub_metric_in_the_rules_is_in_the_catalogue() -> None:
    documented = set(re.findall(r"`(hub_[a-z0-9_]+)`", CATALOGUE.read_text()))
    used = _hub_metrics_in_rules()
    assert used, "the rules use no hub metric"
    missing = set()
    for metric in used:
        base = next((metric.removesuffix(s) for s in HISTOGRAM_SUFFIXES if metric.endswith(s)), metric)
        if metric not in documented and base not in documented:
            missing.add(metric)
    assert not missing, f"metrics used in alerts.yml but not in docs/metrics.md: {sorted(missing)}"


def test_histogram_bounds_in_the_rules_are_the_ones_the_hub_writes() -> None:
    """le="30" would match nothing: prometheus_client writes the 30 s bucket as le="30.0"."""
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    metrics.duration.labels("xta-a", "delivered").observe(1.0)
    exposition = generate_latest(registry).decode()
    bounds = {(name, le) for rule in _alerts().values()
              for name, le in re.findall(r'(hub_[a-z0-9_]+_bucket)\{[^}]*le="([^"]+)"', rule["expr"])}
    assert bounds, "the latency SLO rules use no histogram bucket"
    for name, le in bounds:
        assert re.search(rf'^{name}\{{[^}}]*le="{re.escape(le)}"', exposition, re.MULTILINE), \
            f'{name} has no bucket le="{le}" in the hub\'s exposition'


def test_broker_metrics_in_the_rules_are_scraped() -> None:
    """Each rabbitmq_detailed_* metric needs its family in the `rabbitmq` job's params; the alarms
    come from the plugin's default /metrics."""
    jobs = {job["job_name"]: job for job in _load(SCRAPE)["scrape_configs"]}
    detailed = jobs["rabbitmq"]
    assert detailed["metrics_path"] == "/metrics/detailed"
    families = set(detailed["params"]["family"])
    exprs = " ".join(rule["expr"] for rule in _alerts().values())
    for metric in set(re.findall(r"\brabbitmq_detailed_[a-z_]+", exprs)):
        assert metric in RABBITMQ_FAMILIES, f"{metric}: not a known /metrics/detailed queue metric"
        assert RABBITMQ_FAMILIES[metric] in families, f"{metric}: family {RABBITMQ_FAMILIES[metric]} not scraped"
    if re.search(r"\brabbitmq_alarms_", exprs):
        assert any(job.get("metrics_path", "/metrics") == "/metrics"
                   and "15692" in str(job["static_configs"]) for job in jobs.values()), \
            "rabbitmq_alarms_* needs a job scraping the plugin's default /metrics"


def test_scrape_config_covers_the_hub_processes_with_relative_rule_files() -> None:
    config = _load(SCRAPE)
    assert all(not Path(p).is_absolute() for p in config["rule_files"]), "rule_files must stay relative"
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"hub-workers", "hub-tracker", "hub-replies", "rabbitmq", "rabbitmq-node"} <= jobs
    target_down = re.search(r'job=~"([^"]+)"', _alerts()["HubTargetDown"]["expr"])
    assert target_down is not None
    for job in jobs:
        if job.startswith("hub-"):
            assert re.fullmatch(target_down.group(1), job), f"HubTargetDown does not watch job {job}"
