"""One three-node cluster for the tests of tests/cluster (starting one costs 15-40 s), stopped
after the last of them (package scope: it must not idle through the rest of the suite); a fresh
PostgreSQL ledger per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.harness import Cluster, running_cluster
from tests.cluster.scenario import fresh_ledger
from tests.reliability.support import reap_processes


@pytest.fixture(scope="package")
def cluster() -> Iterator[Cluster]:
    with running_cluster() as started:
        print(f"\ncluster of {len(started.nodes)} started in {started.start_seconds:.1f}s")
        yield started


@pytest.fixture(autouse=True)
def _healthy(cluster: Cluster) -> Iterator[None]:
    """Every test starts with all nodes running and leaves no worker process behind."""
    cluster.recover()
    yield
    reap_processes()


@pytest.fixture()
def ledger_url() -> Iterator[str]:
    """A new PostgreSQL database for the test's workers to share as their ledger (dropped afterwards);
    the test fails when PostgreSQL is not reachable."""
    with fresh_ledger() as url:
        yield url
