"""hub_tracker_applications is the same store counted by every tracker on it (two trackers on one
store is a documented setup), so a dashboard or alert that sums it over instances double-counts:
every expression over it aggregates with max (or min), never sum/count."""

from __future__ import annotations

import re

from tests.monitoring_support import alert_rules, panel_queries

METRIC = "hub_tracker_applications"
_GROUPING = r"(?:(?:by|without)\s*\([^)]*\)\s*)?"
_AGGREGATION = re.compile(rf"\b(sum|count|max|min)\s*{_GROUPING}\(")


def _aggregations_over_metric(expr: str) -> list[str]:
    """The aggregation operators whose argument (the parenthesised part) holds the metric."""
    found = []
    for match in _AGGREGATION.finditer(expr):
        depth, end = 1, match.end()
        while depth and end < len(expr):
            depth += {"(": 1, ")": -1}.get(expr[end], 0)
            end += 1
        if re.search(rf"\b{METRIC}\b", expr[match.end():end]):
            found.append(match.group(1))
    return found


def _expressions() -> list[tuple[str, str]]:
    found = [(query.where, query.expr) for query, _vars in panel_queries()]
    found += [(f"alert {rule.get('alert')}", str(rule["expr"])) for rule in alert_rules() if "expr" in rule]
    return [(where, expr) for where, expr in found if METRIC in expr]


def test_the_applications_per_state_are_never_summed_over_trackers() -> None:
    expressions = _expressions()
    assert any("tracker.json" in where for where, _expr in expressions), "the tracker dashboard shows them"
    for where, expr in expressions:
        operators = _aggregations_over_metric(expr)
        assert operators, f"{where}: {expr} shows one series per tracker"
        assert set(operators) <= {"max", "min"}, f"{where}: {expr} adds the counts of every tracker on the store"
