"""Lives of applications as status events, each with the timeline and summary the store must give.

The events of a life are listed in the order in which they happened; that order (not the store's
sort) is the expected timeline, and the expected summary is written out by hand, so a test compares
the store against what happened, not against a second copy of its own rules. Ties of equal ``at``
are placed on purpose (accepted/delivering, delivered/transport_report) where only PRECEDENCE can
order them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from hub.status import StatusEvent, event_id_for
from hub.tracking.model import ApplicationSummary

T0 = 1_700_000_000.0
AUTHORITY = "azr:000100"


@dataclass
class Life:
    message_id: str
    portal: str
    events: list[StatusEvent]
    summary: ApplicationSummary
    ids: dict[str, str] = field(default_factory=dict)  # id kind -> id (correlation, transport, reply)

    def expected(self) -> dict[str, Any]:
        """``Trace.as_dict()`` as it must be."""
        return {"application": asdict(self.summary), "timeline": [entry(e) for e in self.events]}


def entry(e: StatusEvent) -> dict[str, Any]:
    return {"event_id": e.event_id, "event": e.event, "at": e.at, "adapter": e.adapter, "destination": e.destination,
            "attempt": e.attempt, "reason": e.reason, "transport_message_id": e.transport_message_id,
            "detail": e.detail}


def reply(portal: str, ref: str, reply_id: str, at: float, message_id: str = "") -> StatusEvent:
    """A reply_received event as the return-channel poller publishes it (contracts.md)."""
    return StatusEvent(message_id=message_id, event="reply_received", portal=portal, destination=AUTHORITY, at=at,
                       application_ref=ref, transport_message_id=reply_id,
                       event_id=event_id_for("reply_received", reply_id),
                       detail={"reply_id": reply_id, "message_type": "OZG.Statusmeldung.130104", "reply_uuid": None})


class _Builder:
    def __init__(self, mid: str, portal: str, corr: str, ref: str) -> None:
        self.mid, self.portal, self.corr, self.ref = mid, portal, corr, ref
        self.events: list[StatusEvent] = []

    def add(self, event: str, at: float, **kw: Any) -> None:
        kw.setdefault("correlation_id", self.corr)
        self.events.append(StatusEvent(message_id=self.mid, event=event, portal=self.portal, destination=AUTHORITY,
                                       at=at, **kw))

    def deliver_attempt(self, at: float, attempt: int, tid: str) -> None:
        self.add("accepted", at, attempt=attempt)
        self.add("delivering", at if attempt == 1 else at + 0.2, adapter="advis", transport_message_id=tid,
                 attempt=attempt, application_ref=self.ref)


def _summary(b: _Builder, **kw: Any) -> ApplicationSummary:
    values: dict[str, Any] = {"message_id": b.mid, "portal": b.portal, "destination": AUTHORITY, "adapter": "advis",
                              "correlation_id": b.corr, "application_ref": b.ref, "first_at": b.events[0].at,
                              "last_at": b.events[-1].at}
    values.update(kw)
    return ApplicationSummary(**values)


def delivered(n: str, portal: str = "portal-a", t0: float = T0) -> Life:
    """Accepted, delivered on the first attempt, report open then green, one reply back."""
    b = _Builder(f"mid-del-{n}", portal, f"corr-del-{n}", f"REF-del-{n}")
    tid = f"urn:xta:del-{n}"
    b.deliver_attempt(t0, 1, tid)  # accepted and delivering share a time stamp
    b.add("delivered", t0 + 1.5, adapter="advis", transport_message_id=tid, attempt=1, detail={"xta_message_id": tid})
    b.add("transport_report", t0 + 1.5, adapter="advis", transport_message_id=tid,  # same time as delivered
          detail={"traffic_light": "open"})
    b.add("transport_report", t0 + 61, adapter="advis", transport_message_id=tid, detail={"traffic_light": "green"})
    b.events.append(reply(portal, b.ref, f"urn:xta:reply-{n}", t0 + 3600))
    return Life(b.mid, portal, b.events,
                _summary(b, state="delivered", state_at=t0 + 1.5, transport_message_id=tid, attempts=1,
                         transport_report="green", replies=1),
                {"message_id": b.mid, "correlation_id": b.corr, "transport_message_id": tid,
                 "reply_transport_id": f"urn:xta:reply-{n}"})


def retried(n: str, portal: str = "portal-a", t0: float = T0) -> Life:
    """Two transient failures (retry_scheduled), delivered on the third attempt."""
    b = _Builder(f"mid-ret-{n}", portal, f"corr-ret-{n}", f"REF-ret-{n}")
    tid = f"urn:xta:ret-{n}"
    b.deliver_attempt(t0, 1, tid)
    b.add("retry_scheduled", t0 + 1, adapter="advis", transport_message_id=tid, attempt=1,
          reason="endpoint_unavailable", detail={"reason": "endpoint_unavailable", "attempts": 1})
    b.deliver_attempt(t0 + 31, 2, tid)
    b.add("retry_scheduled", t0 + 32, adapter="advis", transport_message_id=tid, attempt=2,
          reason="endpoint_protocol", detail={"reason": "endpoint_protocol", "attempts": 2})
    b.deliver_attempt(t0 + 331, 3, tid)
    b.add("delivered", t0 + 332, adapter="advis", transport_message_id=tid, attempt=3)
    b.add("transport_report", t0 + 400, adapter="advis", transport_message_id=tid, detail={"traffic_light": "green"})
    return Life(b.mid, portal, b.events,
                _summary(b, state="delivered", state_at=t0 + 332, transport_message_id=tid, attempts=3,
                         reason="endpoint_protocol", transport_report="green"),
                {"message_id": b.mid, "correlation_id": b.corr, "transport_message_id": tid})


def replayed(n: str, portal: str = "portal-a", t0: float = T0) -> Life:
    """A retry, then dead-lettered (permanent refusal), replayed by an operator, delivered under a
    new XTA id. The replayed delivery counts as attempt 1 again: ``attempts`` stays the highest, 2."""
    b = _Builder(f"mid-rep-{n}", portal, f"corr-rep-{n}", f"REF-rep-{n}")
    tid1, tid2 = f"urn:xta:rep-{n}-1", f"urn:xta:rep-{n}-2"
    b.deliver_attempt(t0, 1, tid1)
    b.add("retry_scheduled", t0 + 1, adapter="advis", transport_message_id=tid1, attempt=1,
          reason="endpoint_unavailable", detail={"reason": "endpoint_unavailable", "attempts": 1})
    b.deliver_attempt(t0 + 31, 2, tid1)
    b.add("dead_lettered", t0 + 32, adapter="advis", transport_message_id=tid1, attempt=2, reason="xta_9012",
          detail={"reason": "xta_9012", "attempts": 2})
    b.add("replayed", t0 + 7200, reason="xta_9012", detail={"previous_reason": "xta_9012"})
    b.deliver_attempt(t0 + 7201, 1, tid2)
    b.add("delivered", t0 + 7202, adapter="advis", transport_message_id=tid2, attempt=1)
    b.add("transport_report_timeout", t0 + 9000, adapter="advis", transport_message_id=tid2, detail={"polls": 30})
    return Life(b.mid, portal, b.events,
                _summary(b, state="delivered", state_at=t0 + 7202, transport_message_id=tid2, attempts=2,
                         reason="xta_9012", transport_report="timeout"),
                {"message_id": b.mid, "correlation_id": b.corr, "transport_message_id": tid1,
                 "new_transport_message_id": tid2})


def dead(n: str, portal: str = "portal-a", t0: float = T0, reason: str = "xta_9012") -> Life:
    """Dead-lettered and left there."""
    b = _Builder(f"mid-dead-{n}", portal, f"corr-dead-{n}", f"REF-dead-{n}")
    tid = f"urn:xta:dead-{n}"
    b.deliver_attempt(t0, 1, tid)
    b.add("dead_lettered", t0 + 1, adapter="advis", transport_message_id=tid, attempt=1, reason=reason)
    return Life(b.mid, portal, b.events,
                _summary(b, state="dead_lettered", state_at=t0 + 1, transport_message_id=tid, attempts=1,
                         reason=reason),
                {"message_id": b.mid, "correlation_id": b.corr, "transport_message_id": tid})


LIVES = {"delivered": delivered, "retried_then_delivered": retried, "dead_lettered_replayed_delivered": replayed,
         "dead_lettered": dead}
