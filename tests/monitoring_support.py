"""What the dashboard and alert-rule tests share: the panels' PromQL (with Grafana's variables
substituted the way an "All" selection does), the metric selectors inside an expression, and the
metric catalogue of docs/metrics.md. Used by tests/unit/test_dashboards.py (static checks, promtool)
and tests/integration/test_live_monitoring.py (every expression against a live Prometheus)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "monitoring" / "grafana" / "dashboards"
ALERTS = ROOT / "monitoring" / "alerts.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"
#: what $__rate_interval becomes in the tests: 4 scrapes of the live test's 1 s interval would do,
#: 1m keeps rate() defined however the scrape interval is set
RATE_INTERVAL = "1m"

_STRING = r'"(?:[^"\\]|\\.)*"|`[^`]*`'
#: a metric selector: name, optionally {matchers} (quoted values may hold braces and commas)
SELECTOR = re.compile(rf"\b((?:hub|rabbitmq)_[a-zA-Z0-9_]+)\s*(\{{(?:[^{{}}\"`]|{_STRING})*\}})?")
_LEGEND_LABEL = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel: where it is, its PromQL as written, and as the tests run it."""

    dashboard: str
    panel_id: int
    title: str
    ref_id: str
    expr: str
    legend: str

    @property
    def where(self) -> str:
        return f"{self.dashboard} panel {self.panel_id} ({self.title}) target {self.ref_id}"

    def substituted(self, variables: dict[str, str]) -> str:
        """The expression with $__rate_interval and the dashboard's variables replaced ($1 of
        label_replace is no variable and stays)."""
        expr = self.expr.replace("$__rate_interval", RATE_INTERVAL)
        for name, value in variables.items():
            expr = re.sub(rf"\$(?:{{{name}}}|{name}\b)", value, expr)
        return expr

    def legend_labels(self) -> set[str]:
        """Labels the legend names: every series of the panel must carry them."""
        return set(_LEGEND_LABEL.findall(self.legend))


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS.glob("*.json"))}


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' collapsed children included."""
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def variables_of(dashboard: dict[str, Any]) -> dict[str, str]:
    """Template variable -> the value an "All" selection gives it (its allValue)."""
    return {v["name"]: v.get("allValue") or ".*" for v in dashboard.get("templating", {}).get("list", [])}


def panel_queries() -> list[tuple[PanelQuery, dict[str, str]]]:
    """Every target of every data panel of every dashboard, with its dashboard's variables."""
    out = []
    for name, dashboard in load_dashboards().items():
        variables = variables_of(dashboard)
        for panel in all_panels(dashboard):
            if panel.get("type") == "row":
                continue
            for target in panel.get("targets", []):
                out.append((PanelQuery(name, int(panel["id"]), str(panel.get("title")), str(target.get("refId")),
                                       str(target.get("expr", "")), str(target.get("legendFormat", ""))), variables))
    return out


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def selectors(expr: str) -> list[str]:
    """The hub_*/rabbitmq_* selectors of an expression, each as it can be queried on its own."""
    return [m.group(0).strip() for m in SELECTOR.finditer(expr)]


def metric_names(expr: str) -> set[str]:
    return {m.group(1) for m in SELECTOR.finditer(expr)}


def catalogue() -> dict[str, set[str]]:
    """docs/metrics.md: metric name -> its labels, from the tables' rows."""
    out: dict[str, set[str]] = {}
    for line in METRICS_DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`hub_"):
            continue
        labels = set(re.findall(r"`([a-z_]+)`", cells[2]))
        out[cells[0].strip("`")] = labels
    return out


def catalogued(name: str, known: dict[str, set[str]]) -> str | None:
    """The catalogue entry a series name belongs to (histograms: _bucket, _sum, _count)."""
    if name in known:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in known:
            return name[: -len(suffix)]
    return None
