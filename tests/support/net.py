"""Loopback ports for the servers tests start (brokers, workers, Prometheus): the hub's own helper."""

from __future__ import annotations

from hub.processes import free_port

__all__ = ["free_port"]
