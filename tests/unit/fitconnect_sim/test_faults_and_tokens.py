"""Fault injection and tokens of the FIT-Connect simulator, on a stepped clock."""

from __future__ import annotations

import pytest

from tests.clock import SteppedClock
from transport.fitconnect.simulator.faults import Faults, Tokens
from transport.fitconnect.simulator.settings import FaultSettings, Outage


def test_next_n_calls_get_429_with_retry_after_then_none() -> None:
    faults = Faults(FaultSettings(retry_after=4), SteppedClock())
    faults.refuse_next(2)
    first, second, third = (faults.before_request() for _ in range(3))
    assert first is not None and first.status == 429 and first.retry_after == 4
    assert second is not None and second.status == 429
    assert third is None


def test_rates_follow_the_seed_and_the_extremes() -> None:
    always = Faults(FaultSettings(rate_5xx=1.0, status_5xx=503), SteppedClock())
    assert [d.status for d in (always.before_request() for _ in range(5)) if d] == [503] * 5
    half = [Faults(FaultSettings(rate_429=0.5, seed=7), SteppedClock()) for _ in range(2)]
    runs = [[f.before_request() is not None for _ in range(50)] for f in half]
    assert runs[0] == runs[1] and 5 < sum(runs[0]) < 45


def test_outage_window_counts_from_when_it_is_set() -> None:
    clock = SteppedClock()
    faults = Faults(FaultSettings(), clock)
    clock.advance(100)
    faults.set_outage(start=5, duration=10, mode="drop")
    assert faults.before_request() is None
    clock.advance(5)
    disruption = faults.before_request()
    assert disruption is not None and disruption.drop
    clock.advance(10)
    assert faults.before_request() is None


def test_update_from_json_validates() -> None:
    faults = Faults(FaultSettings(), SteppedClock())
    settings = faults.update({"rate_429": 0.25, "outage": {"start": 0, "duration": 3}, "next_429": 1})
    assert settings.rate_429 == 0.25 and settings.outage == Outage(0, 3, "503")
    assert faults.describe()["next_429"] == 1
    with pytest.raises(ValueError):
        faults.update({"rate_5xx": 2})
    with pytest.raises(TypeError):
        faults.update({"no_such_fault": 1})


def test_tokens_expire_and_are_invalidated() -> None:
    clock = SteppedClock()
    tokens = Tokens("client", "secret", 30, clock)
    assert tokens.credentials_match("client", "secret") and not tokens.credentials_match("client", "secreT")
    token, lifetime = tokens.issue()
    assert lifetime == 30 and tokens.valid(token) and not tokens.valid(token + "x")
    clock.advance(29.9)
    assert tokens.valid(token)
    clock.advance(0.2)
    assert not tokens.valid(token)
    fresh, _ = tokens.issue()
    tokens.invalidate_all()
    assert not tokens.valid(fresh)
