from __future__ import annotations

from collections.abc import Iterator

import pytest
from xta_testdata import AUTHOR

from transport.xta.client import XtaClient, XtaEndpoint
from transport.xta.simulator import RunningSimulator, SimulatorConfig, serve


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    running = serve(SimulatorConfig(accounts=frozenset({AUTHOR.identifier})))
    yield running
    running.stop()


@pytest.fixture
def client(sim: RunningSimulator) -> Iterator[XtaClient]:
    xta = XtaClient(XtaEndpoint(sim.url, timeout=5.0))
    yield xta
    xta.close()
