"""Prometheus metric definitions (catalogue: docs/metrics.md).

Labels are low-cardinality only: adapter names, outcomes and error reason slugs. Never a message
id, destination-specific person data or payload content (pitfall 10).
"""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
#: stages are short (a signature takes ~2 ms, a send a few ms to seconds)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def register_build_info(registry: CollectorRegistry, process: str) -> None:
    """``hub_build_info{version, python, process} 1``: which build runs where (join on it in
    dashboards; a rollout shows as two versions side by side)."""
    from hub import __version__

    info = Gauge("hub_build_info", "Build of the running hub process: always 1",
                 ["version", "python", "process"], registry=registry)
    info.labels(__version__, platform.python_version(), process).set(1)


class WorkerMetrics:
    """Metrics of one adapter worker process; one registry per process, no global singleton."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.received = Counter(
            "hub_messages_received", "Messages taken from the adapter queue", ["adapter"], registry=registry)
        self.processed = Counter(
            "hub_messages_processed",
            "Messages finished, by outcome (delivered, retry_scheduled, dead_lettered)",
            ["adapter", "outcome"], registry=registry)
        self.dead_lettered = Counter(
            "hub_messages_dead_lettered", "Messages sent to the dead-letter queue, by reason",
            ["adapter", "reason"], registry=registry)
        self.failures = Counter(
            "hub_delivery_failures",
            "Failed delivery attempts by reason (retried or dead-lettered), e.g. endpoint_protocol",
            ["adapter", "reason"], registry=registry)
        self.duration = Histogram(
            "hub_delivery_duration_seconds",
            "Time from taking a message to its outcome (validate, sign, encrypt, XTA calls)",
            ["adapter", "outcome"], buckets=DURATION_BUCKETS, registry=registry)
        self.in_flight = Gauge(
            "hub_messages_in_flight", "Messages being processed right now", ["adapter"], registry=registry)
        self.consumer_connected = Gauge(
            "hub_consumer_connected", "1 while the worker's broker connection is open", ["adapter"], registry=registry)
        self.breaker_state = Gauge(
            "hub_circuit_breaker_state", "Circuit breaker of the adapter's endpoint: 0 closed, 1 half-open, 2 open",
            ["adapter"], registry=registry)
        self.breaker_transitions = Counter(
            "hub_circuit_breaker_transitions", "Circuit breaker state changes, by the state entered",
            ["adapter", "state"], registry=registry)
        self.broker_blocked = Gauge(
            "hub_broker_blocked", "1 while the broker blocks this worker's connection (memory/disk alarm)",
            ["adapter"], registry=registry)
        self.transport_reports = Counter(
            "hub_transport_reports", "Transport-report polls by result: green, yellow, red, open (polled again), "
            "timeout, failed", ["adapter", "result"], registry=registry)
        self.status_events_failed = Counter(
            "hub_status_events_failed", "Status events that could not be published (lost; the outcome itself is safe), "
            "by event", ["adapter", "event"], registry=registry)
        self.stage_duration = Histogram(
            "hub_stage_duration_seconds", "Time spent in one stage of a delivery (hub/stages.py), successful or not",
            ["adapter", "stage"], buckets=STAGE_BUCKETS, registry=registry)
        self.retries = Counter(
            "hub_retries", "Retries scheduled, by retry ladder level (1 = the first wait queue)",
            ["adapter", "level"], registry=registry)
