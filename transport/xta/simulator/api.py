"""The JSON inspection and control API of the XTA simulator (``/_sim/...``), as a mixin of
``XtaSimulator``: message summaries and parts, transport reports, statistics, reset, one-off
injections and standing chaos. Payload bytes only leave through the part endpoint."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from werkzeug.wrappers import Request as HttpRequest
from werkzeug.wrappers import Response

from transport.http_server import json_response
from transport.xta.simulator.chaos import Chaos
from transport.xta.simulator.config import ChaosConfig, InjectedFault, SimulatorConfig
from transport.xta.simulator.reports import build_report
from transport.xta.simulator.store import MessageStore


class InspectionApi:
    """``/_sim`` handlers; the host class provides store, config, chaos, inject, reset, configure_chaos."""

    store: MessageStore
    config: SimulatorConfig
    chaos: Chaos
    inject: Any
    reset: Any
    configure_chaos: Any

    def _http_messages(self, request: HttpRequest) -> Response:
        reader = request.args.get("reader")
        return json_response([m.summary() for m in self.store.messages(reader)])

    def _http_message(self, request: HttpRequest, message_id: str) -> Response:
        message = self.store.get(message_id)
        return json_response(message.summary()) if message else json_response({"error": "no such message"}, 404)

    def _http_part(self, request: HttpRequest, message_id: str, index: int) -> Response:
        message = self.store.get(message_id)
        if message is None or index >= len(message.parts):
            return json_response({"error": "no such part"}, 404)
        part = message.parts[index]
        return Response(bytes(part.data), content_type=part.content_type or "application/octet-stream")

    def _http_report(self, request: HttpRequest, message_id: str) -> Response:
        message, state = self.store.get(message_id), self.store.state(message_id)
        if message is None or state is None:
            return json_response({"error": "no such message"}, 404)
        report = build_report(self.config, message, state, self.config.clock())
        records = {kind: [asdict(r) for r in getattr(report, kind)] for kind in ("errors", "warnings", "infos")}
        return json_response({"message_id": message_id, "status": report.status, "status_name": report.status_name,
                      "report_time": report.report_time, **records})

    def _http_stats(self, request: HttpRequest) -> Response:
        return json_response(self.store.stats())

    def _http_reset(self, request: HttpRequest) -> Response:
        self.reset()
        return Response(status=204)

    def _http_inject(self, request: HttpRequest) -> Response:
        try:
            spec = json.loads(request.get_data() or b"{}")
            fault = InjectedFault(**spec)
        except (ValueError, TypeError) as exc:
            return json_response({"error": f"bad injection: {exc}"}, 400)
        self.inject(fault)
        return json_response(asdict(fault), 201)

    def _http_chaos(self, request: HttpRequest) -> Response:
        if request.method == "POST":
            try:
                self.configure_chaos(ChaosConfig.from_mapping(json.loads(request.get_data() or b"{}")))
            except (ValueError, TypeError) as exc:
                return json_response({"error": f"bad chaos configuration: {exc}"}, 400)
        return json_response(asdict(self.chaos.config))

    def _http_health(self, request: HttpRequest) -> Response:
        return json_response({"status": "ok"})
