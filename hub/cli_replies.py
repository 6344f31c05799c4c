"""``hub replies``: the return-channel process, one mailbox poller thread per configured portal.

The process declares the topology (declare only, like a worker: it never removes bindings), then
polls every selected ``[mailboxes.<portal>]`` until SIGTERM/SIGINT, serving /metrics, /healthz and
/readyz. ``--once`` drains each mailbox one time and exits: 0 when every mailbox was drained, 1 when
the endpoint or the broker got in the way (what was not closed is fetched again next time).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click
import pika.exceptions

from adapters.base import ReplyMailbox
from hub.cli_support import EXIT_FAILED, EXIT_OK, config_of, one_line_errors
from hub.config import HubConfig, MailboxConfig
from hub.errors import BrokerAccessRefused, ConfigError, HubError
from hub.keystore import KeyStore
from hub.replies import ConfirmedPublisher, ReplyMetrics, ReplyPoller

log = logging.getLogger("hub.replies")


def build_mailbox(portal: str, mailbox: MailboxConfig, keys: KeyStore, base_dir: Path | None) -> ReplyMailbox:
    """The mailbox of ``portal`` (its profile's ``ReplyMailbox``); key trouble is a ConfigError
    naming the config key."""
    from adapters.registry import mailbox_class

    cls = mailbox_class(mailbox.profile)
    try:
        return cls.from_config(portal, mailbox, keys, base_dir)
    except ConfigError:
        raise
    except HubError as exc:  # KeyStoreError and friends
        raise ConfigError(f"mailboxes.{portal}.decryption_key: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"mailboxes.{portal}: cannot read a file: {exc.strerror or exc}") from None


def select_portals(config: HubConfig, portals: tuple[str, ...]) -> list[str]:
    """The portals to poll: those named (each must be configured), else every configured one."""
    if not config.mailboxes:
        raise ConfigError("no [mailboxes.<portal>] configured: the return channel has nothing to read")
    unknown = [p for p in portals if p not in config.mailboxes]
    if unknown:
        raise click.BadParameter(f"'{unknown[0]}' has no [mailboxes.{unknown[0]}] section "
                                 f"(configured: {', '.join(sorted(config.mailboxes))})", param_hint="PORTAL")
    return list(dict.fromkeys(portals)) or sorted(config.mailboxes)


def declare_topology(config: HubConfig, stop: threading.Event | None = None) -> None:
    """Declare exchanges and queues (never remove bindings). With ``stop`` an unreachable broker
    is retried with back-off until it answers or ``stop`` is set; without, it fails at once."""
    from hub.broker import broker_failure, connect
    from hub.topology import apply_configured

    backoff = 1.0
    while True:
        try:
            connection = connect(config.broker, "hub-replies-topology")
            try:
                channel = connection.channel()
                channel.confirm_delivery()
                apply_configured(channel, config, remove_stale=False)
            finally:
                if connection.is_open:
                    connection.close()
            return
        except (HubError, pika.exceptions.AMQPError, OSError) as exc:
            error = exc if isinstance(exc, HubError) else broker_failure(exc, config.broker)
            if stop is None or isinstance(error, (ConfigError, BrokerAccessRefused)) or not error.transient:
                raise error from None
            log.warning("broker not reachable at start (%s); retrying in %.0fs", error, backoff)
            if stop.wait(backoff):
                raise error from None
            backoff = min(backoff * 2, 30.0)


@click.command("replies")
@click.argument("portals", nargs=-1)
@click.option("--http-port", type=int, help="Port for /metrics and health (default: config http.port).")
@click.option("--once", is_flag=True, help="Drain every mailbox once, then exit (0 = all drained).")
@click.pass_context
@one_line_errors
def replies(ctx: click.Context, portals: tuple[str, ...], http_port: int | None, once: bool) -> None:
    """Poll the portals' own mailboxes (default: every [mailboxes.<portal>]) for the authorities'
    replies: publish them to hub.replies (routing key = portal), park the unusable ones in
    hub.replies.parked, close each only after the broker confirmed it. Runs until SIGTERM/SIGINT."""
    from prometheus_client import CollectorRegistry

    from hub.publisher import ResilientPublisher
    config = config_of(ctx)
    selected = select_portals(config, portals)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    from hub.metrics import register_build_info

    publisher = ResilientPublisher(config.broker, "hub-replies-publisher")
    metrics = ReplyMetrics(CollectorRegistry())
    register_build_info(metrics.registry, "replies")
    pollers = build_pollers(config, selected, publisher, metrics)  # keys and schemas: bad ones fail here
    try:
        declare_topology(config, None if once else stop)
        publisher.ensure_connected()
        if once:
            drained = _drain_all(pollers, stop)
            click.echo(f"replies: {', '.join(selected)} {'drained' if drained else 'not drained (see the log)'}",
                       err=True)
            sys.exit(EXIT_OK if drained else EXIT_FAILED)
        _serve(config, pollers, publisher, metrics.registry, stop, http_port)
    finally:
        publisher.close()
        for poller in pollers:
            poller.mailbox.close()


def build_pollers(config: HubConfig, portals: list[str], publisher: ConfirmedPublisher, metrics: ReplyMetrics,
                  keys: KeyStore | None = None) -> list[ReplyPoller]:
    """One poller per portal, with its mailbox, the schemas of the reply types (compiled now) and
    the size limits, as ``hub replies`` runs them."""
    from hub.limits import SizeLimits
    from hub.runtime import build_registry

    registry, _types = build_registry(config)
    limits = SizeLimits.from_config(config)
    keys = keys or KeyStore()
    base = config.source.parent if config.source else Path.cwd()
    pollers: list[ReplyPoller] = []
    try:
        for portal in portals:
            section = config.mailboxes[portal]
            pollers.append(ReplyPoller(portal, build_mailbox(portal, section, keys, base), publisher, registry,
                                       section.message_types, limits, metrics, poll_interval=section.poll_interval,
                                       batch=section.batch, stall_after=_stall_after(section)))
    except BaseException:
        for poller in pollers:
            poller.mailbox.close()
        raise
    return pollers


def _stall_after(section: MailboxConfig) -> float:
    """A poller's liveness limit: the usual stall limit plus the longest one reply may take
    (list, fetch, commit: each bounded by the mailbox ``timeout``; the publish by its deadline)."""
    from hub.health import STALL_AFTER

    return STALL_AFTER + 3 * section.timeout + 30.0


def _drain_all(pollers: list[ReplyPoller], stop: threading.Event) -> bool:
    results: dict[str, bool] = {}

    def drain(poller: ReplyPoller) -> None:
        results[poller.portal] = poller.drain()

    threads = [threading.Thread(target=drain, args=(p,), name=f"replies-{p.portal}", daemon=True) for p in pollers]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        if stop.wait(0.2):
            for p in pollers:
                p.stop()
    for t in threads:
        t.join()
    return len(results) == len(pollers) and all(results.values())


def _serve(config: HubConfig, pollers: list[ReplyPoller], publisher: ConfirmedPublisher, registry: Any, stop: threading.Event,
           http_port: int | None) -> None:
    from hub.health import all_alive
    from hub.http import OpsServer

    def ready() -> tuple[bool, str]:
        if not publisher.is_open:
            return False, "broker publisher connection lost, reconnecting"
        failing = [p.portal for p in pollers if p.last_poll_ok is False]
        if failing:
            return False, f"last mailbox poll failed: {', '.join(failing)}"
        return True, f"connected; polling {len(pollers)} mailbox(es)"

    crashed: list[str] = []

    def run(poller: ReplyPoller) -> None:
        try:
            poller.run()
        except Exception:  # a bug: say so (no payload in a traceback of ours), stop the process
            log.exception("mailbox poller %s stopped unexpectedly", poller.portal)
            crashed.append(poller.portal)
            stop.set()

    port = config.http.port if http_port is None else http_port
    ops = OpsServer(registry, ready, config.http.host, port, live=all_alive(*(p.heartbeat for p in pollers))).start()
    log.info("replies: polling %s; metrics at %s/metrics", ", ".join(p.portal for p in pollers), ops.url)  # JSON too
    threads = [threading.Thread(target=run, args=(p,), name=f"replies-{p.portal}", daemon=True) for p in pollers]
    for t in threads:
        t.start()
    try:
        while not stop.wait(0.5):
            if not any(t.is_alive() for t in threads):
                break
    finally:
        for p in pollers:
            p.stop()
        for t in threads:
            t.join(60)
        ops.stop()
    if crashed:
        sys.exit(EXIT_FAILED)
