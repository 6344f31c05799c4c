"""The transport-report scheduler's rules on a real SQLite ledger with a scripted endpoint."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adapters.xta2 import TransportReportResult
from hub.errors import BrokerUnavailable, EndpointUnavailable, XtaFault
from hub.ledger import DELIVERED, ReportSchedule, SqliteLedger
from hub.report_scheduler import ReportScheduler, ReportTiming
from hub.reports import PollRequest
from hub.status import TRANSPORT_REPORT, TRANSPORT_REPORT_TIMEOUT, StatusEvent


@dataclass
class _Publisher:
    """Records what the scheduler publishes (the broker is not under test here); can fail."""

    published: list[StatusEvent] = field(default_factory=list)
    fail: bool = False

    def publish_all(self, items: Any, **_kw: Any) -> None:
        items = list(items)
        if self.fail:
            raise BrokerUnavailable("broker gone")
        self.published.extend(StatusEvent.from_body(body) for _e, _k, body, _p, _m in items)

    def lights(self) -> list[tuple[str, str | None, int | None]]:
        return [(e.event, e.detail.get("traffic_light"), e.attempt) for e in self.published]


class _Endpoint:
    """getTransportReport answering from a script: a status, or an exception to raise."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.polled: list[str] = []

    def __call__(self, transport_id: str) -> TransportReportResult:
        self.polled.append(transport_id)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return TransportReportResult(transport_id, answer)


@pytest.fixture()
def ledger(tmp_path: Path):
    led = SqliteLedger(tmp_path / "ledger.db")
    yield led
    led.close()


def _delivered(ledger: SqliteLedger, delay: float = 0.0) -> str:
    mid = str(uuid.uuid4())
    ledger.allocate(mid, "alpha", "azr:000100", f"urn:xta:{mid}")
    ledger.mark_delivered(mid, ReportSchedule("portal-a", "c-1", delay))
    return mid


def _scheduler(ledger: Any, endpoint: _Endpoint, publisher: _Publisher, *, max_polls: int = 5,
               **kw: Any) -> tuple[ReportScheduler, list[str]]:
    results: list[str] = []
    kw.setdefault("counted", results.append)
    return ReportScheduler("alpha", ledger, endpoint, lambda: publisher,  # type: ignore[arg-type,return-value]
                           ReportTiming(0.0, 0.0, max_polls), **kw), results


def _due(ledger_path: Path, mid: str) -> Any:
    with sqlite3.connect(ledger_path) as db:
        return db.execute("SELECT report_due_at, report_polls, report_open_sent FROM hub_deliveries "
                          "WHERE message_id = ?", (mid,)).fetchone()


def test_back_off_doubles_from_the_first_delay_up_to_the_interval() -> None:
    timing = ReportTiming(first_delay=1.0, interval=10.0, max_polls=9)
    assert [timing.delay_after(n) for n in range(1, 6)] == [2.0, 4.0, 8.0, 10.0, 10.0]
    assert ReportTiming(10.0, 10.0, 3).delay_after(1) == 10.0  # the default: a constant interval


def test_open_then_open_then_green(ledger: SqliteLedger, tmp_path: Path) -> None:
    mid = _delivered(ledger)
    endpoint, publisher = _Endpoint([0, 0, 1]), _Publisher()
    scheduler, results = _scheduler(ledger, endpoint, publisher)
    for _ in range(3):
        assert scheduler.run_once() == 1
    assert scheduler.run_once() == 0  # done: nothing left to poll
    assert results == ["open", "open", "green"]
    assert publisher.lights() == [(TRANSPORT_REPORT, "open", 1), (TRANSPORT_REPORT, "green", 3)]
    assert all(e.message_id == mid and e.portal == "portal-a" and e.correlation_id == "c-1"
               and e.transport_message_id == f"urn:xta:{mid}" for e in publisher.published)
    assert _due(tmp_path / "ledger.db", mid)[0] is None
    assert ledger.lookup(mid).state == DELIVERED


def test_not_due_yet_is_not_polled(ledger: SqliteLedger) -> None:
    _delivered(ledger, delay=600)
    endpoint = _Endpoint([])
    scheduler, _ = _scheduler(ledger, endpoint, _Publisher())
    assert scheduler.run_once() == 0 and endpoint.polled == []


def test_timeout_after_max_polls_with_one_open_event(ledger: SqliteLedger) -> None:
    _delivered(ledger)
    publisher = _Publisher()
    scheduler, results = _scheduler(ledger, _Endpoint([0, 0, 0]), publisher, max_polls=3)
    while scheduler.run_once():
        pass
    assert results == ["open", "open", "timeout"]
    assert publisher.lights() == [(TRANSPORT_REPORT, "open", 1), (TRANSPORT_REPORT_TIMEOUT, None, 3)]


def test_endpoint_trouble_is_polled_again_and_counts_as_a_poll(ledger: SqliteLedger, tmp_path: Path) -> None:
    mid = _delivered(ledger)
    publisher = _Publisher()
    scheduler, results = _scheduler(ledger, _Endpoint([EndpointUnavailable("down"), 0, EndpointUnavailable("down"),
                                                       2]), publisher)
    scheduler.run_once()
    assert _due(tmp_path / "ledger.db", mid)[1:] == (1, 0)  # one poll, no open event yet
    while scheduler.run_once():
        pass
    assert results == ["open", "open", "open", "yellow"]
    # a failed poll is not an open answer, and does not make the next open answer a first one
    assert publisher.lights() == [(TRANSPORT_REPORT, "open", 2), (TRANSPORT_REPORT, "yellow", 4)]


def test_permanent_error_ends_polling_with_unknown_light(ledger: SqliteLedger) -> None:
    _delivered(ledger)
    publisher = _Publisher()
    scheduler, results = _scheduler(ledger, _Endpoint([
        XtaFault("refused", exception_type="InvalidMessageIDException", code="9070")]), publisher)
    assert scheduler.run_once() == 1 and scheduler.run_once() == 0
    [event] = publisher.published
    assert results == ["failed"] and event.detail["traffic_light"] == "unknown"
    assert (event.detail["reason"], event.detail["error"]) == ("xta_9070", "XtaFault")


def test_breaker_open_pauses_polling(ledger: SqliteLedger) -> None:
    _delivered(ledger)
    endpoint, publisher = _Endpoint([1]), _Publisher()
    breaker_open = True
    scheduler, _ = _scheduler(ledger, endpoint, publisher, paused=lambda: breaker_open)
    assert scheduler.run_once() == 0 and endpoint.polled == []
    breaker_open = False
    assert scheduler.run_once() == 1 and publisher.lights() == [(TRANSPORT_REPORT, "green", 1)]


def test_lease_keeps_a_second_scheduler_off_a_claimed_report(tmp_path: Path) -> None:
    first, second = SqliteLedger(tmp_path / "ledger.db"), SqliteLedger(tmp_path / "ledger.db")
    try:
        mids = {_delivered(first) for _ in range(3)}
        publisher = _Publisher()
        other_endpoint = _Endpoint([1] * 10)
        other, _ = _scheduler(second, other_endpoint, publisher)
        claimed_meanwhile: list[int] = []

        class _Slow(_Endpoint):
            def __call__(self, transport_id: str) -> TransportReportResult:
                claimed_meanwhile.append(other.run_once())  # the other worker's round, mid-poll
                return super().__call__(transport_id)

        scheduler, _ = _scheduler(first, _Slow([1, 1, 1]), publisher, lease=60)
        assert scheduler.run_once() == 3
        assert claimed_meanwhile == [0, 0, 0] and other_endpoint.polled == []
        assert sorted(e.message_id for e in publisher.published) == sorted(mids)
    finally:
        first.close()
        second.close()


def test_unconfirmed_events_leave_the_report_to_be_polled_again(ledger: SqliteLedger, tmp_path: Path) -> None:
    mid = _delivered(ledger)
    publisher, lost = _Publisher(fail=True), list[StatusEvent]()
    scheduler, _ = _scheduler(ledger, _Endpoint([0, 1]), publisher, lease=0.5, lost=lost.append)
    assert scheduler.run_once() == 1
    assert [e.detail["traffic_light"] for e in lost] == ["open"] and publisher.published == []
    due, polls, open_sent = _due(tmp_path / "ledger.db", mid)
    assert due is not None and (polls, open_sent) == (0, 0)  # untouched but the lease
    publisher.fail = False
    with sqlite3.connect(tmp_path / "ledger.db") as db:  # the lease ran out
        db.execute("UPDATE hub_deliveries SET report_due_at = 0 WHERE message_id = ?", (mid,))
    assert scheduler.run_once() == 1
    assert publisher.lights() == [(TRANSPORT_REPORT, "green", 1)]


def test_thread_wakes_and_polls_until_stopped(ledger: SqliteLedger) -> None:
    _delivered(ledger)
    publisher = _Publisher()
    done = threading.Event()
    scheduler, _ = _scheduler(ledger, _Endpoint([0, 1]), publisher, tick=0.05,
                              counted=lambda r: done.set() if r == "green" else None)
    scheduler.start()
    try:
        assert done.wait(20)
    finally:
        scheduler.stop()
    assert publisher.lights() == [(TRANSPORT_REPORT, "open", 1), (TRANSPORT_REPORT, "green", 2)]


def test_old_poll_request_becomes_a_ledger_schedule(ledger: SqliteLedger) -> None:
    request = PollRequest("m-old", "urn:xta:9", "portal-a", "azr:000100", attempt=3, correlation_id="c",
                          open_sent=True)
    ledger.schedule_report("alpha", request.pending())  # no ledger row yet: recreated as delivered
    publisher = _Publisher()
    scheduler, _ = _scheduler(ledger, _Endpoint([1]), publisher)
    assert scheduler.run_once() == 1
    [event] = publisher.published
    assert (event.message_id, event.attempt, event.transport_message_id) == ("m-old", 3, "urn:xta:9")
    assert ledger.lookup("m-old").state == DELIVERED


def test_old_ledger_gets_the_report_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE hub_deliveries (message_id TEXT PRIMARY KEY, adapter TEXT NOT NULL, "
                   "destination TEXT NOT NULL, transport_message_id TEXT NOT NULL, state TEXT NOT NULL, "
                   "created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL)")
        db.execute("INSERT INTO hub_deliveries VALUES ('m', 'alpha', 'd', 't', 'delivered', 0, 0)")
    opened: list[SqliteLedger] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(SqliteLedger(path))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]  # processes starting at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == [] and len(opened) == 4
        assert opened[0].lookup("m").delivered  # the old row is intact
        mid = _delivered(opened[1])
        scheduler, results = _scheduler(opened[2], _Endpoint([1]), _Publisher())
        assert scheduler.run_once() == 1 and results == ["green"]
        assert _due(path, mid)[0] is None
    finally:
        for led in opened:
            led.close()
