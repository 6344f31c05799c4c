"""Turning the hub config's ``[simulator]`` section into the wire-level simulator's settings."""

from __future__ import annotations

from hub.config import HubConfig
from hub.keystore import KeyStore
from transport.xta.simulator import SimulatorConfig


def simulator_config(config: HubConfig, *, latency: float | None = None, keys: KeyStore | None = None) -> SimulatorConfig:
    keys = keys or KeyStore()
    sim = config.simulator
    return SimulatorConfig(
        reader_keys={reader: keys.private_key(r.key) for reader, r in sim.readers.items()},
        trusted_signers=tuple(keys.certificate(p) for p in sim.trusted_signers),
        accounts=frozenset(a.author.identifier for a in config.adapters.values()) or None,
        latency=sim.latency if latency is None else latency,
        store_dir=sim.store_dir,
    )
