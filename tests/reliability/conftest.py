from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import _fresh_vhost
from tests.reliability.support import reap_processes


@pytest.fixture(autouse=True)
def _reap_worker_processes() -> Iterator[None]:
    yield
    reap_processes()


@pytest.fixture()
def broker_url() -> Iterator[str]:
    """Every fault test gets its own vhost: exact accounting must not see another test's messages."""
    yield from _fresh_vhost()
