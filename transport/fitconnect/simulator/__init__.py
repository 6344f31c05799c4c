"""A FIT-Connect delivery service for tests and demos: Submission API 1.1.3 over real HTTP.

    running = serve(FitConnectSimulatorSettings(state_dir=Path("var/fit-connect"),
                                                openapi=..., metadata_schema=...))
    running.url, running.token_url, running.trust_anchor, running.client_id, running.client_secret
    running.store.all(), running.receiver_accept(id), running.faults.refuse_next(5), running.violations

Modules: ``settings`` (what it serves), ``pki`` (throwaway keys in state_dir), ``jose`` (JWE/SET),
``service`` (the delivery rules), ``store``, ``faults`` (faults and tokens), ``conformance`` (OpenAPI
checks), ``app`` (WSGI), ``control`` (``/_simulator``), ``server`` (``serve``), ``cli``.
"""

from transport.fitconnect.simulator.app import FitConnectSimulator
from transport.fitconnect.simulator.conformance import Violation
from transport.fitconnect.simulator.server import RunningFitConnectSimulator, serve
from transport.fitconnect.simulator.settings import (
    DestinationSpec,
    FaultSettings,
    FitConnectSimulatorSettings,
    Outage,
    ServiceSpec,
    SubmissionSchemaSpec,
)
from transport.fitconnect.simulator.store import Submission

__all__ = ["DestinationSpec", "FaultSettings", "FitConnectSimulator", "FitConnectSimulatorSettings", "Outage",
           "RunningFitConnectSimulator", "ServiceSpec", "Submission", "SubmissionSchemaSpec", "Violation", "serve"]
