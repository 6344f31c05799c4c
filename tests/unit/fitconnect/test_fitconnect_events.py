"""Which SETs count for a submission's status: only this submission's in this case, each signed by
the party that may state its event (the delivery service's JWKS for its own events, the
destination's signature key and ``iss`` for the receiver's), picked before anything is verified."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.fitconnect import FitConnectAdapter, parse_transport_id
from hub.errors import MalformedAnswer
from tests.unit.fitconnect.conftest import DEST, DEST_SIG_KID, Pki, delivery
from tests.unit.fitconnect.fake_api import FakeApi, set_payload, sign_set
from transport.fitconnect.events import SubmissionStatus

OTHER = "ce75a6b8-d72f-4b94-b09e-af6be35bc2ae"


def _delivered(adapter: FitConnectAdapter) -> tuple[str, str, str]:
    d = delivery()
    tid = adapter.new_transport_id(d)
    adapter.deliver(d, tid)
    submission_id, case_id, _ = parse_transport_id(tid)
    return tid, submission_id, case_id


def _by_destination(pki: Pki, event: str, submission_id: str, case_id: str, *, iss: str = DEST,
                    body: dict[str, Any] | None = None) -> str:
    return sign_set(pki.sig_key_pem.read_bytes(), DEST_SIG_KID,
                    set_payload(event, submission_id, case_id, iss=iss, body=body))


@pytest.mark.parametrize(("iss", "reason"), [(DEST, "fitconnect_set_key_refused"),
                                             ("https://fake.invalid", "fitconnect_set_issuer")])
def test_the_delivery_service_cannot_accept_for_the_receiver(api: FakeApi, adapter: FitConnectAdapter, iss: str,
                                                             reason: str) -> None:
    tid, submission_id, case_id = _delivered(adapter)
    api.add_event(case_id, api._sign(set_payload("accept-submission", submission_id, case_id, iss=iss)))
    with pytest.raises(MalformedAnswer) as caught:
        adapter.transport_report(tid)
    assert caught.value.reason == reason


def test_the_receiver_cannot_state_a_submit(api: FakeApi, pki: Pki, adapter: FitConnectAdapter) -> None:
    """A submit-submission signed with the destination's key does not make a re-send skip its upload."""
    d = delivery()
    tid = adapter.new_transport_id(d)
    submission_id, case_id, _ = parse_transport_id(tid)
    api.add_event(case_id, _by_destination(pki, "submit-submission", submission_id, case_id))
    with pytest.raises(MalformedAnswer):
        adapter.deliver(d, tid, resend=True)
    assert api.submissions[submission_id]["submit"] is None


def test_an_accept_must_be_issued_by_the_destination(api: FakeApi, pki: Pki, adapter: FitConnectAdapter) -> None:
    tid, submission_id, case_id = _delivered(adapter)
    api.add_event(case_id, _by_destination(pki, "accept-submission", submission_id, case_id, iss=OTHER))
    with pytest.raises(MalformedAnswer) as caught:
        adapter.transport_report(tid)
    assert caught.value.reason == "fitconnect_set_issuer"


def test_a_set_naming_another_case_does_not_count(api: FakeApi, pki: Pki, adapter: FitConnectAdapter) -> None:
    tid, submission_id, case_id = _delivered(adapter)
    api.add_event(case_id, _by_destination(pki, "reject-submission", submission_id, OTHER))
    without_txn = set_payload("accept-submission", submission_id, case_id, iss=DEST)
    del without_txn["txn"]
    api.add_event(case_id, sign_set(pki.sig_key_pem.read_bytes(), DEST_SIG_KID, without_txn))
    report = adapter.transport_report(tid)
    assert (report.status_name, report.final, report.events) == ("submitted", False,
                                                                 ("create-submission", "submit-submission"))


@pytest.mark.parametrize("kind", ["bad signature", "oversized", "garbage"])
def test_an_unverifiable_set_of_another_submission_does_not_block(api: FakeApi, pki: Pki,
                                                                  adapter: FitConnectAdapter, kind: str) -> None:
    tid, submission_id, case_id = _delivered(adapter)
    if kind == "garbage":
        token = "not a jws"
    else:
        body = {"problems": [{"type": "x", "detail": "y" * 200_000}]} if kind == "oversized" else None
        token = _by_destination(pki, "reject-submission", OTHER, case_id, body=body)
        if kind == "bad signature":
            token = token[:-8] + ("AAAAAAAA" if not token.endswith("AAAAAAAA") else "BBBBBBBB")
    api.add_event(case_id, token)
    api.add_event(case_id, _by_destination(pki, "accept-submission", submission_id, case_id))
    assert adapter.transport_report(tid).status_name == "accepted"


def test_the_problems_of_a_rejection_are_clipped(api: FakeApi, pki: Pki, adapter: FitConnectAdapter) -> None:
    tid, submission_id, case_id = _delivered(adapter)
    problem = {"type": "https://schema.fitko.de/fit-connect/events/problems/x", "title": "T\x1b[31m" + "t" * 5000,
               "detail": "line\nbreak", "instance": 7, "extra": "dropped"}
    api.add_event(case_id, _by_destination(pki, "reject-submission", submission_id, case_id,
                                           body={"problems": [problem, "not an object"]}))
    report = adapter.transport_report(tid)
    assert report.status_name == "rejected"
    (clipped,) = report.problems
    assert set(clipped) == {"type", "title", "detail"} and clipped["detail"] == "line break"
    assert len(clipped["title"]) == 300 and clipped["title"].startswith("T [31mttt")


def test_the_delivery_service_may_reject(api: FakeApi, adapter: FitConnectAdapter) -> None:
    """It rejects submissions left unfetched (documented 14 days): its JWKS key states that."""
    tid, submission_id, case_id = _delivered(adapter)
    api.add_event(case_id, api._sign(set_payload("reject-submission", submission_id, case_id)))
    assert adapter.transport_report(tid).status_name == "rejected"


@pytest.mark.parametrize(("events", "submitted", "gone"), [
    (("create-submission",), False, False),
    (("create-submission", "delete-submission"), False, True),
    (("create-submission", "submit-submission", "delete-submission"), True, False),
    (("notify-submission",), True, False),
    (("forward-submission",), True, False),
    (("accept-submission",), True, False),
    (("reject-submission",), True, False),
])
def test_submitted_needs_an_event_after_the_submit(events: tuple[str, ...], submitted: bool, gone: bool) -> None:
    status = SubmissionStatus(OTHER, OTHER, events=events)
    assert (status.submitted, status.gone) == (submitted, gone)
