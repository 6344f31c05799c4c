from __future__ import annotations

import datetime

import pytest

from hub.errors import SchemaViolation, XtaFault
from hub.failures import (
    clean_headers,
    dead_letter_headers,
    header_int,
    retry_headers,
    safe_error_text,
)


@pytest.mark.parametrize("value", [None, -1, "3", b"3", 3.0, True, 2**70, datetime.datetime.now(), [1], {"a": 1}])
def test_header_int_ignores_anything_but_a_sane_int(value) -> None:
    assert header_int({"x": value}, "x", 7) == 7


def test_header_int_reads_ints() -> None:
    assert header_int({"x": 3}, "x", 7) == 3
    assert header_int({}, "x", 7) == 7


def test_texts_never_carry_remote_or_unexpected_details() -> None:
    fault = XtaFault("Server says: element 'vorname' value 'Müller' invalid", exception_type="MessageSchemaViolationException",
                     code="9050")
    assert safe_error_text(fault) == "XTA MessageSchemaViolationException errorCode 9050"
    assert "Müller" not in safe_error_text(KeyError("Müller"))
    assert safe_error_text(SchemaViolation("line 3: element 'x': unexpected element")) == \
        "line 3: element 'x': unexpected element"


def test_remote_codes_are_bounded() -> None:
    forged = XtaFault("x", exception_type="Evil<script>", code="9" * 300)
    assert forged.code is None and forged.reason == "xta_fault" and forged.exception_type == "XtaException"
    assert XtaFault("x", exception_type="PermissionDeniedException", code="9012").reason == "xta_9012"


def test_headers_round_trip_and_clean() -> None:
    original = {"x-destination": "azr:000100", "x-message-type": "t", "x-envelope-version": 1}
    retried = retry_headers(original, XtaFault("x", exception_type="XTAWSTechnicalProblemException", code="9030"), 2, 5)
    dead = dead_letter_headers(retried, SchemaViolation("bad"), adapter="a", destination="azr:000100", attempts=3,
                               first_failure=5)
    assert dead["x-hub-reason"] == "schema_violation" and dead["x-hub-attempts"] == 3
    assert clean_headers({**dead, "x-death": [], "x-first-death-reason": "expired"}) == original
