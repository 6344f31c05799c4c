"""Running the conformance scenarios: each call must end as its name says, never silently.

A scenario whose name ends in an XTA error code (``getMessage_unknown_9070``) must raise ``XtaFault``
with exactly that code; every other scenario must return normally. An unexpected exception (a broken
client, a wrong code, a crash) fails the scenario instead of being recorded as a "fault scenario".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

from hub.errors import XtaFault

T = TypeVar("T")


def expected_fault_code(name: str) -> str | None:
    """The XTA error code a scenario's name ends in, if any."""
    suffix = name.rpartition("_")[2]
    return suffix if suffix.isdigit() else None


def call_as_named(name: str, call: Callable[[], T], *, by_client: bool = True, raises: bool = True) -> T | None:
    """Run ``call``; faults are expected only where the name says so (and only from the hub's client:
    hand-made raw HTTP requests see the fault in the answer, checked by the validation tests).
    ``raises=False``: a client method that turns this fault into a return value (the caller checks it)."""
    code = expected_fault_code(name) if by_client and raises else None
    if code is None:
        return call()
    with pytest.raises(XtaFault) as info:
        call()
    assert info.value.code == code, f"{name}: the server answered {info.value.code}, not {code}"
    return None
