"""No payload in tracking and the return channel: a marker string in an application (and in the
authority's reply to it) appears in no status event, no tracking-store row, no API answer, no page,
no metric and no log line.

Everything runs in this process on the real broker with every logger at DEBUG: a worker delivers
the marked application through the XTA simulator, the tracker (consumer + HTTP) records it, the
authority replies with a marked status message that the return-channel poller fetches, decrypts,
verifies and publishes to the portal's queue, and a forged marked reply is parked. The portal's
queue and the parking queue carry the reply itself (that is their job); their headers must not.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sqlite3
import threading
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from hub.cli_replies import build_pollers
from hub.config import TrackerConfig
from hub.envelope import new_envelope
from hub.publisher import ResilientPublisher
from hub.replies import ReplyMetrics
from hub.samples import OZG_STATUSMELDUNG, make_ozg_application
from hub.status import DELIVERED, REPLY_RECEIVED
from hub.topology import REPLIES_PARKED, replies_queue
from hub.tracking.auth import hash_token, new_token
from hub.tracking.model import Scope
from hub.tracking.service import TrackerService
from tests.integration import return_channel_support as rc
from tests.integration.helpers import AUTHOR, StatusCollector, make_config, running_worker, wait_for
from tests.integration.test_security_no_leak import assert_absent, debug_logs
from tests.integration.test_xta_support import publish, sim_config
from transport.content import ContentPart
from transport.security.keys import load_signing_identity
from transport.xta.metadata import Party
from transport.xta.simulator import serve

pytestmark = pytest.mark.broker

MARKER = "Zyxwv-GEHEIM-Marker-4711"  # the marker assert_absent looks for (and its base64 forms)


def _get(url: str, token: str | None = None, opener: urllib.request.OpenerDirector | None = None) -> str:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with (opener.open(request, timeout=10) if opener else urllib.request.urlopen(request, timeout=10)) as response:
        return f"{dict(response.headers)}\n{response.read().decode()}"


def _sqlite_dump(path: Path) -> str:
    db = sqlite3.connect(str(path))
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(repr(row) for t in tables for row in db.execute(f'SELECT * FROM "{t}"'))
    finally:
        db.close()


def test_the_marker_reaches_no_event_row_answer_page_metric_or_log(fresh_broker_url, pki, tmp_path) -> None:
    token = new_token()
    tokens_file = tmp_path / "tokens.toml"
    tokens_file.write_text(f'[[tokens]]\nname = "p"\nportal = "{rc.PORTAL_ID}"\nsha256 = "{hash_token(token)}"\n')
    store_path = tmp_path / "tracking.db"

    xml, message_id = make_ozg_application(reader=Party("azr:000100", "ABH"), author=Party(**AUTHOR), seed=4711)
    family = xml.split(b"<familienname>")[1].split(b"</familienname>")[0]
    xml = xml.replace(b"<familienname>" + family, b"<familienname>" + MARKER.encode())
    ref = xml.split(b"<antragsidentifikation>")[1].split(b"</antragsidentifikation>")[0].decode()
    application = new_envelope(destination="azr:000100", message_type="OZG.Antrag.130101", message=xml,
                               portal=rc.PORTAL_ID, message_id=message_id, filename="antrag.xml",
                               attachments=(ContentPart(f"Anlage {MARKER}".encode(), "text/plain", "a.txt"),))
    answer = rc.reply(OZG_STATUSMELDUNG, 1, ref)
    answer = dataclasses.replace(answer, message=answer.message.replace(
        b"<statustext>", f"<statustext>{MARKER} ".encode()))
    forged = dataclasses.replace(rc.reply(OZG_STATUSMELDUNG, 2, ref, signer=load_signing_identity(*pki["mallory"])),
                                 message=answer.message.replace(b"entschieden", b"entschieden!"))

    status = StatusCollector(fresh_broker_url)
    with serve(sim_config(pki)) as sim, debug_logs() as logs:
        base = make_config(fresh_broker_url, pki, sim.url, adapter_overrides={"report_poll_interval": 0.3})
        returns = rc.make_config(fresh_broker_url, pki, sim.url)
        config = base.model_copy(update={
            "message_types": returns.message_types, "mailboxes": returns.mailboxes,
            "tracker": TrackerConfig(store=f"sqlite:///{store_path}", port=0, tokens_file=tokens_file)})
        tracker = TrackerService(config, http_port=0).start()
        publisher = ResilientPublisher(config.broker, "leak-test-replies")
        replies_registry = CollectorRegistry()
        (poller,) = build_pollers(config, [rc.PORTAL_ID], publisher, ReplyMetrics(replies_registry))
        polling = threading.Thread(target=poller.run, daemon=True)
        polling.start()
        try:
            with running_worker(config, "alpha") as worker:
                publish(config, [application])
                wait_for(lambda: status.of(message_id, DELIVERED), 60, what="the delivery")
                rc.send(pki, sim.url, [answer, forged])
                wait_for(lambda: [e for e in status.events if e.event == REPLY_RECEIVED], 60, what="the reply event")
                wait_for(lambda: not rc.in_portal_mailbox(sim), 60, what="both replies closed")
                worker_metrics = generate_latest(worker.metrics.registry).decode()

            def replied() -> bool:
                traces = tracker.store.trace(message_id, Scope(rc.PORTAL_ID))
                return bool(traces) and traces[0].summary.replies == 1 and traces[0].summary.state == DELIVERED

            wait_for(replied, 60, what="the tracker to record the delivery and the reply")
            api = "\n".join(_get(f"{tracker.url}{path}", token) for path in (
                f"/api/v1/applications/{message_id}", "/api/v1/applications",
                "/api/v1/counts", "/api/v1/dead-letters"))
            jar = CookieJar()
            browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
            login = urllib.request.Request(f"{tracker.url}/ui/login", data=urllib.parse.urlencode(
                {"token": token}).encode(), headers={"Origin": tracker.url})
            browser.open(login, timeout=10).read()
            pages = "\n".join(_get(f"{tracker.url}{path}", opener=browser) for path in (
                "/ui/", f"/ui/trace?id={message_id}", "/ui/applications", "/ui/dead-letters"))
            assert "reply_received" in pages and message_id in pages, "the page did not show the application"
            tracker_metrics = _get(f"{tracker.url}/metrics")
        finally:
            poller.stop()
            polling.join(30)
            publisher.close()
            tracker.close()
        portal_queue = rc.take_all(fresh_broker_url, replies_queue(rc.PORTAL_ID), expected=1)
        parked = rc.take_all(fresh_broker_url, REPLIES_PARKED, expected=1)
    status.close()

    assert len(portal_queue) == 1 and len(parked) == 1, (len(portal_queue), len(parked))
    # the marker did travel: the portal got the reply with it (so its absence elsewhere means something)
    assert MARKER.encode() in base64.b64decode(json.loads(portal_queue[0][1])["message"]["data"])
    events = "\n".join(e.body().decode() for e in status.events)
    assert f'"{REPLY_RECEIVED}"' in events and message_id in events
    checks = {
        "status events": events,
        "tracking store rows": _sqlite_dump(store_path),
        "tracking API answers": api,
        "tracking pages": pages,
        "tracker metrics": tracker_metrics,
        "return-channel metrics": generate_latest(replies_registry).decode(),
        "worker metrics": worker_metrics,
        "headers of hub.replies and hub.replies.parked": repr([p.headers for p, _ in portal_queue + parked]),
        "logs": logs.text(pika_select_connection=False) + logs.text(pika_select_connection=True),
    }
    for where, text in checks.items():
        assert text, f"nothing captured from {where}"
        assert_absent(text, where)
