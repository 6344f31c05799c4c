"""Status events: what happened to an application, published to the ``hub.status`` exchange.

Routing key ``<portal>.<event>.<destination>`` (dots in the portal id become '_') so that a portal
can bind its own queue (``my-portal.#``) and ops can bind ``*.dead_lettered.#``. The body is JSON
with ids, times and reasons only, never payload content.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pika

from hub.topology import STATUS_EXCHANGE

ACCEPTED = "accepted"
DELIVERED = "delivered"
RETRY_SCHEDULED = "retry_scheduled"
DEAD_LETTERED = "dead_lettered"
REPLAYED = "replayed"


@dataclass(frozen=True)
class StatusEvent:
    message_id: str
    event: str
    portal: str
    destination: str
    adapter: str | None = None
    at: float = field(default_factory=time.time)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def routing_key(self) -> str:
        return f"{self.portal.replace('.', '_')}.{self.event}.{self.destination}"

    def body(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    def properties(self) -> pika.BasicProperties:
        return pika.BasicProperties(
            message_id=self.message_id, content_type="application/json", delivery_mode=2,
            timestamp=int(self.at), type=f"hub.status.{self.event}")

    @classmethod
    def from_body(cls, body: bytes) -> StatusEvent:
        return cls(**json.loads(body))

    exchange = STATUS_EXCHANGE
