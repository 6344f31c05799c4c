"""The demo's second half: the authorities answer, the replies come back, the tracker shows it all.

After the deliveries, some authorities reply (a status message, a question, an appointment) by
sending to the portal's own XTA account, as their Fachverfahren would; the ``hub replies`` process
reads that mailbox and publishes each verified reply to ``hub.replies.<portal>``, which the demo
reads back like a portal. The ``hub tracker`` process records every status event; the demo asks
its HTTP API, with the portal's own token, for the timeline of an application that got a reply.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.xta2 import xta2_addressing
from hub.broker import connect
from hub.config import HubConfig
from hub.envelope import Envelope
from hub.replies_load import ReplyToSend, sample_reply, send_replies
from hub.topology import replies_queue
from hub.tracking.auth import hash_token, new_token
from transport.security.keys import load_certificate, load_signing_identity
from transport.xta.metadata import Party

REPLY_TYPES = ("OZG.Statusmeldung.130104", "OZG.RueckkanalFrage.130102", "OZG.Terminmitteilung.130105")


@dataclass(frozen=True)
class DemoTokens:
    portal: str  # the demo portal's own token (sees its applications only)
    operator: str


def write_demo_tokens(path: Path, portal: str) -> DemoTokens:
    """Fresh tokens for this run; the file holds their hashes only (as an operator's would)."""
    tokens = DemoTokens(portal=new_token(), operator=new_token())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# written by the demo: SHA-256 hashes of this run's tokens (the tokens are never stored)\n"
        f'[[tokens]]\nname = "{portal}"\nportal = "{portal}"\nsha256 = "{hash_token(tokens.portal)}"\n\n'
        f'[[tokens]]\nname = "demo-operator"\noperator = true\nsha256 = "{hash_token(tokens.operator)}"\n',
        encoding="utf-8")
    return tokens


def antragsidentifikation(envelope: Envelope) -> str:
    """The application's antragsidentifikation (what a reply names to link itself)."""
    from transport.security.xml import parse_xml

    found = parse_xml(envelope.content.message.data).find("{*}antragsidentifikation")
    if found is None or not found.text:
        raise ValueError(f"application {envelope.message_id} has no antragsidentifikation")
    return found.text.strip()


def send_demo_replies(config: HubConfig, portal: str, endpoint: str, envelopes: list[Envelope],
                      every: int = 5) -> dict[str, str]:
    """Every ``every``-th application gets a reply from its authority; returns reply XTA id -> message id."""
    mailbox = config.mailboxes[portal]
    portal_party = Party(mailbox.account.identifier, mailbox.account.name, mailbox.account.category)
    # the demo portal signs and decrypts with one key pair: its certificate sits beside its key
    portal_certificate = load_certificate(
        mailbox.decryption_key.with_name(mailbox.decryption_key.name.replace(".key.pem", ".cert.pem")))
    authorities = {a.id: a for a in config.authorities}
    batches: dict[str, list[tuple[ReplyToSend, str]]] = {}
    for i, envelope in enumerate(envelopes[::every]):
        authority = authorities[envelope.destination]
        party = Party(authority.id, authority.name, authority.addressing.get("reader_category", "Ausländerbehörde"))
        reply = sample_reply(REPLY_TYPES[i % len(REPLY_TYPES)], portal_party=portal_party, authority_party=party,
                             antragsidentifikation=antragsidentifikation(envelope), seed=i)
        batches.setdefault(authority.id, []).append((reply, envelope.message_id))
    sent: dict[str, str] = {}
    for authority_id, batch in batches.items():  # one sender (and one key load) per authority
        authority = authorities[authority_id]
        addressing = xta2_addressing(authority.addressing, config.source.parent if config.source else None,
                                     f"authorities[{authority.id}]")
        certificate = addressing.certificate
        key = certificate.with_name(certificate.name.replace(".cert.pem", ".key.pem"))
        ids = send_replies(endpoint, [reply for reply, _ in batch],
                           authority_identity=load_signing_identity(key, certificate),
                           authority_party=Party(authority.id, authority.name, addressing.reader_category),
                           portal_party=portal_party, portal_certificate=portal_certificate)
        sent.update(zip(ids, (message_id for _, message_id in batch), strict=True))
    return sent


def collect_replies(config: HubConfig, portal: str, expected: set[str], timeout: float) -> dict[str, dict[str, Any]]:
    """Read ``hub.replies.<portal>`` as the portal would, until every expected reply id has come
    (duplicates are dropped by their stable message id); returns id -> headers."""
    received: dict[str, dict[str, Any]] = {}
    connection = connect(config.broker, "hub-demo-replies")
    try:
        channel = connection.channel()
        deadline = time.monotonic() + timeout
        while not expected <= received.keys() and time.monotonic() < deadline:
            method, props, _body = channel.basic_get(replies_queue(portal), auto_ack=False)
            if method is None:
                connection.process_data_events(time_limit=0.5)
                continue
            received.setdefault(str(props.message_id), dict(props.headers or {}))
            channel.basic_ack(method.delivery_tag)
    finally:
        connection.close()
    return received


def api_get(base_url: str, path: str, token: str) -> Any:
    request = urllib.request.Request(f"{base_url}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def wait_for_tracker(base_url: str, token: str, *, delivered: int, replies: set[str], message_id: str | None,
                     since: float, timeout: float) -> tuple[dict[str, int], dict[str, Any] | None]:
    """Poll the tracker's API until it has recorded the deliveries and the replies of this run."""
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    trace: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        try:
            counts = api_get(base_url, f"/api/v1/counts?since={since:.3f}", token)["counts"]
            if message_id is not None:
                found = api_get(base_url, f"/api/v1/applications/{message_id}", token)["applications"]
                trace = found[0] if found else None
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            pass  # not up yet, or the application not recorded yet (404)
        reply_rows = [e for e in (trace or {}).get("timeline", []) if e["event"] == "reply_received"]
        if counts.get("delivered", 0) >= delivered and (message_id is None or (reply_rows and replies)):
            break
        time.sleep(0.5)
    return counts, trace
