"""Re-sends, races and lost submissions: a racing attempt that got through is a confirmation
(XTA 9024's analogue), a submission the service dropped is a ``TransportIdInvalid`` (the pipeline
forgets it and creates a new one), and one attachment is sealed at a time."""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.base import DeliveryReceipt
from adapters.fitconnect import FitConnectAdapter, parse_transport_id
from hub.errors import EndpointUnavailable, TransportError, TransportIdInvalid
from tests.unit.fitconnect.conftest import DEST, Pki, adapter_section, context, delivery
from tests.unit.fitconnect.fake_api import FakeApi, set_payload
from transport.fitconnect.errors import FitConnectRefused


@pytest.fixture
def quick(api: FakeApi, pki: Pki) -> Iterator[FitConnectAdapter]:
    """The adapter with a recorded, instant sleep between the event-log re-reads."""
    built = FitConnectAdapter.from_config("fc", adapter_section(api, pki), context())
    built._conflict_rereads = (0.0, 1.0, 2.0)
    built._sleep = lambda seconds: None
    yield built
    built.close()


def _ids(tid: str) -> tuple[str, str, str]:
    return parse_transport_id(tid)


def test_the_transport_id_names_submission_case_and_destination(adapter: FitConnectAdapter) -> None:
    d = delivery()
    submission_id, case_id, destination_id = _ids(adapter.new_transport_id(d))
    assert destination_id == DEST and submission_id != case_id
    for bad in (f"{submission_id}:{case_id}", f"{submission_id}:{case_id}:{DEST}:x", f"{submission_id}:{case_id}:x"):
        with pytest.raises(TransportError, match="submissionId:caseId:destinationId"):
            parse_transport_id(bad)


def test_concurrent_attempts_of_one_submission_both_confirm_it(api: FakeApi, adapter: FitConnectAdapter) -> None:
    """Two attempts under one id at once (a broker redelivery while the first still runs): both
    pass the re-send check, one submit wins; the other's 422 is a confirmation, not a refusal."""
    d = delivery()
    tid = adapter.new_transport_id(d)
    barrier = threading.Barrier(2)
    out: dict[int, DeliveryReceipt | Exception] = {}

    def both_ready() -> None:
        barrier.wait(60)

    def attempt(n: int) -> None:
        try:
            out[n] = adapter.deliver(d, tid, resend=True, ready=both_ready)
        except Exception as exc:  # noqa: BLE001 - recorded and asserted below
            out[n] = exc

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(isinstance(r, DeliveryReceipt) for r in out.values()), out
    assert len(out) == 2 and len(api.submissions) == 1
    assert api.submissions[_ids(tid)[0]]["submit"] is not None


def test_a_conflict_while_the_event_log_lags_is_confirmed_on_a_re_read(api: FakeApi, pki: Pki,
                                                                      quick: FitConnectAdapter) -> None:
    """The submit is refused (another attempt won) but its SET reaches the log only later."""
    d = delivery()
    tid = quick.new_transport_id(d)
    submission_id, case_id, _ = _ids(tid)
    api.fail_next("PUT", rf"/v1/submissions/{submission_id}", 422,
                  {"type": "about:blank", "title": "Submission already submitted", "status": 422})
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the racing submit's SET lands during the second wait
        slept.append(seconds)
        if len(slept) == 2:
            api.add_event(case_id, api._sign(set_payload("submit-submission", submission_id, case_id)))

    quick._sleep = sleep
    receipt = quick.deliver(d, tid)
    assert receipt.accepted_on_resend and slept == [1.0, 2.0]


def test_a_conflict_without_a_submit_in_the_log_is_the_refusal(api: FakeApi, quick: FitConnectAdapter) -> None:
    d = delivery()
    tid = quick.new_transport_id(d)
    submission_id = _ids(tid)[0]
    api.fail_next("PUT", rf"/v1/submissions/{submission_id}", 422,
                  {"type": "about:blank", "title": "Announced attachments missing", "status": 422})
    with pytest.raises(FitConnectRefused) as caught:
        quick.deliver(d, tid)
    assert caught.value.status == 422 and not caught.value.transient
    assert len(api.calls("GET", r"/v1/cases/.*/events")) == 3  # every re-read, then the refusal


def test_a_400_is_not_taken_for_a_race(api: FakeApi, quick: FitConnectAdapter) -> None:
    d = delivery()
    tid = quick.new_transport_id(d)
    api.fail_next("PUT", rf"/v1/submissions/{_ids(tid)[0]}", 400, {"type": "about:blank", "title": "Bad", "status": 400})
    with pytest.raises(FitConnectRefused):
        quick.deliver(d, tid)
    assert api.calls("GET", r"/v1/cases/.*/events") == []


def test_a_submission_deleted_before_its_submit_is_a_lost_id(api: FakeApi, adapter: FitConnectAdapter) -> None:
    d = delivery()
    tid = adapter.new_transport_id(d)
    submission_id, case_id, _ = _ids(tid)
    api.add_event(case_id, api._sign(set_payload("delete-submission", submission_id, case_id)))
    assert not adapter.transport_report(tid).submitted
    with pytest.raises(TransportIdInvalid) as caught:
        adapter.deliver(d, tid, resend=True)
    assert caught.value.transient and api.submissions[submission_id]["attachments"] == {}


def test_a_case_the_service_forgot_is_a_lost_id(api: FakeApi, adapter: FitConnectAdapter) -> None:
    d = delivery()
    tid = adapter.new_transport_id(d)
    api.events.clear()  # the service dropped the incomplete submission and its case
    with pytest.raises(TransportIdInvalid) as caught:
        adapter.deliver(d, tid, resend=True)
    assert caught.value.transient and isinstance(caught.value, EndpointUnavailable)


def test_a_recipient_now_at_another_destination_is_a_lost_id(api: FakeApi, adapter: FitConnectAdapter) -> None:
    d = delivery()
    submission_id, case_id, _ = _ids(adapter.new_transport_id(d))
    with pytest.raises(TransportIdInvalid):
        adapter.deliver(d, f"{submission_id}:{case_id}:ce75a6b8-d72f-4b94-b09e-af6be35bc2ae")
    assert api.calls("PUT", r"/v1/submissions/.*") == []


def test_one_attachment_is_sealed_at_a_time(adapter: FitConnectAdapter, monkeypatch: pytest.MonkeyPatch) -> None:
    """Peak memory of a delivery of 4 x 4 MiB stays below 2.75x the content (about 2.3x: the data's
    JWE and one attachment while joserfc seals it, with its ciphertext and base64 copies); sealing
    every part up front costs more. The HTTP calls are stubbed: only the adapter's own copies count."""
    part = 4 * 1024 * 1024
    d = delivery(message=b"<a>" + b"x" * part + b"</a>", attachments=(b"y" * part, b"z" * part, b"w" * part))
    tid = adapter.new_transport_id(d)
    adapter.prepare(d)  # destination and key cached

    def drop(*args: Any) -> None:
        return None

    monkeypatch.setattr(adapter.client, "upload_attachment", drop)
    monkeypatch.setattr(adapter.client, "submit", drop)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        adapter.deliver(d, tid)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 2.75 * 4 * part, f"peak {peak / 2**20:.1f} MiB for {4 * part / 2**20:.0f} MiB of content"
