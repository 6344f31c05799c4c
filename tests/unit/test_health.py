from __future__ import annotations

from hub.errors import XtaFault
from hub.health import CachedCheck


def test_cached_check_calls_at_most_once_per_ttl_and_reports_the_error() -> None:
    now = [0.0]
    calls = []

    def check() -> None:
        calls.append(now[0])
        if len(calls) == 2:
            raise XtaFault("account locked", exception_type="PermissionDeniedException", code="9011")

    c = CachedCheck("XTA account", check, ttl=30, clock=lambda: now[0])
    assert c() == (True, "XTA account: ok")
    now[0] = 10
    assert c()[0] is True and len(calls) == 1
    now[0] = 31
    ok, detail = c()
    assert not ok and "account locked" in detail and len(calls) == 2
    now[0] = 62
    assert c()[0] is True
