"""The new transport id's ledger record is written while the adapter seals (signs, encrypts) the
content, and nothing is sent before it is durable: the real pipeline and SQLite ledger, with an
adapter stand-in that seals slowly and records what it sends and when."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from adapters.base import AdapterContext, Delivery, DeliveryReceipt
from hub.errors import LedgerUnavailable, XtaFault
from hub.runtime import build_pipeline
from tests.integration.helpers import make_config
from tests.integration.test_xta_support import application


class _Adapter:
    """Seals (waits until the ledger write has begun, as sign + encrypt would overlap it), calls
    ``ready``, then 'sends'. Records the ids sent and the ids offered to ``ready``."""

    name = "alpha"
    settings_model: ClassVar[type[BaseModel]] = BaseModel  # never built from a config section
    addressing_model: ClassVar[type[BaseModel]] = BaseModel

    @classmethod
    def from_config(cls, name: str, section: Mapping[str, Any], context: AdapterContext) -> _Adapter:
        raise NotImplementedError("the test builds the stand-in itself")

    def addressing(self, authority_id: str, name: str, section: Mapping[str, Any]) -> Any:
        return dict(section)

    def __init__(self, allocating: threading.Event, sealing: threading.Event) -> None:
        self.allocating, self.sealing = allocating, sealing
        self.refuse = False  # answer an explicit refusal before ``ready`` (e.g. lookupService inside deliver)
        self.sent: list[str] = []
        self.offered: list[str] = []

    def check(self) -> None:
        pass

    def prepare(self, delivery: Delivery) -> None:
        pass

    def new_transport_id(self, delivery: Delivery | None = None) -> str:
        return "candidate-1"

    def deliver(self, delivery: Delivery, transport_message_id: str, *, resend: bool = False,
                ready: Any = None) -> DeliveryReceipt:
        self.offered.append(transport_message_id)
        self.sealing.set()
        if self.refuse:
            raise XtaFault("refused (test)", exception_type="ParameterIsNotValidException", code="9012")
        self.allocating.wait(5)
        if ready is not None:
            ready()
        self.sent.append(transport_message_id)
        return DeliveryReceipt(transport_message_id)

    def close(self) -> None:
        pass


class _Ledger:
    """The real ledger; ``allocate`` notes whether sealing ran meanwhile, and can fail or answer
    another process's id."""

    def __init__(self, real: Any, allocating: threading.Event, sealing: threading.Event, *,
                 fail: bool = False, other: str | None = None, delay: float = 0.0) -> None:
        self.real, self.allocating, self.sealing = real, allocating, sealing
        self.fail, self.other, self.delay = fail, other, delay
        self.overlapped: bool | None = None

    def allocate(self, message_id: str, adapter: str, destination: str, transport_message_id: str) -> str:
        self.allocating.set()
        self.overlapped = self.sealing.wait(5)  # the adapter seals while this write runs
        time.sleep(self.delay)
        if self.fail:
            raise LedgerUnavailable("ledger down (test)")
        recorded: str = self.real.allocate(message_id, adapter, destination, self.other or transport_message_id)
        return recorded

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _pipeline(pki: Any, tmp_path: Path, **ledger: Any) -> tuple[Any, _Adapter, _Ledger]:
    config = make_config("amqp://unused", pki, "http://127.0.0.1:9/unused", ledger=tmp_path / "ledger.db")
    pipeline = build_pipeline(config, "alpha")
    allocating, sealing = threading.Event(), threading.Event()
    adapter, wrapped = _Adapter(allocating, sealing), _Ledger(pipeline.ledger, allocating, sealing, **ledger)
    pipeline.adapter, pipeline.ledger = adapter, wrapped
    return pipeline, adapter, wrapped


def test_the_record_is_written_while_the_adapter_seals_and_before_it_sends(pki: Any, tmp_path: Path) -> None:
    pipeline, adapter, ledger = _pipeline(pki, tmp_path)
    delivering: list[str] = []
    try:
        envelope = application("azr:000100", 7101)
        receipt = pipeline.process(envelope, on_delivering=lambda tid, _ref: delivering.append(tid))
        assert ledger.overlapped, "the ledger write did not run while the content was sealed"
        assert receipt.transport_message_id == "candidate-1" and adapter.sent == ["candidate-1"]
        assert delivering == ["candidate-1"]
        entry = ledger.real.lookup(envelope.message_id)
        assert entry is not None and entry.transport_message_id == "candidate-1" and entry.delivered
    finally:
        pipeline.close()


def test_nothing_is_sent_when_the_record_cannot_be_written(pki: Any, tmp_path: Path) -> None:
    pipeline, adapter, _ledger = _pipeline(pki, tmp_path, fail=True)
    delivering: list[str] = []
    try:
        with pytest.raises(LedgerUnavailable):
            pipeline.process(application("azr:000100", 7102), on_delivering=lambda tid, _r: delivering.append(tid))
        assert adapter.offered == ["candidate-1"] and adapter.sent == [] and delivering == []
    finally:
        pipeline.close()


def test_an_id_recorded_first_by_another_process_is_the_one_sent(pki: Any, tmp_path: Path) -> None:
    pipeline, adapter, _ledger = _pipeline(pki, tmp_path, other="raced-9")
    delivering: list[str] = []
    try:
        receipt = pipeline.process(application("azr:000100", 7103),
                                   on_delivering=lambda tid, _r: delivering.append(tid))
        assert adapter.offered == ["candidate-1", "raced-9"]
        assert adapter.sent == ["raced-9"] and delivering == ["raced-9"]
        assert receipt.transport_message_id == "raced-9"
    finally:
        pipeline.close()


def test_a_refusal_before_ready_forgets_the_id_after_its_record_has_landed(pki: Any, tmp_path: Path) -> None:
    """The record is still being written when the adapter's refusal comes: forgetting the id first
    would let the record land afterwards, and a replay would re-use the refused id."""
    pipeline, adapter, ledger = _pipeline(pki, tmp_path, delay=0.5)
    adapter.refuse = True
    try:
        envelope = application("azr:000100", 7104)
        with pytest.raises(XtaFault):
            pipeline.process(envelope)
        assert adapter.sent == []
        assert ledger.real.lookup(envelope.message_id) is None, "the refused id is still recorded"
    finally:
        pipeline.close()
