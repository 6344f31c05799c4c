"""Stage timings of one delivery (parse, validate, sign, encrypt, send, ...) without threading a
metrics object through every layer: the worker installs an observer for the message it handles
(a context variable, so each pool thread sees only its own), and the code of a stage wraps itself
in ``timed(stage)``. Without an observer ``timed`` costs a set lookup and a context-variable lookup."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: Every stage name that may be observed (the ``stage`` label of hub_stage_duration_seconds):
#: decode (envelope), ledger (lookup/allocate/mark), parse (hardened XML parse), validate (XSD),
#: lookup (adapter's service/certificate lookup), sign, encrypt, send (the transport's send calls).
STAGES = ("decode", "ledger", "parse", "validate", "lookup", "sign", "encrypt", "send")
_KNOWN = frozenset(STAGES)

StageObserver = Callable[[str, float], None]

_observer: ContextVar[StageObserver | None] = ContextVar("hub_stage_observer", default=None)


@contextmanager
def observing(observer: StageObserver) -> Iterator[None]:
    """Report every ``timed`` stage inside the block to ``observer(stage, seconds)``."""
    token = _observer.set(observer)
    try:
        yield
    finally:
        _observer.reset(token)


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Time the block as ``stage`` (one of STAGES) for the current observer, also when it raises:
    a failed signature still took its CPU. An unknown stage raises with or without an observer, so
    a misspelt name fails every test that passes through it, not only production deliveries."""
    if stage not in _KNOWN:
        raise ValueError(f"unknown stage {stage!r}")
    observer = _observer.get()
    if observer is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        observer(stage, time.perf_counter() - started)
