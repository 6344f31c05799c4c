"""The ``hub`` command line (also ``python -m hub``).

Every HubError ends the command with a one-line explanation and a non-zero exit code, never a
traceback: operators should be told what to do, not shown a stack.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from hub.cli_replies import replies as replies_command
from hub.cli_stack import stack as stack_command
from hub.cli_support import (
    EXIT_CODES_EPILOG,
    EXIT_FAILED,
    HubGroup,
    add_global_options,
    config_of,
    one_line_errors,
)
from hub.cli_tracking import COMMANDS as TRACKING_COMMANDS
from hub.config import HubConfig
from hub.errors import HubError, PublishNotConfirmed

DEFAULT_CONFIG = "hub.toml"


def _config(ctx: click.Context) -> HubConfig:
    return config_of(ctx)


@click.group(cls=HubGroup, epilog=EXIT_CODES_EPILOG)
@click.option("--config", "config_path", envvar="HUB_CONFIG", default=DEFAULT_CONFIG, show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Config file (TOML); env HUB_CONFIG.")
@click.pass_context
def main(ctx: click.Context, config_path: Path) -> None:
    """Integration hub: portals -> RabbitMQ -> adapters -> XTA 2 endpoints."""
    from hub.logs import configure_logging

    # text until the config is read (config_of then applies log_level and log_format); pika is
    # kept at CRITICAL: the hub translates broker failures into one clear message of its own
    configure_logging(logging.INFO, "text")
    ctx.ensure_object(dict)["config_path"] = config_path


@main.group()
def topology() -> None:
    """Broker topology (exchanges, queues, bindings from the directory)."""


@topology.command("apply")
@click.option("--migrate", is_flag=True, help="Give queues an earlier release declared with arguments "
              "(which override policies) a fresh declaration, moving their messages; stop their workers first.")
@click.pass_context
@one_line_errors
def topology_apply(ctx: click.Context, migrate: bool) -> None:
    """Declare the topology idempotently, set the queues' policies (management API); remove
    bindings and policies of what is no longer configured."""
    from hub.broker import connect
    from hub.management import ManagementApi
    from hub.topology import apply_topology, plan_topology
    from hub.topology_migrate import migrate_queues

    config = _config(ctx)
    plan = plan_topology(config)
    connection = connect(config.broker, "hub-topology")
    try:
        with ManagementApi.from_config(config.broker) as management:
            channel = connection.channel()
            channel.confirm_delivery()
            report = apply_topology(channel, plan, management=management)
            migration = migrate_queues(connection, plan, management, [q.name for q in report.legacy]) \
                if migrate else None
    finally:
        if connection.is_open:
            connection.close()
    for b in report.added:
        click.echo(f"+ bind {b.exchange} --{b.routing_key}--> {b.queue}")
    for b in report.removed:
        click.echo(f"- unbind {b.exchange} --{b.routing_key}--> {b.queue}")
    for name in report.policies_set:
        click.echo(f"+ policy {name}")
    for name in report.policies_removed:
        click.echo(f"- policy {name}")
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(report.summary())
    if migration is not None:
        for name, depth in migration.moved.items():
            click.echo(f"migrated {name} ({depth} messages)")
        click.echo(migration.summary())
    else:
        for legacy in report.legacy:
            click.echo(f"warning: {legacy.describe()}", err=True)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--to", "destination", required=True, help="Behördenkennung, e.g. azr:000100")
@click.option("--message-type", default="OZG.Antrag.130101", show_default=True)
@click.option("--portal", default="hub-cli", show_default=True, help="app_id of the sending portal")
@click.option("--message-id", help="Defaults to the payload's nachrichtenUUID, else a new UUID.")
@click.option("--attach", "attachments", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--envelope-version", type=click.IntRange(1, 2), default=2, show_default=True,
              help="2: raw parts (workers since envelope v2); 1: JSON + base64 for older workers.")
@click.pass_context
@one_line_errors
def publish(ctx: click.Context, file: Path, destination: str, message_type: str, portal: str,
            message_id: str | None, attachments: tuple[Path, ...], envelope_version: int) -> None:
    """Publish FILE to DESTINATION; returns after the broker confirmed it. Refused before sending
    (exit 1): content above the size limit of the message type, XML that is not well-formed."""
    import mimetypes

    from hub.envelope import new_envelope
    from hub.limits import SizeLimits, check_content_size, check_publishable
    from hub.publisher import ConfirmingPublisher, publish_envelope
    from transport.content import Content, ContentPart

    config = _config(ctx)
    limits = SizeLimits.from_config(config)
    files = (file, *attachments)
    check_content_size(sum(p.stat().st_size for p in files), len(files), message_type, limits)  # before reading
    data = file.read_bytes()
    parts = tuple(
        ContentPart(p.read_bytes(), mimetypes.guess_type(p.name)[0] or "application/octet-stream", p.name)
        for p in attachments)
    check_publishable(Content(ContentPart(data, "application/xml", file.name), parts), message_type, limits)
    envelope = new_envelope(destination=destination, message_type=message_type, message=data, portal=portal,
                            message_id=message_id or _nachrichten_uuid(data), filename=file.name,
                            attachments=parts)
    with ConfirmingPublisher(config.broker, f"hub-publish-{portal}") as publisher:
        try:
            publish_envelope(publisher, envelope, check=False,  # checked above
                             version=envelope_version).result(timeout=60)
        except TimeoutError:
            raise PublishNotConfirmed("the broker did not confirm within 60 s") from None
    click.echo(f"published {envelope.message_id} to {destination} (confirmed)")


def _nachrichten_uuid(data: bytes) -> str:
    """The XÖV nachrichtenUUID of the payload (the idempotency key), or a fresh UUID."""
    from transport.security.xml import parse_xml

    try:
        root = parse_xml(data)
    except HubError:
        return str(uuid.uuid4())
    found = root.find(".//{*}nachrichtenUUID")
    return found.text.strip() if found is not None and found.text else str(uuid.uuid4())


@main.command()
@click.argument("adapter")
@click.option("--http-port", type=int, help="Port for /metrics and health (default: config http.port).")
@click.pass_context
@one_line_errors
def worker(ctx: click.Context, adapter: str, http_port: int | None) -> None:
    """Run the worker of ADAPTER until SIGTERM/SIGINT."""
    from prometheus_client import CollectorRegistry

    from hub.certs import (
        READINESS_USES,
        certificate_report,
        readiness_problems,
        register_certificate_expiry,
    )
    from hub.health import CachedCheck
    from hub.http import OpsServer
    from hub.keystore import KeyStore
    from hub.metrics import WorkerMetrics, register_build_info
    from hub.runtime import build_pipeline
    from hub.worker import AdapterWorker

    config = _config(ctx)
    keys = KeyStore()
    pipeline = build_pipeline(config, adapter, keys)
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    register_build_info(registry, "worker")
    register_certificate_expiry(registry, config, keys, adapter=adapter)
    hub_worker = AdapterWorker(config, adapter, pipeline, metrics)

    account = CachedCheck("XTA account (checkAccountActive)", pipeline.adapter.check)
    ok, detail = account()
    if not ok:
        logging.getLogger("hub.worker").warning("at start: %s", detail)

    def ready() -> tuple[bool, str]:
        """Keys loaded and valid, XTA account active, then the broker side (connected, not blocked,
        consumer attached, breaker not open): every reason in the body, keys first."""
        problems = readiness_problems(certificate_report(config, keys, adapter=adapter, uses=READINESS_USES))
        account_ok, account_detail = account()
        if not account_ok:
            problems.append(account_detail)
        consuming, detail = hub_worker.readiness()
        if problems:
            return False, "; ".join([*problems, detail])
        return consuming, detail

    port = config.http.port if http_port is None else http_port
    ops = OpsServer(registry, ready, config.http.host, port, live=hub_worker.heartbeat).start()
    logging.getLogger("hub.worker").info("worker %s: metrics at %s/metrics", adapter, ops.url)  # JSON too
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: hub_worker.stop())
    try:
        hub_worker.run()
    finally:
        ops.stop()
        pipeline.close()


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--port", type=int, help="Listen port (default: config simulator.port).")
@click.option("--protocol", type=click.Choice(["xta2", "fit-connect"]), default="xta2", show_default=True,
              help="Which endpoint to simulate.")
@click.pass_context
@one_line_errors
def simulator(ctx: click.Context, port: int | None, protocol: str) -> None:
    """Run an endpoint simulator until SIGTERM/SIGINT: XTA 2 (default) or FIT-Connect.

    XTA 2: readers' keys, trusted signers and accounts come from the config's [simulator] section and
    adapters; any further flags of the simulator are passed through, e.g. --latency 2,
    --fault-rate 9030:0.1:sendMessage, --outage 30:60, --drop-rate 0.05, --report-status
    azr:000100=3, --tls-cert/--tls-key/--client-ca/--require-client-cert (`hub simulator --help-simulator`).

    FIT-Connect (`--protocol fit-connect`): the Submission API 1.1.3 simulator, configured by its own
    flags only (no config file needed), e.g. --state-dir DIR --destination UUID --auto-accept
    --openapi submission-api-1.1.3.yaml --rate-429 0.1 (`hub simulator --protocol fit-connect
    --help-simulator` lists them; docs/fit-connect.md)."""
    import threading

    if protocol == "fit-connect":
        from transport.fitconnect.simulator.cli import main as fit_connect_simulator

        argv = ["--help" if arg == "--help-simulator" else arg for arg in ctx.args]
        sys.exit(fit_connect_simulator([*argv, *(["--port", str(port)] if port is not None else [])]))

    from hub.simulation import simulator_argv
    from transport.xta.simulator import cli as simulator_cli
    from transport.xta.simulator import serve

    if "--help-simulator" in ctx.args:
        simulator_cli.parser().print_help()
        return
    config = _config(ctx)
    try:
        args = simulator_cli.parser().parse_args(simulator_argv(config, port=port, extra=ctx.args))
    except SystemExit as exc:  # argparse has printed the usage error; its code 2 would mean "configuration"
        sys.exit(EXIT_FAILED if exc.code else 0)
    running = serve(simulator_cli.build_config(args), host=args.host, port=args.port)
    logging.getLogger("hub.simulator").info("XTA simulator listening at %s (inspection: %s/_sim/messages)",
                                            running.url, running.base_url)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    running.stop()


@main.group()
def certs() -> None:
    """Certificates in use (signing, readers, trust anchors)."""


@certs.command("check")
@click.option("--warn-days", default=30.0, show_default=True, help="Flag certificates expiring sooner.")
@click.pass_context
@one_line_errors
def certs_check(ctx: click.Context, warn_days: float) -> None:
    """List every certificate with subject, issuer, expiry and where it is used; exit 1 if one
    is expired, not yet valid or unreadable."""
    from hub.certs import certificate_report, check_exit_code, render_report
    from hub.keystore import KeyStore

    report = certificate_report(_config(ctx), KeyStore())
    click.echo(render_report(report, warn_days=warn_days))
    sys.exit(check_exit_code(report))


def _duration(text: str | None) -> float | None:
    """'90s', '30m', '12h', '7d' (or plain seconds) -> seconds."""
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except (ValueError, IndexError):
        raise click.BadParameter(f"'{text}' is not a duration like 90s, 30m, 12h, 7d") from None


def _dlq_filter_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--adapter", help="Only this adapter's dead letters."),
        click.option("--destination", help="Only this destination (Behördenkennung)."),
        click.option("--reason", help="Only this reason slug, e.g. schema_violation, xta_9012."),
        click.option("--older-than", "older_than", help="Only failures older than this (90s, 30m, 12h, 7d)."),
    ]):
        fn = option(fn)
    return fn


def _dlq_filter(adapter: str | None, destination: str | None, reason: str | None, older_than: str | None,
                message_id: str | None = None) -> Any:
    from hub.dlq import DeadLetterFilter

    return DeadLetterFilter(adapter=adapter, destination=destination, reason=reason,
                            older_than=_duration(older_than), message_id=message_id)


@main.group()
def dlq() -> None:
    """The dead-letter queue: list, show, replay, purge."""


@dlq.command("list")
@_dlq_filter_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
@one_line_errors
def dlq_list(ctx: click.Context, adapter: str | None, destination: str | None, reason: str | None,
             older_than: str | None, as_json: bool) -> None:
    """List dead letters (ids, reasons, ages; never payload content)."""
    import json
    import time

    from hub.dlq import DeadLetterQueue

    letters = DeadLetterQueue(_config(ctx).broker).list(_dlq_filter(adapter, destination, reason, older_than))
    if as_json:
        for d in letters:
            click.echo(json.dumps(d.as_dict()))
        return
    click.echo(f"{'MESSAGE ID':<38} {'ADAPTER':<10} {'DESTINATION':<12} {'REASON':<22} {'XTA':<5} {'TRIES':>5} {'AGE':>8}")
    now = time.time()
    for d in letters:
        age = d.age(now)
        age_text = "-" if age is None else f"{age / 3600:.1f}h" if age >= 3600 else f"{age:.0f}s"
        click.echo(f"{d.message_id:<38} {d.adapter or '-':<10} {d.destination or '-':<12} {d.reason:<22} "
                   f"{d.xta_code or '-':<5} {d.attempts:>5} {age_text:>8}")
    click.echo(f"{len(letters)} dead letter(s)")


@dlq.command("show")
@click.argument("message_id")
@click.pass_context
@one_line_errors
def dlq_show(ctx: click.Context, message_id: str) -> None:
    """Show one dead letter: reason headers and the parts (names, sizes, hashes)."""
    import json

    from hub.dlq import DeadLetterQueue

    found = DeadLetterQueue(_config(ctx).broker).show(message_id)
    if not found:
        click.echo(f"no dead letter with message id {message_id}", err=True)
        sys.exit(EXIT_FAILED)
    for letter, detail in found:
        click.echo(json.dumps({"dead_letter": letter.as_dict(), **detail}, indent=2, default=str))


@dlq.command("replay")
@click.argument("message_id", required=False)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter (with the filters below).")
@_dlq_filter_options
@click.pass_context
@one_line_errors
def dlq_replay(ctx: click.Context, message_id: str | None, replay_all: bool, adapter: str | None,
               destination: str | None, reason: str | None, older_than: str | None) -> None:
    """Republish MESSAGE_ID, or --all / filtered dead letters, to the inbound exchange."""
    from hub.dlq import DeadLetterQueue

    if not message_id and not replay_all and not any((adapter, destination, reason, older_than)):
        raise click.UsageError("name a MESSAGE_ID, or use --all and/or filters")
    queue = DeadLetterQueue(_config(ctx).broker)
    flt = _dlq_filter(adapter, destination, reason, older_than, message_id)
    total = len(queue.list(flt))
    with click.progressbar(length=total, label="replaying", file=sys.stderr) as bar:
        counts = queue.replay(flt, on_progress=lambda _d, _outcome: bar.update(1))
    click.echo(f"replayed {counts['replayed']}, unroutable (left in the DLQ) {counts['unroutable']}")
    if counts["unroutable"]:
        sys.exit(EXIT_FAILED)


@dlq.command("purge")
@click.option("--older-than", "older_than", required=True, help="Remove dead letters older than this (e.g. 30d).")
@click.option("--adapter")
@click.option("--reason")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@one_line_errors
def dlq_purge(ctx: click.Context, older_than: str, adapter: str | None, reason: str | None, yes: bool) -> None:
    """Delete dead letters older than --older-than (for retention; nothing younger is touched)."""
    from hub.dlq import DeadLetterQueue

    queue = DeadLetterQueue(_config(ctx).broker)
    flt = _dlq_filter(adapter, None, reason, older_than)
    n = len(queue.list(flt))
    if n and not yes:
        click.confirm(f"delete {n} dead letter(s) for good?", abort=True)
    click.echo(f"purged {queue.purge(flt) if n else 0} dead letter(s)")


@main.command()
@click.option("--count", default=200, show_default=True, help="Applications to publish.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait for all deliveries.")
@click.pass_context
@one_line_errors
def demo(ctx: click.Context, count: int, timeout: float) -> None:
    """End to end: simulator + workers + topology, publish COUNT applications, wait, summarise."""
    from hub.demo import run_demo

    logging.getLogger().setLevel(logging.WARNING)  # the demo prints its own progress
    config_path = ctx.obj["config_path"]
    sys.exit(run_demo(Path(config_path), count=count, timeout=timeout, environ=dict(os.environ)))


main.add_command(replies_command)
main.add_command(stack_command)
for _command in TRACKING_COMMANDS:  # hub tracker, hub trace, hub status
    main.add_command(_command)
add_global_options(main)  # after every command is defined: `hub certs check --config FILE`

if __name__ == "__main__":  # pragma: no cover
    main()
