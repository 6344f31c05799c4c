"""Run the XTA simulator as a stand-alone server (demo, compose, manual tests, vendors).

    python -m transport.xta.simulator.cli --port 8089 --store-dir var/xta \\
        --reader-key azr:000100=keys/abh.key.pem --trusted-signer keys/ca.cert.pem --accounts alp:portal-1 \\
        --accept-unverified \\
        --fault-rate 9030:0.1:sendMessage --drop-rate 0.02 --outage 60:30 --latency 0.05 --seed 1 \\
        --tls-cert server.pem --tls-key server.key --client-ca clients-ca.pem --require-client-cert

Keys and certificates are loaded once at start-up; the process serves until interrupted. The flag
parsers (``parse_fault_rate``, ``parse_outage``, ``chaos_from_flags``) are reusable by other CLIs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from transport.http_server import serve_until_signal
from transport.xta.simulator.config import (
    ChaosConfig,
    FaultRate,
    Outage,
    ServerTls,
    SimulatorConfig,
)
from transport.xta.simulator.server import serve


def parse_fault_rate(text: str) -> FaultRate:
    """``CODE:RATE[:OPERATION]``, e.g. ``9030:0.1:sendMessage``; ``http503:0.2`` for a plain HTTP error."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"fault rate {text!r}: expected CODE:RATE[:OPERATION]")
    code, rate, operation = parts[0], float(parts[1]), parts[2] if len(parts) == 3 else None
    if code.lower().startswith("http"):
        return FaultRate(rate, http_status=int(code[4:]), operation=operation)
    return FaultRate(rate, code=code, operation=operation)


def parse_outage(text: str) -> Outage:
    """``START:DURATION[:MODE]`` in seconds after start; MODE 503 (default), drop, an XTA code, or a
    kind of nonsensical answer (``GARBAGE_KINDS``: empty-body, wrong-body, html, text, empty, soap11,
    truncated-mtom)."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"outage {text!r}: expected START:DURATION[:MODE]")
    return Outage(float(parts[0]), float(parts[1]), parts[2] if len(parts) == 3 else "503")


def chaos_from_flags(fault_rates: Sequence[str] = (), drop_rate: float = 0.0, outages: Sequence[str] = (),
                     latency_jitter: float = 0.0, seed: int | None = None) -> ChaosConfig:
    """A ChaosConfig from command-line strings (raises ValueError with the offending value)."""
    return ChaosConfig(fault_rates=tuple(parse_fault_rate(r) for r in fault_rates), drop_rate=drop_rate,
                       outages=tuple(parse_outage(o) for o in outages), latency_jitter=latency_jitter, seed=seed)


def _pairs(specs: Sequence[str], flag: str) -> list[tuple[str, str]]:
    pairs = []
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not key or not value:
            raise SystemExit(f"{flag} expects KEY=VALUE, got {spec!r}")
        pairs.append((key, value))
    return pairs


def build_config(args: argparse.Namespace) -> SimulatorConfig:
    """The SimulatorConfig the parsed flags describe (keys and certificates loaded here, once)."""
    from transport.security.keys import (
        load_certificate,
        load_certificates,
        load_private_key,
    )

    try:
        chaos = chaos_from_flags(args.fault_rate, args.drop_rate, args.outage, args.latency_jitter, args.seed)
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"fault injection: {exc}") from None
    services: dict[str, set[str]] = {}
    for reader, service in _pairs(args.service, "--service"):
        services.setdefault(reader, set()).add(service)
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise SystemExit("--tls-cert and --tls-key go together")
        tls = ServerTls(Path(args.tls_cert), Path(args.tls_key), Path(args.client_ca) if args.client_ca else None,
                        args.require_client_cert)
    elif args.require_client_cert or args.client_ca:
        raise SystemExit("--client-ca/--require-client-cert need --tls-cert and --tls-key")
    return SimulatorConfig(
        reader_keys={r: load_private_key(Path(p)) for r, p in _pairs(args.reader_key, "--reader-key")},
        trusted_signers=tuple(c for p in args.trusted_signer for c in load_certificates(Path(p))),
        accept_unverified=args.accept_unverified,
        accounts=frozenset(args.accounts) if args.accounts else None,
        latency=args.latency,
        store_dir=Path(args.store_dir) if args.store_dir else None,
        max_container_bytes=args.max_container_bytes,
        account_states=dict(_pairs(args.account_state, "--account-state")),
        client_certificates=dict(_pairs(args.client_cert_fingerprint, "--client-cert-fingerprint")),
        services={r: frozenset(s) for r, s in services.items()} if services else None,
        reader_certificates={r: load_certificate(Path(p)) for r, p in _pairs(args.reader_cert, "--reader-cert")},
        sync_services=frozenset(args.sync_service) if args.sync_service else None,
        report_delay=args.report_delay,
        report_status={r: int(s) for r, s in _pairs(args.report_status, "--report-status")},
        mtom_responses=args.mtom_responses,
        chaos=chaos,
        tls=tls,
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="XTA 2.1.1 simulator (SOAP endpoint at /xta, inspection at /_sim)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8089)
    p.add_argument("--reader-key", action="append", default=[], metavar="READER=PATH",
                   help="reader identifier and its private key (PEM/PKCS#12), to decrypt content")
    p.add_argument("--trusted-signer", action="append", default=[], metavar="PATH",
                   help="certificate(s) trusted for content signatures")
    p.add_argument("--accept-unverified", action="store_true",
                   help="store content that cannot be decrypted or verified as received (verified=false) "
                        "instead of refusing it with 9052")
    p.add_argument("--accounts", nargs="*", metavar="AUTHOR", help="allowed author identifiers (default: any)")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every SOAP response")
    p.add_argument("--store-dir", help="also keep received messages in this folder")
    p.add_argument("--max-container-bytes", type=int, default=40 * 1024 * 1024, help="9023 above this")
    g = p.add_argument_group("accounts, directory, reports")
    g.add_argument("--account-state", action="append", default=[], metavar="AUTHOR=locked|expired",
                   help="PermissionDenied 9011 (locked) or 9010 (expired) for this account")
    g.add_argument("--client-cert-fingerprint", action="append", default=[], metavar="AUTHOR=SHA256",
                   help="TLS client certificate bound to the account (else 9014)")
    g.add_argument("--service", action="append", default=[], metavar="READER=SERVICE",
                   help="services a reader offers (lookupService; others end red); default: all")
    g.add_argument("--reader-cert", action="append", default=[], metavar="READER=PATH",
                   help="encryption certificate lookupService returns for the reader")
    g.add_argument("--sync-service", action="append", default=[], metavar="SERVICE",
                   help="service offered synchronously only (9081/9080); default: both modes everywhere")
    g.add_argument("--report-delay", type=float, default=0.0, help="seconds a transport report stays open (0)")
    g.add_argument("--report-status", action="append", default=[], metavar="READER=1|2|3",
                   help="final transport report status for deliveries to the reader (default 1 green)")
    g.add_argument("--no-mtom-responses", dest="mtom_responses", action="store_false",
                   help="answer getMessage/sendMessageSync with inline base64 instead of MTOM")
    f = p.add_argument_group("fault injection")
    f.add_argument("--fault-rate", action="append", default=[], metavar="CODE:RATE[:OPERATION]",
                   help="XTA error CODE (or httpNNN) for a share RATE of calls, e.g. 9030:0.1:sendMessage")
    f.add_argument("--drop-rate", type=float, default=0.0, help="share of calls whose connection is closed")
    f.add_argument("--outage", action="append", default=[], metavar="START:DURATION[:MODE]",
                   help="seconds after start, length, mode 503|drop|<code> or a garbage kind "
                        "empty-body|wrong-body|html|text|empty|soap11|truncated-mtom (e.g. 60:30:html)")
    f.add_argument("--latency-jitter", type=float, default=0.0, help="plus a random 0..JITTER seconds")
    f.add_argument("--seed", type=int, help="seed for the random fault choices")
    t = p.add_argument_group("TLS")
    t.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    t.add_argument("--tls-key", help="... and this key (PEM)")
    t.add_argument("--client-ca", help="CA certificate(s) that issue client certificates")
    t.add_argument("--require-client-cert", action="store_true", help="refuse connections without one")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    """Parse options, start the simulator and block until SIGINT/SIGTERM."""
    args = parser().parse_args(argv)
    running = serve(build_config(args), host=args.host, port=args.port)
    print(f"XTA simulator listening on {running.url} (inspection: {running.base_url}/_sim/messages)", flush=True)
    serve_until_signal(running)


if __name__ == "__main__":
    main()
