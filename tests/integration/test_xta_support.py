"""Shared pieces of the XTA integration tests (helpers only, no tests): simulator configs, applications,
status and dead-letter waits. Named test_xta_* to live among the XTA test modules."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hub.envelope import Envelope, new_envelope
from hub.limits import SizeLimits
from hub.publisher import ConfirmingPublisher, publish_envelope
from hub.samples import make_attachment, make_ozg_application
from hub.status import DEAD_LETTERED, DELIVERED, RETRY_SCHEDULED, StatusEvent
from tests.integration.helpers import AUTHOR, StatusCollector, wait_for
from transport.content import ContentPart
from transport.xta.metadata import Party
from transport.xta.simulator import SimulatorConfig

READERS = ("azr:000100", "azr:000200", "azr:000300")


def sim_config(pki: dict[str, tuple[Path, Path]], **changes: Any) -> SimulatorConfig:
    """Reader keys + the test CA as trusted signer (decrypt, verify), plus ``changes``."""
    from transport.security.keys import load_certificate, load_private_key

    settings: dict[str, Any] = {
        "reader_keys": {aid: load_private_key(pki[aid.replace(":", "-")][0]) for aid in READERS},
        "trusted_signers": (load_certificate(pki["ca"][1]),)}
    settings.update(changes)
    return SimulatorConfig(**settings)


def application(destination: str, seed: int, *, size: int = 24_000, data: bytes | None = None) -> Envelope:
    """A schema-valid OZG application with one attachment of ``size`` bytes (or ``data``)."""
    generated, name, ctype = make_attachment(seed, size) if data is None else (data, "anlage.bin", "application/pdf")
    data = generated
    xml, message_id = make_ozg_application(reader=Party(destination, "ABH"), author=Party(**AUTHOR), seed=seed,
                                           attachment=data)
    return new_envelope(destination=destination, message_type="OZG.Antrag.130101", message=xml,
                        portal="test-portal", message_id=message_id, filename="antrag.xml",
                        attachments=(ContentPart(data, ctype, name),))


def publish(config: Any, envelopes: list[Envelope]) -> None:
    with ConfirmingPublisher(config.broker, "test-portal") as publisher:
        for future in [publish_envelope(publisher, e, SizeLimits.from_config(config)) for e in envelopes]:
            future.result(timeout=60)


def outcome(status: StatusCollector, message_id: str, timeout: float = 60) -> StatusEvent:
    """Wait for the final status event (delivered or dead-lettered) of ``message_id``."""
    def final() -> StatusEvent | None:
        events = status.of(message_id, DELIVERED) + status.of(message_id, DEAD_LETTERED)
        return events[0] if events else None

    return wait_for(final, timeout, what=f"final outcome of {message_id}")


def retries(status: StatusCollector, message_id: str) -> list[int]:
    """The attempt numbers of the retry_scheduled events of ``message_id``, in order."""
    return sorted(e.detail["attempts"] for e in status.of(message_id, RETRY_SCHEDULED))


def dead_letters(broker_url: str, message_ids: set[str], timeout: float = 30) -> dict[str, dict[str, Any]]:
    """Take the dead letters of ``message_ids`` off hub.dead (others are put back); headers by id."""
    import pika

    from hub.topology import DEAD_QUEUE

    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    conn = pika.BlockingConnection(pika.URLParameters(broker_url))
    ch = conn.channel()
    try:
        while set(found) != message_ids and time.monotonic() < deadline:
            method, props, _body = ch.basic_get(DEAD_QUEUE)
            if method is None:
                time.sleep(0.1)
                continue
            if props.message_id in message_ids:
                found[props.message_id] = dict(props.headers or {})
                ch.basic_ack(method.delivery_tag)
            else:
                ch.basic_nack(method.delivery_tag, requeue=True)
    finally:
        conn.close()
    assert set(found) == message_ids, f"dead letters missing: {message_ids - set(found)}"
    return found
