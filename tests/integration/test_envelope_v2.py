"""Envelope version 2 through the real path: RabbitMQ -> worker -> (simulated) XTA receiver.

* one queue holds applications in both formats (a rolling upgrade: old portals still write
  version 1): the same worker delivers each with its bytes intact;
* the v2 corruptions of the unit tests (tests/unit/test_envelope_v2.py), published as they are:
  none crashes the worker or its connection; each is dead-lettered on the first attempt with its
  own reason and message, the body kept byte-identical; a good application is delivered after.
"""

from __future__ import annotations

import hashlib
import re
from functools import partial

import pytest

from hub.envelope import CONTENT_TYPE, new_envelope
from hub.envelope_v2 import CONTENT_TYPE_V2
from hub.publisher import ConfirmingPublisher, publish_envelope
from hub.status import DEAD_LETTERED, DELIVERED
from hub.topology import DEAD_QUEUE, INBOUND_CHECKED
from tests.integration.helpers import StatusCollector, drain, make_config, running_worker, wait_for
from tests.integration.test_xta_support import application, sim_config
from tests.unit.test_envelope_v2 import CORRUPTIONS, DATA, MESSAGE, _body
from transport.xta.simulator import serve

pytestmark = pytest.mark.broker

# beyond the unit cases: a declared size above the worker's default 20 MiB limit, and a bad message hash
EXTRA = {
    "size above the limit": (_body(MESSAGE, DATA, size=10**9), "content_too_large", r"content of \d+ bytes .*not decoded"),
    "message hash wrong": (_body(MESSAGE, DATA)[:-3009] + b"<b>\xc3\xa4</a>" + DATA, "envelope",
                           r"body.parts\[0\]: sha256 does not match"),
}


def test_one_queue_delivers_version_1_and_version_2(broker_url, pki) -> None:
    with serve(sim_config(pki)) as sim:
        config = make_config(broker_url, pki, sim.url)
        old, new = application("azr:000100", 8101, size=60_000), application("azr:000100", 8102, size=60_000)
        status = StatusCollector(broker_url)
        try:
            with running_worker(config, "alpha") as worker:
                with ConfirmingPublisher(config.broker, "test-portal") as publisher:
                    publish_envelope(publisher, old, version=1).result(timeout=10)
                    publish_envelope(publisher, new).result(timeout=10)  # version 2 by default
                for e in (old, new):
                    wait_for(partial(status.of, e.message_id, DELIVERED), 30, what=f"delivery of {e.message_id}")
                assert worker.connections_opened == 1
        finally:
            status.close()
        received = sim.store.messages()
    assert len(received) == 2
    delivered = [{p.sha256 for p in m.parts} for m in received]
    for e in (old, new):  # message and attachment arrived byte for byte, whichever format carried them
        assert any({p.sha256 for p in e.content.parts} <= hashes for hashes in delivered), e.message_id


def test_version_2_corruptions_are_dead_lettered_with_their_reason(broker_url, pki) -> None:
    cases = {name: (body, "envelope", match) for name, (body, match) in CORRUPTIONS.items()} | EXTRA
    template = new_envelope(destination="azr:000100", message_type="OZG.Antrag.130101", message=b"<a/>",
                            portal="test-portal").properties(version=2)
    assert template.content_type == CONTENT_TYPE_V2 != CONTENT_TYPE
    ids = {name: f"v2-corrupt-{i}" for i, name in enumerate(cases)}
    with serve(sim_config(pki)) as sim:
        config = make_config(broker_url, pki, sim.url)
        good = application("azr:000100", 8103)
        status = StatusCollector(broker_url)
        try:
            with running_worker(config, "alpha") as worker:
                with ConfirmingPublisher(config.broker, "test-portal") as publisher:
                    for name, (body, _, _) in cases.items():
                        template.message_id = ids[name]
                        publisher.publish_and_wait(INBOUND_CHECKED, "azr:000100", body, template, mandatory=True)
                    dead = drain(broker_url, DEAD_QUEUE, len(cases), timeout=60)
                    publish_envelope(publisher, good).result(timeout=10)
                wait_for(lambda: status.of(good.message_id, DELIVERED), 30, what="delivery after the corruptions")
                assert worker.connections_opened == 1  # never crashed, never reconnected
            wait_for(lambda: all(status.of(i, DEAD_LETTERED) for i in ids.values()), 20, what="dead_lettered events")
        finally:
            status.close()
        assert len(sim.store.messages()) == 1  # only the good one reached the receiver
    by_id = {props.message_id: (props.headers, body) for props, body in dead}
    assert set(by_id) == set(ids.values())
    for name, (body, reason, match) in cases.items():
        headers, kept = by_id[ids[name]]
        assert headers["x-hub-reason"] == reason, name
        assert re.search(match, headers["x-hub-error-message"]), (name, headers["x-hub-error-message"])
        assert headers["x-hub-attempts"] == 1, name  # permanent: no retry
        assert hashlib.sha256(kept).digest() == hashlib.sha256(body).digest(), name  # kept intact
