"""Turning the hub config's ``[simulator]`` section into the wire-level simulator's options.

The simulator has its own command line (``transport.xta.simulator.cli``) for fault injection,
TLS and report behaviour; ``hub simulator`` builds that command line from the hub config (readers'
keys, trusted signers, the adapters' accounts) and appends whatever extra flags the operator gave,
so there is one parser and one way to build a ``SimulatorConfig``.
"""

from __future__ import annotations

from collections.abc import Sequence

from hub.config import HubConfig


def simulator_argv(config: HubConfig, *, port: int | None = None, extra: Sequence[str] = ()) -> list[str]:
    sim = config.simulator
    argv = ["--host", sim.host, "--port", str(sim.port if port is None else port), "--latency", str(sim.latency)]
    for reader, entry in sorted(sim.readers.items()):
        argv += ["--reader-key", f"{reader}={entry.key}"]
    for path in sim.trusted_signers:
        argv += ["--trusted-signer", str(path)]
    accounts = {a.author.identifier for a in config.adapters.values() if a.author is not None}
    if config.mailboxes:  # the return channel: authorities send replies to the portals' own accounts
        accounts |= {a.id for a in config.authorities}
        accounts |= {m.account.identifier for m in config.mailboxes.values()}
    if accounts:
        argv += ["--accounts", *sorted(accounts)]
    if sim.store_dir is not None:
        argv += ["--store-dir", str(sim.store_dir)]
    return argv + list(extra)
