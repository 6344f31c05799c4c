"""Building blocks of the return-channel tests: a config with one portal mailbox on the simulator,
authorities' replies sent into it (hub.replies_load), and looks into the broker and the mailbox."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import tomli_w

from hub.config import HubConfig, parse_config
from hub.replies_load import ReplyToSend, sample_reply, send_replies
from hub.samples import OZG_RUECKKANALFRAGE, OZG_STATUSMELDUNG, OZG_TERMINMITTEILUNG
from transport.security.keys import load_certificate, load_signing_identity
from transport.xta.metadata import Party
from transport.xta.simulator import RunningSimulator
from transport.xta.simulator.reports import in_mailbox

PORTAL_ID = "test-portal"
PORTAL = Party("alp:000001", "OZG-Portal (Test)", "Ausländerportal")
ABH = Party("azr:000100", "Ausländerbehörde Musterstadt (Test)", "Ausländerbehörde")
REPLY_TYPES = (OZG_RUECKKANALFRAGE, OZG_STATUSMELDUNG, OZG_TERMINMITTEILUNG)
_XAU = {"list_uri": "urn:xoev-de:xauslaender:codeliste:nachrichtentyp", "list_version": "26.11",
        "payload_schema": "http://www.osci.de/xauslaender2611"}
SCHEMAS = {
    "OZG.Antrag.130101": "builtin:xauslaender/ozg-antrag-130101.xsd",
    OZG_RUECKKANALFRAGE: "builtin:xauslaender/ozg-rueckkanalfrage-130102.xsd",
    OZG_STATUSMELDUNG: "builtin:xauslaender/ozg-statusmeldung-130104.xsd",
    OZG_TERMINMITTEILUNG: "builtin:xauslaender/ozg-terminmitteilung-130105.xsd",
}


def config_doc(broker_url: str, pki: dict[str, tuple[Path, Path]], endpoint: str, *, poll_interval: float = 0.2,
               batch: int = 50, timeout: float = 10, heartbeat: int = 30) -> dict[str, Any]:
    """The TOML document of a hub with the portal's mailbox on ``endpoint`` (no adapters)."""
    return {
        "broker": {"url": broker_url, "heartbeat": heartbeat},
        "message_types": [{"code": code, "schema": schema, **_XAU} for code, schema in SCHEMAS.items()],
        "mailboxes": {PORTAL_ID: {
            "endpoint": endpoint, "timeout": timeout,
            "account": {"identifier": PORTAL.identifier, "name": PORTAL.name, "category": PORTAL.category},
            "decryption_key": str(pki["portal"][0]),
            # pinned one by one: mallory's certificate comes from the same CA and must not be trusted
            "trusted_signers": [str(pki["azr-000100"][1]), str(pki["azr-000200"][1])],
            "poll_interval": poll_interval, "batch": batch}},
    }


def make_config(broker_url: str, pki: dict[str, tuple[Path, Path]], endpoint: str, **kwargs: Any) -> HubConfig:
    return parse_config(config_doc(broker_url, pki, endpoint, **kwargs), base=Path("/"), environ={})


def write_config(folder: Path, broker_url: str, pki: dict[str, tuple[Path, Path]], endpoint: str,
                 **kwargs: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hub.toml"
    path.write_text(tomli_w.dumps(config_doc(broker_url, pki, endpoint, **kwargs)))
    return path


def reply(message_type: str, seed: int, ref: str, **kwargs: Any) -> ReplyToSend:
    return sample_reply(message_type, portal_party=PORTAL, authority_party=ABH, antragsidentifikation=ref,
                        seed=seed, **kwargs)


def send(pki: dict[str, tuple[Path, Path]], url: str, replies: list[ReplyToSend]) -> list[str]:
    """Send ``replies`` as the authority azr:000100 into the portal's mailbox; their XTA MessageIDs."""
    return send_replies(url, replies, authority_identity=load_signing_identity(*pki["azr-000100"]),
                        authority_party=ABH, portal_party=PORTAL, portal_certificate=load_certificate(pki["portal"][1]),
                        timeout=30)


def in_portal_mailbox(sim: RunningSimulator) -> list[str]:
    """XTA MessageIDs still waiting (not closed) in the portal's mailbox."""
    store = sim.store
    return [m.message_id for m in store.messages(PORTAL.identifier)
            if (state := store.state(m.message_id)) is not None and in_mailbox(state)]


def queue_depth(broker_url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def take_all(broker_url: str, queue: str, expected: int, timeout: float = 60.0) -> list[tuple[Any, bytes]]:
    """Take messages off ``queue`` (acked) until ``expected`` arrived and it is empty, or ``timeout``."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    got: list[tuple[Any, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            method, props, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                if len(got) >= expected:
                    break
                time.sleep(0.1)
                continue
            got.append((props, body))
    finally:
        connection.close()
    return got
