"""Run the XTA simulator as a stand-alone server (demo, compose, manual tests).

    python -m transport.xta.simulator_cli --port 8089 --store-dir var/xta \\
        --reader-key azr:000100=keys/abh.key.pem --trusted-signer keys/ca.cert.pem --accounts alp:portal-1

Keys and certificates are loaded once at start-up; the process serves until interrupted.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

from transport.xta.simulator import SimulatorConfig, serve


def _config(args: argparse.Namespace) -> SimulatorConfig:
    from transport.security.keys import load_certificates, load_private_key

    reader_keys = {}
    for spec in args.reader_key:
        reader, sep, path = spec.partition("=")
        if not sep or not reader or not path:
            raise SystemExit(f"--reader-key expects READER=PATH, got {spec!r}")
        reader_keys[reader] = load_private_key(Path(path))
    trusted = [cert for path in args.trusted_signer for cert in load_certificates(Path(path))]
    return SimulatorConfig(
        reader_keys=reader_keys,
        trusted_signers=tuple(trusted),
        accounts=frozenset(args.accounts) if args.accounts else None,
        latency=args.latency,
        store_dir=Path(args.store_dir) if args.store_dir else None,
        max_container_bytes=args.max_container_bytes,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Parse options, start the simulator and block until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description="XTA 2.1.1 simulator (SOAP endpoint at /xta, inspection at /_sim)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--reader-key", action="append", default=[], metavar="READER=PATH",
                        help="reader identifier and its private key (PEM/PKCS#12), to decrypt content")
    parser.add_argument("--trusted-signer", action="append", default=[], metavar="PATH",
                        help="certificate(s) trusted for content signatures")
    parser.add_argument("--accounts", nargs="*", metavar="AUTHOR", help="allowed author identifiers (default: any)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every SOAP response")
    parser.add_argument("--store-dir", help="also keep received messages in this folder")
    parser.add_argument("--max-container-bytes", type=int, default=40 * 1024 * 1024)
    args = parser.parse_args(argv)

    running = serve(_config(args), host=args.host, port=args.port)
    print(f"XTA simulator listening on {running.url} (inspection: {running.base_url}/_sim/messages)", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    running.stop()


if __name__ == "__main__":
    main()
