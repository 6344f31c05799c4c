"""Generate the files compose.yaml needs but the repository must not hold: keys and secrets.

    .venv/bin/python scripts/stack-secrets.py [--root DIR]

Writes under DIR (default: the repository) exactly the paths in GENERATED: a throwaway PKI for
examples/stack.toml (CA, the portal's signing key encrypted with the key password, the readers'
keys and certificates) and the secrets compose.yaml mounts (broker URL with the hub user's
password, that user as RabbitMQ definitions with a salted SHA-256 hash, the key password, the
tracker's token hashes, Grafana's admin password). Idempotent: existing files are kept, so a
running stack's credentials never change under it. The tracker token is printed once.

Containers run as uid 10001 (hub), 999 (rabbitmq) and 472 (grafana): run as root, the files are
given to those users; otherwise make them readable to them yourself (README, "Run the stack").
Throwaway keys for a demo stack only: production mounts real keys in var/stack/pki.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives import serialization

from adapters.xta2 import xta2_addressing, xta2_settings
from hub.config import load_config
from hub.tracking.tokenfile import add_token
from transport.security.demopki import make_test_pki

STACK_CONFIG = REPO / "examples" / "stack.toml"
PKI = Path("var/stack/pki")
SECRETS = Path("var/stack/secrets")
# What compose.yaml mounts from var/stack (tests/unit/test_compose.py checks both directions).
GENERATED = (
    PKI,
    SECRETS / "amqp-url",
    SECRETS / "rabbitmq-users.json",
    SECRETS / "signing-key.password",
    SECRETS / "tracker-tokens.toml",
    SECRETS / "grafana-admin.password",
)
HUB_UID, RABBITMQ_UID, GRAFANA_UID = 10001, 999, 472
AMQP_USER = "hub"
PORTAL = "demo-portal"
SIGNING_KEY = "portal"  # examples/stack.toml: the adapters' signing key, the mailbox's decryption key


def rabbitmq_password_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def _write_secret(path: Path, text: str, uid: int) -> bool:
    """Write ``path`` (mode 0640) unless it exists; give it to ``uid`` when running as root."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    _own(path, uid)
    return True


def _own(path: Path, uid: int) -> None:
    if os.geteuid() == 0:
        os.chown(path, uid, uid)


def make_pki(root: Path, password: str) -> None:
    """The stack's throwaway PKI; the portal key encrypted with the key password (kept if present)."""
    config = load_config(STACK_CONFIG, environ={})
    base = config.source.parent if config.source else Path.cwd()
    wanted = [xta2_settings(a.section, base, f"adapters.{name}").signing_key
              for name, a in config.adapters.items() if a.profile == "xta2"]
    wanted += [xta2_addressing(a.addressing, base, f"authorities[{a.id}]").certificate
               for a in config.authorities if config.adapters[a.adapter].profile == "xta2"] + [r.key for r in config.simulator.readers.values()]
    folder = root / PKI
    names = sorted({p.name.split(".")[0] for p in wanted} - {"ca"})
    files = [folder / f"{n}.{kind}.pem" for n in [*names, "ca"] for kind in ("key", "cert")]
    if all(f.is_file() for f in files):
        return
    make_test_pki(folder, names)
    key_path = folder / f"{SIGNING_KEY}.key.pem"
    data = key_path.read_bytes()
    if b"ENCRYPTED" not in data:
        key = serialization.load_pem_private_key(data, None)
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.BestAvailableEncryption(password.encode())))
    for path in [folder, *folder.iterdir()]:
        _own(path, HUB_UID)


def generate(root: Path) -> str | None:
    """Create every path of GENERATED under ``root`` that is missing; the new tracker token, if any."""
    secrets_dir = root / SECRETS
    secrets_dir.mkdir(parents=True, exist_ok=True)
    users, url = secrets_dir / "rabbitmq-users.json", secrets_dir / "amqp-url"
    if users.exists() != url.exists():  # one without the other: the password would not match
        raise SystemExit(f"{users} and {url} belong together: delete the one left, then run again")
    amqp_password = secrets.token_urlsafe(24)
    _write_secret(users, json.dumps({
        "users": [{"name": AMQP_USER, "password_hash": rabbitmq_password_hash(amqp_password),
                   "hashing_algorithm": "rabbit_password_hashing_sha256",
                   # policymaker: `hub topology apply` sets the queue policies (hub/management.py)
                   "tags": ["monitoring", "policymaker"]}],
        "permissions": [{"user": AMQP_USER, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
    }, indent=2) + "\n", RABBITMQ_UID)
    _write_secret(url, f"amqp://{AMQP_USER}:{amqp_password}@rabbitmq:5672/%2F\n", HUB_UID)
    _write_secret(secrets_dir / "signing-key.password", secrets.token_urlsafe(24) + "\n", HUB_UID)
    _write_secret(secrets_dir / "grafana-admin.password", secrets.token_urlsafe(18) + "\n", GRAFANA_UID)
    password = (secrets_dir / "signing-key.password").read_text(encoding="utf-8").splitlines()[0]
    make_pki(root, password)
    tokens = secrets_dir / "tracker-tokens.toml"
    if tokens.exists():
        return None
    token = add_token(tokens, portal=PORTAL).token
    os.chmod(tokens, 0o640)
    _own(tokens, HUB_UID)
    return token


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO, help="folder to write var/stack/ into (default: the repository)")
    args = parser.parse_args()
    token = generate(args.root)
    for rel in GENERATED:
        print(f"{args.root / rel}")
    if token is not None:
        print(f"tracker API token for portal {PORTAL} (shown only this once): {token}", file=sys.stderr)
    if os.geteuid() != 0:
        print("not root: make var/stack/ readable to uid 10001 (hub), 999 (rabbitmq-users.json) and "
              "472 (grafana-admin.password) before `docker-compose up`", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
