"""The client's status mapping against a real HTTP server on loopback serving canned answers:
every answer becomes the right branch of the hub's error tree (transient or not, retry_after)."""

from __future__ import annotations

import datetime as dt
import email.utils
import threading
from collections.abc import Iterator

import pytest

from hub.errors import (
    ContentTooLarge,
    DirectoryError,
    EndpointUnavailable,
    MalformedAnswer,
    MessageError,
)
from tests.unit.fitconnect.conftest import DEST
from tests.unit.fitconnect.fake_api import FakeApi
from transport.fitconnect.client import FitConnectClient, retry_after
from transport.fitconnect.errors import (
    FitConnectAccessDenied,
    FitConnectMalformed,
    FitConnectRefused,
    FitConnectUnavailable,
)

DEST_PATH = rf"/v1/destinations/{DEST}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(api: FakeApi, clock: Clock) -> Iterator[FitConnectClient]:
    c = FitConnectClient(api.url, f"{api.url}/token", "portal-client", "s3cret-value", timeout=2.0,
                         pool_size=2, token_refresh_margin=60, clock=clock)
    yield c
    c.close()


def test_the_token_is_form_encoded_cached_and_renewed_before_expiry(api: FakeApi, client: FitConnectClient,
                                                                     clock: Clock) -> None:
    client.get_destination(DEST)
    client.get_destination(DEST)
    token_calls = api.calls("POST", "/token")
    assert len(token_calls) == 1
    _, _, headers, body = token_calls[0]
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert body == b"grant_type=client_credentials&client_id=portal-client&client_secret=s3cret-value"
    clock.now += 1800 - 60 - 1  # still inside expires_in minus the margin
    client.get_destination(DEST)
    assert len(api.calls("POST", "/token")) == 1
    clock.now += 2
    client.get_destination(DEST)
    assert len(api.calls("POST", "/token")) == 2


def test_a_401_fetches_a_new_token_once_and_repeats(api: FakeApi, client: FitConnectClient) -> None:
    client.token()
    api.fail_next("GET", DEST_PATH, 401, {"type": "about:blank", "title": "Unauthorized", "status": 401})
    assert client.get_destination(DEST).destination_id == DEST
    gets = api.calls("GET", DEST_PATH)
    assert [g[2]["Authorization"] for g in gets] == ["Bearer token-1", "Bearer token-2"]


def test_a_second_401_is_access_denied(api: FakeApi, client: FitConnectClient) -> None:
    for _ in range(2):
        api.fail_next("GET", DEST_PATH, 401, {"type": "about:blank", "title": "Unauthorized", "status": 401})
    with pytest.raises(FitConnectAccessDenied) as caught:
        client.get_destination(DEST)
    assert caught.value.transient and caught.value.reason == "fitconnect_unauthorized"  # credentials: retry, breaker
    assert len(api.calls("GET", DEST_PATH)) == 2


def test_a_refused_client_secret_is_access_denied_without_the_secret(api: FakeApi, client: FitConnectClient) -> None:
    api.fail_next("POST", "/token", 401, {"error": "invalid_client"})
    with pytest.raises(FitConnectAccessDenied) as caught:
        client.token()
    assert caught.value.reason == "fitconnect_token_refused" and "s3cret" not in str(caught.value)
    assert "s3cret" not in repr(client)


def test_an_unknown_destination_is_a_directory_error(client: FitConnectClient) -> None:
    with pytest.raises(DirectoryError) as caught:
        client.get_destination("00000000-0000-4000-8000-000000000000")
    assert not caught.value.transient and caught.value.reason == "fitconnect_destination_unknown"


def test_a_422_is_permanent_with_the_problem_title_and_detail(api: FakeApi, client: FitConnectClient) -> None:
    api.fail_next("POST", "/v1/submissions", 422, {"type": "https://x/problems/state", "title": "Destination inactive",
                                                   "status": 422, "detail": "Zustellpunkt\nnicht aktiv"})
    with pytest.raises(FitConnectRefused) as caught:
        client.create_submission({"destinationId": DEST, "announcedAttachments": [],
                                  "serviceType": {"identifier": "urn:de:x:y"}})
    assert isinstance(caught.value, MessageError) and not caught.value.transient
    assert caught.value.reason == "fitconnect_422" and caught.value.status == 422
    assert "Destination inactive - Zustellpunkt nicht aktiv" in str(caught.value)


def test_a_413_is_content_too_large(api: FakeApi, client: FitConnectClient) -> None:
    api.fail_next("PUT", r"/v1/submissions/.*", 413, {"type": "about:blank", "title": "Too large", "status": 413})
    with pytest.raises(ContentTooLarge):
        client.upload_attachment("ce75a6b8-d72f-4b94-b09e-af6be35bc2ae", "879ee109-a690-4db8-ab32-424284184d7d", b"a.b.c.d.e")


@pytest.mark.parametrize(("header", "expected"), [("7", 7.0), (None, None)])
def test_a_429_is_transient_and_carries_retry_after(api: FakeApi, client: FitConnectClient, header: str | None,
                                                    expected: float | None) -> None:
    api.fail_next("GET", DEST_PATH, 429, {"type": "about:blank", "title": "Slow down", "status": 429},
                  headers={"Retry-After": header} if header else {})
    with pytest.raises(FitConnectUnavailable) as caught:
        client.get_destination(DEST)
    assert caught.value.transient and caught.value.reason == "fitconnect_http_429"
    assert caught.value.retry_after == expected


def test_retry_after_as_an_http_date() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    date = email.utils.format_datetime(now + dt.timedelta(seconds=90), usegmt=True)
    assert retry_after(date, now=now) == 90.0
    assert retry_after(email.utils.format_datetime(now - dt.timedelta(seconds=5), usegmt=True), now=now) == 0.0
    assert retry_after("soon", now=now) is None


def test_a_503_is_transient_with_its_http_date(api: FakeApi, client: FitConnectClient) -> None:
    later = email.utils.format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120), usegmt=True)
    api.fail_next("GET", r"/v1/cases/.*", 503, b"<html>maintenance</html>", headers={"Retry-After": later})
    with pytest.raises(EndpointUnavailable) as caught:
        client.events("e89e107e-ed79-40e6-ad34-4e770f9df26d")
    assert caught.value.transient and caught.value.reason == "fitconnect_http_503"
    assert isinstance(caught.value, FitConnectUnavailable) and 60 < (caught.value.retry_after or 0) <= 120


@pytest.mark.parametrize("body", [b"<html>not json</html>", b'["a list"]', b'{"destinationId": "x"}'])
def test_garbage_is_a_malformed_answer(api: FakeApi, client: FitConnectClient, body: bytes) -> None:
    api.fail_next("GET", DEST_PATH, 200, body, headers={"Content-Type": "application/json"})
    with pytest.raises(MalformedAnswer) as caught:
        client.get_destination(DEST)
    assert caught.value.transient and isinstance(caught.value, FitConnectMalformed)


def test_a_success_code_the_api_does_not_promise_is_malformed(api: FakeApi, client: FitConnectClient) -> None:
    api.fail_next("PUT", r"/v1/submissions/[^/]+", 200, b"{}")
    with pytest.raises(FitConnectMalformed):
        client.submit("ce75a6b8-d72f-4b94-b09e-af6be35bc2ae", b"a.b.c.d.e", None)


def test_a_timeout_is_transient(api: FakeApi, clock: Clock) -> None:
    release = threading.Event()
    api.fail_next("GET", DEST_PATH, 200, b"{}", hold=release)
    slow = FitConnectClient(api.url, f"{api.url}/token", "portal-client", "s3cret-value", timeout=0.5, clock=clock)
    try:
        with pytest.raises(FitConnectUnavailable) as caught:
            slow.get_destination(DEST)
        assert caught.value.transient and caught.value.reason == "fitconnect_timeout"
    finally:
        release.set()
        slow.close()


def test_a_refused_connection_is_transient(clock: Clock) -> None:
    from tests.support.net import free_port

    url = f"http://127.0.0.1:{free_port()}"
    dead = FitConnectClient(url, f"{url}/token", "c", "s", timeout=5.0, clock=clock)
    with pytest.raises(FitConnectUnavailable) as caught:
        dead.info()
    assert caught.value.reason == "fitconnect_connection"


def test_the_event_log_is_read_page_by_page(api: FakeApi, client: FitConnectClient) -> None:
    case = "e89e107e-ed79-40e6-ad34-4e770f9df26d"
    api.events[case] = [f"t{i}.p.s" for i in range(1203)]
    assert client.events(case) == api.events[case]
    assert len(api.calls("GET", rf"/v1/cases/{case}/events")) == 3  # 500 + 500 + 203
