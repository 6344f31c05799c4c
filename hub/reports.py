"""Transport reports: after a delivery, ask the endpoint how it went, until it says.

XTA answers getTransportReport with status 0 (open) until the message is through; then 1 green,
2 yellow (warnings) or 3 red (critical errors), with error/warning records. Pending reports live in
the delivery ledger (hub/ledger.py): the statement that marks an application delivered also
schedules its report, and one scheduler thread per worker (hub/report_scheduler.py) polls the due
ones with back-off and publishes the events. No broker message per poll; a restarted worker
resumes the pending polls from the ledger.

Events: ``transport_report`` with ``traffic_light`` ``open`` once (the first poll that answers
open), then once with the final light (or ``unknown`` with the error if polling failed for good);
``transport_report_timeout`` after ``report_poll_max`` polls. Each carries the transport message
id and ``attempt`` = the number of polls so far.

Upgrade: releases before this one kept poll requests in the broker (``hub.report.<adapter>.wait``,
dead-lettering into ``hub.report.<adapter>``). A worker still consumes ``hub.report.<adapter>``
for one release and turns each request (``PollRequest``) into a ledger schedule, acked once the
ledger has it, so no pending poll is lost. The topology still declares both queues (a worker of
the older release in a rolling deploy still publishes to them); a later release stops declaring
and consuming them; operators delete them once empty (``hub topology apply`` removes stale
bindings, not queues).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

from hub.ledger import PendingReport
from hub.status import TRANSPORT_REPORT, TRANSPORT_REPORT_TIMEOUT

__all__ = ["TRANSPORT_REPORT", "TRANSPORT_REPORT_TIMEOUT", "PollRequest"]


@dataclass(frozen=True)
class PollRequest:
    """A broker poll request of the previous release (read only, to take it over)."""

    message_id: str
    transport_message_id: str
    portal: str
    destination: str
    attempt: int = 1  # polls so far, this one included
    correlation_id: str | None = None
    open_sent: bool = False  # the "open" event went out already

    def body(self) -> bytes:
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)}, separators=(",", ":")).encode()

    @classmethod
    def from_body(cls, body: bytes | bytearray) -> PollRequest:
        raw = json.loads(body)
        if not isinstance(raw, dict):
            raise TypeError("poll request is not an object")
        known = {f.name for f in fields(cls)}  # a newer worker may add fields: ignore them
        return cls(**{k: v for k, v in raw.items() if k in known})

    def pending(self) -> PendingReport:
        """The ledger schedule that continues this request: its next poll is poll ``attempt``."""
        if not (isinstance(self.message_id, str) and self.message_id and isinstance(self.transport_message_id, str)
                and isinstance(self.attempt, int)):
            raise TypeError("poll request without ids")
        return PendingReport(self.message_id, str(self.destination), self.transport_message_id, str(self.portal),
                             self.correlation_id if isinstance(self.correlation_id, str) else None,
                             max(self.attempt - 1, 0), bool(self.open_sent))
