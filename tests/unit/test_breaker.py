from __future__ import annotations

from hub.breaker import CLOSED, HALF_OPEN, OPEN, BreakerSettings, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_a_run_of_failures_and_closes_after_a_good_probe() -> None:
    clock = FakeClock()
    changes: list[tuple[str, str]] = []
    b = CircuitBreaker(BreakerSettings(consecutive_failures=3, cool_down=10), clock=clock,
                       on_change=lambda o, n: changes.append((o, n)))
    b.record_failure()
    b.record_failure()
    assert b.state == CLOSED
    b.record_failure()
    assert b.state == OPEN
    assert not b.try_half_open()  # still cooling down
    clock.now = 10.0
    assert b.try_half_open() and b.state == HALF_OPEN
    assert not b.try_half_open()
    b.record_success()
    assert b.state == CLOSED
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_failed_probe_reopens_and_restarts_cool_down() -> None:
    clock = FakeClock()
    b = CircuitBreaker(BreakerSettings(consecutive_failures=1, cool_down=5), clock=clock)
    b.record_failure()
    clock.now = 5
    assert b.try_half_open()
    b.record_failure()
    assert b.state == OPEN
    clock.now = 9
    assert not b.try_half_open()
    clock.now = 10
    assert b.try_half_open()


def test_failure_rate_over_window_opens_even_without_a_run() -> None:
    b = CircuitBreaker(BreakerSettings(consecutive_failures=100, failure_rate=0.5, window=10))
    for _ in range(5):
        b.record_success()
        b.record_failure()
    assert b.state == OPEN


def test_successes_keep_it_closed() -> None:
    b = CircuitBreaker(BreakerSettings(consecutive_failures=2, window=4, failure_rate=0.75))
    for _ in range(50):
        b.record_failure()
        b.record_success()
    assert b.state == CLOSED
