"""The retry ladder honours an endpoint's Retry-After (FIT-Connect 429/503): the wait queue is the
first level that waits long enough, while the attempt count goes on one by one (a long Retry-After
never brings the dead letters closer)."""

from __future__ import annotations

import pytest

from hub.worker import retry_level

LADDER = (5.0, 30.0, 120.0, 600.0)


@pytest.mark.parametrize(("attempts", "retry_after", "level"), [
    (1, None, 1),        # no Retry-After: the next level
    (1, 0, 1),
    (1, 5, 1),           # level 1 already waits long enough
    (1, 6, 2),           # 5 s is too short: skip to 30 s
    (1, 100, 3),
    (2, 31, 3),
    (1, 10_000, 4),      # longer than any level: the last one, not the dead letters
    (4, 10_000, 4),
])
def test_the_first_level_that_waits_long_enough(attempts: int, retry_after: float | None, level: int) -> None:
    assert retry_level(LADDER, attempts, retry_after) == level
