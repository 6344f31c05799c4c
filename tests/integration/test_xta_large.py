"""A 40 MB container through the real worker: signed, encrypted, sent as MTOM (ciphertext as an XOP
part, streamed), decrypted and verified byte-identical by the simulator; and the size limit refusing
a container above the profile's limit before anything is sent."""

from __future__ import annotations

import hashlib
import json
import urllib.request

import pytest

from hub.config import LimitsConfig
from hub.status import DEAD_LETTERED, DELIVERED
from tests.integration.helpers import StatusCollector, make_config, running_worker
from tests.integration.test_xta_support import (
    application,
    dead_letters,
    outcome,
    publish,
    sim_config,
)
from transport.xta.simulator import Exchange, serve

pytestmark = pytest.mark.broker

FORTY_MB = 40_000_000  # content bytes (message + attachment + signature); the default limit is 40 MiB


@pytest.mark.timeout(300)
def test_40_mb_container_is_delivered_via_mtom(broker_url, pki) -> None:
    requests: list[tuple[str | None, str, int]] = []

    def observe(exchange: Exchange) -> None:  # keep only what the assertions need, not 40 MB copies
        requests.append((exchange.operation, exchange.request_content_type, len(exchange.request)))

    envelope = application("azr:000100", 8201, size=FORTY_MB - 8_000)
    assert 39_990_000 < envelope.content.size < FORTY_MB
    with serve(sim_config(pki), observer=observe) as sim:
        config = make_config(broker_url, pki, sim.url, adapter_overrides={"timeout": 120})
        # the hub's own limit (default 20 MiB) raised to the XTA container limit, as an operator would
        config = config.model_copy(update={"limits": LimitsConfig(max_content_bytes=40 * 1024 * 1024)})
        status = StatusCollector(broker_url)
        try:
            with running_worker(config, "alpha"):
                publish(config, [envelope])
                final = outcome(status, envelope.message_id, timeout=240)
        finally:
            status.close()
        assert final.event == DELIVERED, final.detail
        xta_id = final.detail["xta_message_id"]
        stored = sim.store.get(xta_id)
        assert stored.mtom and stored.verified  # decrypted with the reader key, signature checked
        assert [p.sha256 for p in stored.parts] == [p.sha256 for p in envelope.content.parts]
        with urllib.request.urlopen(f"{sim.base_url}/_sim/messages/{xta_id}/parts/1", timeout=60) as resp:
            assert hashlib.sha256(resp.read()).hexdigest() == envelope.content.attachments[0].sha256
        with urllib.request.urlopen(f"{sim.base_url}/_sim/messages/{xta_id}", timeout=10) as resp:
            assert json.loads(resp.read())["mtom"] is True
    [(_, content_type, size)] = [r for r in requests if r[0] == "sendMessage"]
    assert content_type.startswith("multipart/related") and 'type="application/xop+xml"' in content_type
    # binary MTOM: the request is the base64 container encrypted once (~4/3 of the content), not base64 twice
    assert FORTY_MB * 4 // 3 < size < FORTY_MB * 4 // 3 + 200_000


def test_size_limit_refuses_before_sending(broker_url, pki) -> None:
    envelope = application("azr:000100", 8202, size=3_000_000)
    with serve(sim_config(pki)) as sim:
        config = make_config(broker_url, pki, sim.url,
                             adapter_overrides={"options": {"max_container_bytes": 2_000_000}})
        status = StatusCollector(broker_url)
        try:
            with running_worker(config, "alpha"):
                publish(config, [envelope])
                final = outcome(status, envelope.message_id)
        finally:
            status.close()
        assert "sendMessage" not in sim.store.stats()["calls"] and len(sim.store) == 0
    assert final.event == DEAD_LETTERED
    headers = dead_letters(broker_url, {envelope.message_id})[envelope.message_id]
    assert headers["x-hub-reason"] == "content_too_large" and headers["x-hub-attempts"] == 1
    assert "exceeds the limit of 2000000 bytes" in headers["x-hub-error-message"]
