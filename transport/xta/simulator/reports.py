"""TransportReports of the XTA simulator, derived from a message's transport state and the config.

A report is 0 (open) from acceptance until ``report_delay`` seconds later (or later still, while a
DeliveryAttributes/NotBefore lies in the future); then it is final: 1 green by default, or the status
``report_status`` configures for the reader; 3 red when the reader does not offer the service
(``services``) or the author cancelled the order. Only messages with a final green or yellow report
reach the reader's mailbox. Records carry a code and a reason, never payload.

Error records use the XTA error code list (``urn:de:xta:webservice:codeliste:fehlernummer``, e.g. 9032
delivery error); info and warning records use the simulator's own list (``RECORD_LIST_URI``), as
Code.RecordType lets each party choose a list.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import replace

from transport.xta.metadata import (
    STATUS_GREEN,
    STATUS_OPEN,
    STATUS_RED,
    STATUS_YELLOW,
    MessageMetaData,
    ReportRecord,
    TransportReport,
)
from transport.xta.ns import ERROR_CODE_LIST_URI, ERROR_CODE_LIST_VERSION
from transport.xta.simulator.config import SimulatorConfig
from transport.xta.simulator.store import StoredMessage, TransportState

RECORD_LIST_URI = "urn:xoev-hub:xta-simulator:codeliste:record"
RECORD_LIST_VERSION = "1"


def _iso(epoch: float) -> str:
    return _dt.datetime.fromtimestamp(epoch, _dt.UTC).isoformat(timespec="seconds")


def _dt_of(epoch: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(int(epoch), _dt.UTC)


def initial_state(config: SimulatorConfig, md: MessageMetaData, now: float | None = None) -> TransportState:
    """The state of a just accepted message: when it is delivered, and how it will end."""
    now = time.time() if now is None else now
    ready = now + config.report_delay
    not_before = md.delivery_attributes.not_before
    if not_before is not None:
        when = not_before if not_before.tzinfo else not_before.replace(tzinfo=_dt.UTC)
        ready = max(ready, when.timestamp() + config.report_delay)
    status, reason = config.report_status.get(md.reader.identifier, STATUS_GREEN), ""
    offered = config.services.get(md.reader.identifier) if config.services is not None else None
    if config.services is not None and (offered is None or md.service not in offered):
        status, reason = STATUS_RED, f"reader {md.reader.identifier} does not offer service {md.service}"
    elif status == STATUS_RED:
        reason = "reader's XTA server refused the delivery"
    elif status == STATUS_YELLOW:
        reason = "delivered with warnings"
    if status not in (STATUS_GREEN, STATUS_YELLOW, STATUS_RED):
        raise ValueError(f"report_status for {md.reader.identifier} must be 1, 2 or 3, not {status}")
    return TransportState(accepted_at=now, ready_at=ready, final_status=status, reason=reason)


def current_status(state: TransportState, now: float | None = None) -> int:
    now = time.time() if now is None else now
    if state.cancelled_at is not None:
        return STATUS_RED
    return STATUS_OPEN if now < state.ready_at else state.final_status


def in_mailbox(state: TransportState, now: float | None = None) -> bool:
    """Delivered to the reader's mailbox and not yet fetched (closed)."""
    return current_status(state, now) in (STATUS_GREEN, STATUS_YELLOW) and state.fetched_at is None


def _record(epoch: float, code: str, reason: str, *, error: bool = False) -> ReportRecord:
    if error:
        return ReportRecord(_iso(epoch), code, ERROR_CODE_LIST_URI, ERROR_CODE_LIST_VERSION, reason)
    return ReportRecord(_iso(epoch), code, RECORD_LIST_URI, RECORD_LIST_VERSION, reason)


def build_report(config: SimulatorConfig, message: StoredMessage, state: TransportState,
                 now: float | None = None) -> TransportReport:
    """The TransportReport of ``message`` as of ``now``."""
    now = time.time() if now is None else now
    status = current_status(state, now)
    assert message.metadata is not None
    da = message.metadata.delivery_attributes
    delivered = status in (STATUS_GREEN, STATUS_YELLOW)
    da = replace(da, initial_send=da.initial_send or _dt_of(state.accepted_at),
                 delivery=_dt_of(state.ready_at) if delivered else None,
                 initial_fetch=_dt_of(state.fetched_at) if state.fetched_at is not None else None)
    infos = [_record(state.accepted_at, "ACCEPTED", "transport order accepted")]
    warnings, errors = [], []
    if state.cancelled_at is not None:
        errors.append(_record(state.cancelled_at, "9000", "transport order cancelled by the author", error=True))
    elif status == STATUS_RED:
        errors.append(_record(state.ready_at, "9032", state.reason or "delivery failed", error=True))
    elif delivered:
        infos.append(_record(state.ready_at, "DELIVERED", "delivered to the reader's mailbox"))
        if status == STATUS_YELLOW:
            warnings.append(_record(state.ready_at, "WARNING", state.reason or "delivered with warnings"))
    if state.fetched_at is not None:
        infos.append(_record(state.fetched_at, "FETCHED", "fetched by the reader"))
    return TransportReport(
        metadata=replace(message.metadata, delivery_attributes=da), report_time=_iso(now),
        server_identity=config.server_identity, status=status, errors=tuple(errors),
        warnings=tuple(warnings), infos=tuple(infos))
