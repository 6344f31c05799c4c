"""The Grafana dashboards of monitoring/grafana/dashboards/ are well-formed and only ask for metrics
that exist: valid JSON with unique panel ids, every data panel has PromQL targets on the provisioned
datasource, every metric is in docs/metrics.md (or comes from RabbitMQ's plugin), adapter panels
honour the `adapter` variable (listed from a gauge set at start) and aggregate several workers by
adapter, histogram_quantile keeps `le`, rate/increase only see counters (also in the alert rules),
and promtool parses every expression. The provider path is the one compose.yaml mounts them at. That every expression also
returns series on a live stack is tests/integration/test_live_monitoring.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring_support import (
    DASHBOARDS,
    ROOT,
    alert_rules,
    all_panels,
    catalogue,
    catalogued,
    load_dashboards,
    metric_names,
    panel_queries,
    selectors,
)

PROVISIONING = ROOT / "monitoring" / "grafana" / "provisioning"
DATASOURCE = PROVISIONING / "datasources" / "prometheus.yaml"
PROVIDERS = PROVISIONING / "dashboards"
COMPOSE = ROOT / "compose.yaml"
#: metrics that are neither the hub's nor RabbitMQ's: Prometheus' own target health
PROMETHEUS_METRICS = {"up"}


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    found = load_dashboards()
    assert {"hub-overview.json", "rabbitmq.json", "tracker.json"} <= set(found), sorted(found)
    return found


def _datasource_uid() -> str:
    uid: str = yaml.safe_load(DATASOURCE.read_text(encoding="utf-8"))["datasources"][0]["uid"]
    return uid


def test_dashboards_are_valid_with_unique_ids_and_targets(dashboards: dict[str, dict[str, Any]]) -> None:
    uids = [d["uid"] for d in dashboards.values()]
    assert len(set(uids)) == len(uids), f"dashboard uids repeat: {uids}"
    for name, dashboard in dashboards.items():
        assert dashboard["schemaVersion"] >= 36 and dashboard["title"], name
        panels = all_panels(dashboard)
        ids = [p["id"] for p in panels]
        assert len(set(ids)) == len(ids), f"{name}: panel ids repeat: {sorted(ids)}"
        data_panels = [p for p in panels if p["type"] != "row"]
        assert data_panels, name
        for panel in data_panels:
            where = f"{name} panel {panel['id']} ({panel.get('title')})"
            assert panel.get("title"), where
            assert panel.get("targets"), f"{where}: no targets"
            refs = [t.get("refId") for t in panel["targets"]]
            assert len(set(refs)) == len(refs), f"{where}: refIds repeat"
            for target in panel["targets"]:
                assert str(target.get("expr", "")).strip(), f"{where}: a target without expr"
            pos = panel["gridPos"]
            assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, f"{where}: {pos}"


def test_every_panel_uses_the_provisioned_datasource(dashboards: dict[str, dict[str, Any]]) -> None:
    uid = _datasource_uid()
    for name, dashboard in dashboards.items():
        for panel in all_panels(dashboard):
            if panel["type"] == "row":
                continue
            where = f"{name} panel {panel['id']}"
            assert panel["datasource"] == {"type": "prometheus", "uid": uid}, where
            for target in panel["targets"]:
                assert target.get("datasource", panel["datasource"])["uid"] == uid, where
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                assert variable["datasource"]["uid"] == uid, f"{name}: variable {variable['name']}"


def test_every_metric_is_catalogued_or_from_the_broker(dashboards: dict[str, dict[str, Any]]) -> None:
    known = catalogue()
    assert "hub_messages_received_total" in known and "adapter" in known["hub_messages_received_total"]
    for query, _ in panel_queries():
        names = metric_names(query.expr)
        bare = set(re.findall(r"\b([a-z_][a-z0-9_]*)\s*\{", re.sub(r'"[^"]*"|`[^`]*`', '""', query.expr)))
        assert names or bare & PROMETHEUS_METRICS, f"{query.where}: no metric in {query.expr}"
        assert bare <= names | PROMETHEUS_METRICS, f"{query.where}: unknown metrics {bare - names}"
        for name in names:
            if name.startswith("rabbitmq_"):
                continue
            assert catalogued(name, known), f"{query.where}: {name} is not in docs/metrics.md"


def test_adapter_panels_follow_the_variable_and_aggregate_workers(dashboards: dict[str, dict[str, Any]]) -> None:
    overview = dashboards["hub-overview.json"]
    (adapter,) = [v for v in overview["templating"]["list"] if v["name"] == "adapter"]
    # a gauge every worker sets at start: the list is complete before the first message (a counter
    # like hub_messages_received_total has no series of an adapter that has had no traffic)
    assert adapter["query"]["query"] == adapter["definition"] == "label_values(hub_circuit_breaker_state, adapter)"
    assert adapter["includeAll"] and adapter["multi"] and adapter["allValue"] == ".*"
    known = catalogue()
    for query, _ in panel_queries():
        for selector in selectors(query.expr):
            name = catalogued(selector.split("{")[0], known)
            if name is None or "adapter" not in known[name]:
                continue
            assert query.dashboard == "hub-overview.json", f"{query.where}: adapter metrics belong on the overview"
            assert 'adapter=~"$adapter"' in selector, f"{query.where}: {selector} ignores $adapter"
        if query.dashboard == "hub-overview.json" and "hub_" in query.expr:
            # several workers per adapter: always aggregated, by adapter (or per instance on purpose)
            assert re.search(r"\b(sum|max|min|count|avg) by \(", query.expr), f"{query.where}: not aggregated"
        for window in re.findall(r"\b(?:rate|irate)\([^\[]*\[([^\]]+)\]", query.expr):
            assert window == "$__rate_interval", f"{query.where}: rate over [{window}], use $__rate_interval"


def _call_argument(expr: str, start: int) -> str:
    """The text between the parenthesis opened at ``expr[start - 1]`` and its match."""
    depth = 1
    for i in range(start, len(expr)):
        depth += {"(": 1, ")": -1}.get(expr[i], 0)
        if depth == 0:
            return expr[start:i]
    raise AssertionError(f"unbalanced parentheses in {expr}")


def _expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard target and every alert rule."""
    return [(q.where, q.expr) for q, _ in panel_queries()] + [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]


def test_histogram_quantiles_keep_the_le_label() -> None:
    """histogram_quantile needs the buckets' `le`: an aggregation inside it that drops le (by without
    it, or without(le)) returns nothing at all, silently."""
    found = 0
    for where, expr in _expressions():
        for call in re.finditer(r"\bhistogram_quantile\s*\(", expr):
            found += 1
            inner = _call_argument(expr, call.end())
            for grouping in re.findall(r"\bby\s*\(([^)]*)\)", inner):
                labels = {label.strip() for label in grouping.split(",")}
                assert "le" in labels, f"{where}: histogram_quantile over `by ({grouping})` drops le: {expr}"
            for grouping in re.findall(r"\bwithout\s*\(([^)]*)\)", inner):
                assert "le" not in {label.strip() for label in grouping.split(",")}, f"{where}: without(le): {expr}"
    assert found >= 5, "the latency panels use histogram_quantile"


def test_rate_and_increase_only_on_counters() -> None:
    """rate/irate/increase of a gauge is meaningless (a fall reads as a counter reset): only counters
    (_total) and the counter series of histograms (_bucket, _sum, _count)."""
    found = 0
    for where, expr in _expressions():
        for call in re.finditer(r"\b(rate|irate|increase)\s*\(", expr):
            found += 1
            inner = _call_argument(expr, call.end()).strip()
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", inner)
            assert name is not None, f"{where}: {call.group(1)} of no plain selector: {inner}"
            assert re.search(r"_(total|bucket|sum|count)$", name.group(0)), \
                f"{where}: {call.group(1)}({name.group(0)}...) is no counter"
    assert found >= 10


def test_promtool_parses_every_expression(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed (Debian package prometheus, scripts/bootstrap.sh)", pytrace=False)
    queries = panel_queries()
    rules = [{"record": f"dashboard:{q.dashboard.split('.')[0].replace('-', '_')}:p{q.panel_id}_{q.ref_id}",
              "expr": q.substituted(variables)} for q, variables in queries]
    assert len({r["record"] for r in rules}) == len(rules)
    for rule, (query, _) in zip(rules, queries, strict=True):
        assert "$" not in rule["expr"].replace("$1", ""), f"{query.where}: unsubstituted variable in {rule['expr']}"
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, sort_keys=False))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout, result.stdout


def test_the_provider_reads_where_compose_mounts_the_dashboards() -> None:
    providers = [p for f in sorted(PROVIDERS.glob("*.yaml")) for p in yaml.safe_load(f.read_text())["providers"]]
    assert len(providers) == 1, providers
    (provider,) = providers
    assert provider["type"] == "file"
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    volumes = compose["services"]["grafana"]["volumes"]
    mounts = {}
    for volume in volumes:
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = (ROOT / source).resolve()
    assert mounts.get(provider["options"]["path"]) == DASHBOARDS.resolve(), mounts
    assert mounts.get("/etc/grafana/provisioning/dashboards") == PROVIDERS.resolve(), mounts
    assert mounts.get("/etc/grafana/provisioning/datasources") == DATASOURCE.parent.resolve(), mounts
