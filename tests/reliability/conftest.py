from __future__ import annotations

from typing import Iterator

import pytest

from tests.conftest import _fresh_vhost


@pytest.fixture()
def broker_url() -> Iterator[str]:
    """Every fault test gets its own vhost: exact accounting must not see another test's messages."""
    yield from _fresh_vhost()
