"""The demo's FIT-Connect part: the simulator's command line and client secret, the adapters'
endpoint overrides, and the check of what arrived at the simulator.

The demo config's fit-connect adapters name a client secret file and a trust anchor; the
simulator keeps its throwaway PKI (trust anchor, destination keys) in the trust anchor's folder,
so both sides agree without copying keys around. When the official Submission API document and
metadata schema lie beside the project (``../shared/standards/fit-connect``), the simulator checks
every request and answer against them and the demo fails on any violation.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.request
from pathlib import Path
from typing import Any

from hub.config import HubConfig
from hub.envelope import Envelope

PROFILE = "fit-connect"
OPENAPI = Path("fit-connect/openapi/submission-api-1.1.3.yaml")
METADATA_SCHEMA = Path("fit-connect/schemas/metadata/1.0.0/metadata.schema.json")


def adapters(config: HubConfig) -> list[str]:
    """The names of the config's fit-connect adapters."""
    return [name for name, a in config.adapters.items() if a.profile == PROFILE]


def _path(config: HubConfig, value: Any) -> Path:
    path = Path(str(value))
    base = config.source.parent if config.source else Path.cwd()
    return path if path.is_absolute() else (base / path).resolve()


def prepare(config: HubConfig) -> tuple[Path, str, str] | None:
    """(state dir, client id, client secret) for the simulator, the secret file created when
    missing (random, mode 0600); None when no adapter uses fit-connect. One delivery service for
    the demo: every fit-connect adapter must name the same client and trust anchor."""
    names = adapters(config)
    if not names:
        return None
    section = config.adapters[names[0]].section
    secret_file = _path(config, section["client_secret_file"])
    if not secret_file.exists():
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    state_dir = _path(config, section["trust_anchors"][0]).parent
    return state_dir, str(section["client_id"]), str(secret_file)


def simulator_args(config: HubConfig, port: int, state: tuple[Path, str, str], standards: Path) -> list[str]:
    """``hub simulator --protocol fit-connect ...`` for the config's fit-connect authorities."""
    state_dir, client_id, secret_file = state
    args = ["simulator", "--protocol", PROFILE, "--port", str(port), "--state-dir", str(state_dir),
            "--client-id", client_id, "--client-secret-file", secret_file, "--auto-accept"]
    fit = set(adapters(config))
    for authority in config.authorities:
        if authority.adapter in fit:
            args += ["--destination", str(authority.addressing["destination_id"])]
    for name in sorted(fit):
        args += ["--service", config.adapters[name].service]
    if (standards / OPENAPI).exists() and (standards / METADATA_SCHEMA).exists():
        args += ["--openapi", str(standards / OPENAPI), "--metadata-schema", str(standards / METADATA_SCHEMA)]
    return args


def endpoint_overrides(config: HubConfig, port: int) -> dict[str, str]:
    """Environment overrides pointing every fit-connect adapter at the demo's simulator."""
    env = {}
    for name in adapters(config):
        env[f"HUB_ADAPTERS__{name.upper()}__SUBMISSION_API"] = f"http://127.0.0.1:{port}"
        env[f"HUB_ADAPTERS__{name.upper()}__TOKEN_URL"] = f"http://127.0.0.1:{port}/token"
    return env


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def check(url: str, envelopes: list[Envelope]) -> tuple[int, int, int]:
    """(byte-identical, accepted, conformance violations) of ``envelopes`` at the simulator: data
    and attachments as the simulator decrypted them, compared by SHA-256 with what was published."""
    submissions = [s for s in _get(f"{url}/_simulator/submissions") if s.get("dataSha256")]
    by_data = {s["dataSha256"]: s for s in submissions}
    identical = accepted = 0
    for e in envelopes:
        s = by_data.get(e.content.message.sha256)
        if s is None:
            continue
        if sorted(s["attachmentSha256"].values()) == sorted(p.sha256 for p in e.content.attachments):
            identical += 1
        accepted += s["status"] == "accepted"
    return identical, accepted, len(_get(f"{url}/_simulator/violations"))
