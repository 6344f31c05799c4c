"""Run the FIT-Connect simulator as a stand-alone server (demo, manual tests).

    python -m transport.fitconnect.simulator.cli --port 8090 --state-dir var/fit-connect \\
        --openapi ../shared/standards/fit-connect/openapi/submission-api-1.1.3.yaml \\
        --metadata-schema ../shared/standards/fit-connect/schemas/metadata/1.0.0/metadata.schema.json \\
        --destination 7881dba9-4055-4854-8b6d-11ea5b7f3047 --destination 2f59b8c6-...=inactive \\
        --service urn:de:fim:leika:leistung:99010003001006 --client-secret-file secret.txt --auto-accept \\
        --rate-429 0.1 --rate-5xx 0.05 --latency 0.05 --outage 60:30

Prints one line ``fit-connect simulator listening on URL`` and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from transport.fitconnect.simulator.server import serve
from transport.fitconnect.simulator.settings import (
    DEFAULT_SERVICE,
    DestinationSpec,
    FaultSettings,
    FitConnectSimulatorSettings,
    Outage,
    ServiceSpec,
)
from transport.http_server import serve_until_signal


def parse_destination(text: str, services: tuple[ServiceSpec, ...]) -> DestinationSpec:
    """``UUID[=status]``."""
    ident, _, status = text.partition("=")
    return DestinationSpec(id=ident, status=status or "active", services=services)


def parse_outage(text: str) -> Outage:
    """``START:DURATION[:MODE]`` in seconds after start; MODE 503 (default) or drop."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"outage {text!r}: expected START:DURATION[:MODE]")
    return Outage(float(parts[0]), float(parts[1]), parts[2] if len(parts) == 3 else "503")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hub simulator --protocol fit-connect",
                                description="FIT-Connect Submission API 1.1.3 simulator (control API at /_simulator)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--state-dir", type=Path, default=Path("var/fit-connect-simulator"),
                   help="keeps the throwaway PKI (trust-anchor.pem) between runs")
    p.add_argument("--openapi", type=Path, help="check every request/response against this OpenAPI document")
    p.add_argument("--metadata-schema", type=Path, help="check every metadata document against this schema")
    p.add_argument("--destination", action="append", default=[], metavar="UUID[=STATUS]",
                   help="a destination (repeatable); default: one random active destination")
    p.add_argument("--service", action="append", default=[], metavar="URN",
                   help=f"service every destination offers (repeatable; default {DEFAULT_SERVICE})")
    p.add_argument("--client-id", default="fit-connect-simulator-client")
    p.add_argument("--client-secret-file", type=Path, help="file holding the client secret (first line)")
    p.add_argument("--auto-accept", action="store_true", help="accept every submission right after submit")
    p.add_argument("--token-lifetime", type=float, default=1800.0, help="seconds a token is valid")
    f = p.add_argument_group("fault injection")
    f.add_argument("--rate-429", type=float, default=0.0, help="share of API calls answered 429")
    f.add_argument("--retry-after", type=int, default=1, help="seconds in Retry-After of 429/503")
    f.add_argument("--rate-5xx", type=float, default=0.0, help="share of API calls answered 500")
    f.add_argument("--latency", type=float, default=0.0, help="seconds added to every API answer")
    f.add_argument("--outage", metavar="START:DURATION[:MODE]", help="outage window after start (503|drop)")
    f.add_argument("--seed", type=int, help="seed for the random fault choices")
    return p


def build_settings(args: argparse.Namespace) -> FitConnectSimulatorSettings:
    """The settings the parsed flags describe (raises ValueError naming the bad value)."""
    services = tuple(ServiceSpec(identifier=s) for s in args.service) or (ServiceSpec(),)
    destinations = tuple(parse_destination(d, services) for d in args.destination) or (DestinationSpec(services=services),)
    secret = "fit-connect-simulator-secret"
    if args.client_secret_file is not None:
        secret = args.client_secret_file.read_text(encoding="utf-8").splitlines()[0].strip()
    faults = FaultSettings(rate_429=args.rate_429, retry_after=args.retry_after, rate_5xx=args.rate_5xx,
                           latency=args.latency, outage=parse_outage(args.outage) if args.outage else None,
                           seed=args.seed)
    return FitConnectSimulatorSettings(
        state_dir=args.state_dir, destinations=destinations, client_id=args.client_id, client_secret=secret,
        token_lifetime=args.token_lifetime, openapi=args.openapi, metadata_schema=args.metadata_schema,
        auto_accept=args.auto_accept, faults=faults, host=args.host, port=args.port)


def main(argv: list[str]) -> int:
    """Parse options, serve until SIGINT/SIGTERM; 2 for bad options."""
    args = parser().parse_args(argv)
    try:
        settings = build_settings(args)
    except (ValueError, OSError, IndexError) as exc:
        print(f"fit-connect simulator: {exc}", file=sys.stderr)
        return 2
    running = serve(settings)
    print(f"fit-connect simulator listening on {running.url}", flush=True)
    serve_until_signal(running)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
