"""A third delivery profile needs no change in hub/: a minimal profile, written here into a temporary
folder and registered only through the ``hub.adapters`` entry point of its own distribution, is
found by a real ``hub worker`` process and delivers an application end to end (RabbitMQ, the
worker, real HTTP over loopback)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from adapters.registry import BUILTIN_PROFILES
from hub.config import load_config
from hub.status import DELIVERED
from tests.integration.helpers import StatusCollector, wait_for
from tests.reliability.support import WorkerProcess, applications, publish

pytestmark = pytest.mark.broker

PROFILE = "webhook-test"

# The whole profile: what a vendor would ship as its own package (adapters/base.py is its contract).
PROFILE_SOURCE = '''
"""Profile "webhook-test": POSTs the XML message to <url><path of the authority>."""
import urllib.error
import urllib.request
import uuid

from adapters.base import DeliveryReceipt
from adapters.settings import StrictSettings, parse_settings
from hub.errors import EndpointUnavailable, MessageError


class WebhookSettings(StrictSettings):
    url: str


class WebhookAddressing(StrictSettings):
    path: str


class WebhookAdapter:
    settings_model = WebhookSettings
    addressing_model = WebhookAddressing

    def __init__(self, name, url, timeout):
        self.name, self._url, self._timeout = name, url, timeout

    @classmethod
    def from_config(cls, name, section, context):
        settings = parse_settings(WebhookSettings, section, f"adapters.{name}")
        return cls(name, settings.url, context.timeout)

    def addressing(self, authority_id, name, section):
        return parse_settings(WebhookAddressing, section, f"authorities[{authority_id}]").path

    def check(self):
        pass

    def prepare(self, delivery):
        pass

    def new_transport_id(self, delivery):
        return str(uuid.uuid4())

    def deliver(self, delivery, transport_message_id, *, resend=False, ready=None):
        if ready is not None:
            ready()
        request = urllib.request.Request(
            self._url + delivery.recipient.addressing, data=delivery.content.message.data, method="POST",
            headers={"X-Transport-Id": transport_message_id, "X-Message-Id": delivery.message_id})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout):
                pass
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                raise EndpointUnavailable(f"webhook answered {exc.code}") from None
            raise MessageError(f"webhook refused with {exc.code}", reason="webhook_refused") from None
        except OSError as exc:
            raise EndpointUnavailable(f"webhook unreachable: {exc}") from None
        return DeliveryReceipt(transport_message_id)

    def close(self):
        pass
'''


def _install_profile(folder: Path) -> Path:
    """A distribution on its own sys.path entry: the module and a dist-info with the entry point."""
    site = folder / "site"
    (site / "webhook_profile-1.0.dist-info").mkdir(parents=True)
    (site / "webhook_profile.py").write_text(PROFILE_SOURCE)
    (site / "webhook_profile-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: webhook-profile\nVersion: 1.0\n")
    (site / "webhook_profile-1.0.dist-info" / "entry_points.txt").write_text(
        f"[hub.adapters]\n{PROFILE} = webhook_profile:WebhookAdapter\n")
    return site


class _Webhook:
    """The receiving end: a real HTTP server on loopback that keeps what is posted to it."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, Request.application(self._app), threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _app(self, request: Request) -> Response:
        with self._lock:
            self.received.append((request.path, dict(request.headers), request.get_data()))
        return Response(status=204)

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(10)


@pytest.fixture()
def webhook() -> Iterator[_Webhook]:
    server = _Webhook()
    yield server
    server.stop()


def test_a_profile_registered_only_by_entry_point_delivers_through_an_unchanged_hub(
        broker_url: str, tmp_path: Path, webhook: _Webhook, monkeypatch: pytest.MonkeyPatch) -> None:
    assert PROFILE not in BUILTIN_PROFILES  # known to the hub only through its distribution's entry point
    site = _install_profile(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(site))
    doc: dict[str, Any] = {
        "broker": {"url": broker_url, "heartbeat": 5, "prefetch": 8},
        "ledger": {"url": f"sqlite:///{tmp_path / 'ledger.db'}"},
        "message_types": [{"code": "OZG.Antrag.130101", "schema": "builtin:xauslaender/ozg-antrag-130101.xsd",
                           "list_uri": "urn:xoev-de:xauslaender:codeliste:nachrichtentyp", "list_version": "26.11",
                           "payload_schema": "http://www.osci.de/xauslaender2611"}],
        "adapters": {"third": {"profile": PROFILE, "url": webhook.url, "concurrency": 2, "retry_delays": [1],
                               "poll_transport_reports": False}},
        "authorities": [{"id": "azr:000100", "name": "ABH 1", "adapter": "third", "path": "/inbox/azr-000100"},
                        {"id": "azr:000200", "name": "ABH 2", "adapter": "third", "path": "/inbox/azr-000200"}],
    }
    config_path = tmp_path / "hub.toml"
    config_path.write_text(tomli_w.dumps(doc))
    worker = WorkerProcess(config_path, "third", tmp_path).start()
    envelopes = applications(6, "third-profile", readers=("azr:000100", "azr:000200"))
    status = StatusCollector(broker_url)
    try:
        monkeypatch.syspath_prepend(str(site))  # this process reads the config too (it names the profile)
        publish(load_config(config_path, environ={}), envelopes)
        for e in envelopes:
            wait_for(partial(status.of, e.message_id, DELIVERED), 60, what=f"delivery of {e.message_id}")
    finally:
        status.close()
        worker.terminate()
    by_message = {headers["X-Message-Id"]: (path, headers, body) for path, headers, body in webhook.received}
    assert len(webhook.received) == len(envelopes)
    for e in envelopes:
        path, headers, body = by_message[e.message_id]
        assert path == f"/inbox/{e.destination.replace(':', '-')}"
        assert body == e.content.message.data  # byte-identical
        [event] = status.of(e.message_id, DELIVERED)
        assert event.detail["xta_message_id"] == headers["X-Transport-Id"]
