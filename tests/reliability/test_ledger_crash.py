"""The ledger's one flush per application (issue 11), under a real worker, broker and XTA simulator:

1. SIGKILL the worker mid-run, several times: nothing lost, nothing delivered twice, and the ledger
   records every application as delivered under the MessageID the simulator holds (a killed process
   loses no commit, flushed or not).
2. What a power loss may cost: the delivered mark is not flushed, so it can roll back to
   ``allocated`` while the allocation survives. Rolled back by hand, then the same applications
   redelivered: each is re-sent under its recorded id, the simulator answers 9024, and the receiver
   still holds one copy.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

import pytest

from tests.integration.helpers import wait_for
from tests.reliability.support import (
    WorkerProcess,
    account,
    applications,
    load,
    publish,
    simulator_settings,
    wait_accounted,
    write_config,
)
from transport.xta.simulator import serve

pytestmark = pytest.mark.broker

ALPHA_READERS = ("azr:000100", "azr:000200")  # both served by adapter 'alpha'


@pytest.fixture()
def simulator(pki):
    running = serve(simulator_settings(pki))
    yield running
    running.stop()


def _ledger_rows(path: Path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(path) as db:
        return {mid: (tid, state) for mid, tid, state in
                db.execute("SELECT message_id, transport_message_id, state FROM hub_deliveries")}


def _wait(predicate, timeout: float, what: str) -> None:
    wait_for(predicate, timeout, interval=0.2, what=what)


def test_sigkill_mid_run_then_lost_delivered_marks_deliver_each_application_once(
        broker_url, pki, simulator, tmp_path: Path) -> None:
    config_path = write_config(tmp_path, broker_url, pki, simulator.url, adapter={"delivery_limit": 20})
    config = load(config_path)
    ledger_path = tmp_path / "ledger.db"
    worker = WorkerProcess(config_path, "alpha", tmp_path).start()
    envelopes = applications(300, "ledger-crash", readers=ALPHA_READERS)
    publish(config, envelopes)
    rng = random.Random(11)
    kills = 0
    try:
        while kills < 4:
            received = simulator.store.stats()["total"]
            if received >= len(envelopes):
                break
            # mid-run: only after the (re)started worker delivered something since the last kill
            _wait(lambda received=received: simulator.store.stats()["total"] > received, 60, "progress")
            time.sleep(rng.uniform(0.0, 0.3))
            worker.kill()
            kills += 1
            worker.start(wait_ready=False)
        acc = wait_accounted(simulator.store, config.broker, envelopes, timeout=120)
        lost, dup, both = acc.check(envelopes)
        assert (lost, dup, both, acc.dead) == ([], [], [], {})
        assert kills >= 2, "the run ended before the worker was killed mid-run often enough to mean anything"
        sent_ids = {m.message_id for m in simulator.store.messages()}
        assert len(sent_ids) == len(envelopes)
        _wait(lambda: all(state == "delivered" for _, state in _ledger_rows(ledger_path).values())
              and len(_ledger_rows(ledger_path)) == len(envelopes), 60, "every delivered mark")
        rows = _ledger_rows(ledger_path)
        assert {tid for tid, _ in rows.values()} == sent_ids  # each under the id the receiver holds

        # 2. a power loss rolled the last delivered marks back (the allocations were flushed)
        rolled_back = envelopes[:20]
        with sqlite3.connect(ledger_path) as db:
            db.executemany("UPDATE hub_deliveries SET state = 'allocated' WHERE message_id = ?",
                           [(e.message_id,) for e in rolled_back])
        already_used = simulator.store.stats()["faults"].get("9024", 0)
        publish(config, rolled_back)  # the broker redelivers them (here: the portal re-sends them)
        _wait(lambda: all(_ledger_rows(ledger_path)[e.message_id][1] == "delivered" for e in rolled_back), 120,
              "the rolled-back applications to be confirmed again")
        acc = account(simulator.store, config.broker)
        lost, dup, both = acc.check(envelopes)
        assert (lost, dup, both, acc.dead) == ([], [], [], {})
        assert simulator.store.stats()["total"] == len(envelopes)
        assert simulator.store.stats()["faults"].get("9024", 0) - already_used == len(rolled_back)
        assert _ledger_rows(ledger_path) == rows  # same ids, all delivered again
    finally:
        worker.kill()
    print(f"\nledger crash run: {kills} kills, {worker.starts} worker starts, {len(sent_ids)} received once each")
