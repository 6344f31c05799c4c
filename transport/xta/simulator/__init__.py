"""The XTA 2.1.1 simulator: a real HTTP(S) server with all three ports of XTA.wsdl, for tests, the demo,
benchmarks and vendors. ``serve(SimulatorConfig(...))`` returns a running server (see ``server``).

- ``server``   the WSGI application (``XtaSimulator``), ``serve``, ``RunningSimulator``, ``Exchange``
- ``config``   what it accepts and how it misbehaves: ``SimulatorConfig``, ``ChaosConfig``, ``ServerTls`` ...
- ``ops``      ManagementPort and SendXtaPort operations; ``msgbox``: MsgBoxPort
- ``reports``  transport reports; ``store``: issued MessageIDs and received messages
- ``chaos``    fault injection; ``garbage``: answers that make no sense
- ``api``      the JSON inspection/control API under ``/_sim/``
- ``cli``      the command line (``python -m transport.xta.simulator.cli``, ``hub simulator``)

Its own subpackage so the client side (``transport.xta``) never depends on it.
"""

from __future__ import annotations

from transport.xta.simulator.config import (
    ChaosConfig,
    FaultRate,
    InjectedFault,
    Outage,
    ServerTls,
    SimulatorConfig,
)
from transport.xta.simulator.server import Exchange, RunningSimulator, XtaSimulator, serve

__all__ = ["ChaosConfig", "Exchange", "FaultRate", "InjectedFault", "Outage", "RunningSimulator", "ServerTls",
           "SimulatorConfig", "XtaSimulator", "serve"]
