"""A test-only delivery profile: the XTA 2 adapter, except that a payload carrying the marker
``POISON-PILL`` kills the whole worker process (as a native crash or OOM kill would)."""

from __future__ import annotations

import os
from collections.abc import Callable

from adapters.base import Delivery, DeliveryReceipt
from adapters.xta2 import Xta2Adapter


class PoisonAdapter(Xta2Adapter):
    def deliver(self, delivery: Delivery, transport_message_id: str, *, resend: bool = False,
                ready: Callable[[], None] | None = None) -> DeliveryReceipt:
        if b"POISON-PILL" in delivery.content.message.data:
            os._exit(70)
        return super().deliver(delivery, transport_message_id, resend=resend, ready=ready)
