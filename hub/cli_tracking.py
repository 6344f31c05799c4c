"""`hub tracker`, `hub trace`, `hub status`: the tracking store from the command line.

`hub tracker` runs the tracker process (status events -> store, HTTP API and page); its
subcommands keep it (retention purge, API tokens). `hub trace` and `hub status` read the store
directly with operator scope, so they also work while the tracker is down. Exit codes are those of
every `hub` command (hub/cli_support.py); `hub trace` exits 1 when nothing matches.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from hub.cli_support import EXIT_FAILED, config_of, one_line_errors
from hub.config import HubConfig
from hub.errors import ConfigError
from hub.tracking.model import STATES, ApplicationFilter, ApplicationSummary, Scope

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PAGE = 500  # rows fetched per store query when --limit asks for more


def _config(ctx: click.Context) -> HubConfig:
    return config_of(ctx)


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``12h``, ``90d``, ``2w`` (or plain seconds) -> seconds."""
    try:
        value = float(text[:-1]) * _UNITS[text[-1]] if text and text[-1] in _UNITS else float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise click.BadParameter(f"'{text}' is not a duration like 90s, 30m, 12h, 90d")
    return value


def parse_since(text: str, now: float | None = None) -> float:
    """A duration back from now (``2h``) or an ISO-8601 time (no zone: UTC) -> epoch seconds."""
    try:
        return (time.time() if now is None else now) - parse_duration(text)
    except click.BadParameter:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"'{text}' is neither a duration (2h, 7d) nor an ISO-8601 time "
                                 "(2026-12-01T08:00:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _store(config: HubConfig) -> Any:
    from hub.tracking.service import open_tracking_store

    return open_tracking_store(config)


# --- hub tracker ------------------------------------------------------------------------------
@click.group(invoke_without_command=True)
@click.option("--http-port", type=click.IntRange(0, 65535),
              help="Port of the API, page, /metrics and health (default: tracker.port; 0 = any free one).")
@click.pass_context
@one_line_errors
def tracker(ctx: click.Context, http_port: int | None) -> None:
    """Run the tracker until SIGTERM/SIGINT: status events from hub.tracker into the tracking
    store, and the HTTP API, page, /metrics, /healthz, /readyz on [tracker] host:port."""
    if ctx.invoked_subcommand is not None:
        return
    from hub.tracking.service import TrackerService, run_tracker

    config = _config(ctx)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}

    def started(service: TrackerService) -> None:
        click.echo(f"tracker: consuming hub.tracker into {_redacted(config.tracker.store)}; "
                   f"page {service.url}/ui/, API {service.url}/api/v1/, metrics {service.url}/metrics", err=True)

    try:
        run_tracker(config, http_port=http_port, stop=stop, on_start=started)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _redacted(url: str) -> str:
    from hub.broker import redacted_url

    return redacted_url(url)


@tracker.command("purge")
@click.option("--older-than", "older_than", help="Remove applications whose last event is older than this "
              "(90s, 30m, 12h, 90d); default: tracker.retention_days.")
@click.pass_context
@one_line_errors
def tracker_purge(ctx: click.Context, older_than: str | None) -> None:
    """Delete applications (with their timelines) whose last event is older than --older-than."""
    from hub.tracking.text import iso

    config = _config(ctx)
    seconds = parse_duration(older_than) if older_than else config.tracker.retention_days * 86400
    label = older_than or f"{config.tracker.retention_days:g}d (tracker.retention_days)"
    store = _store(config)
    try:
        removed = store.purge(seconds)
    finally:
        store.close()
    click.echo(f"purged {removed} application(s) whose last event is older than {label} "
               f"(before {iso(time.time() - seconds)})")


@tracker.group("token")
def token() -> None:
    """Bearer tokens of the tracking API, kept as SHA-256 hashes in tracker.tokens_file."""


def _tokens_file(config: HubConfig) -> Path:
    if config.tracker.tokens_file is None:
        raise ConfigError("tracker.tokens_file is not set: name the file that holds the API's token hashes")
    return config.tracker.tokens_file


@token.command("new")
@click.option("--portal", help="The portal (app_id) whose applications the token may see.")
@click.option("--operator", is_flag=True, help="An operator token: sees every portal.")
@click.option("--name", help="Name of the entry (for revoke); default: <portal or operator>-<UTC time>.")
@click.pass_context
@one_line_errors
def token_new(ctx: click.Context, portal: str | None, operator: bool, name: str | None) -> None:
    """Create a token, print it ONCE on stdout, store only its hash (takes effect without a restart)."""
    from hub.tracking.tokenfile import add_token

    if (portal is None) == (not operator):
        raise click.UsageError("give exactly one of --portal PORTAL or --operator")
    path = _tokens_file(_config(ctx))
    new = add_token(path, portal=portal, name=name)
    click.echo(new.token)
    who = f"portal {portal}" if portal else "operators (every portal)"
    click.echo(f"token '{new.name}' for {who} added to {path} (hash only); it is shown only this once", err=True)


@token.command("revoke")
@click.argument("name")
@click.pass_context
@one_line_errors
def token_revoke(ctx: click.Context, name: str) -> None:
    """Remove the token NAME (refused from the tracker's next request on, without a restart)."""
    from hub.tracking.tokenfile import revoke_token

    path = _tokens_file(_config(ctx))
    revoke_token(path, name)
    click.echo(f"revoked token '{name}' ({path})")


# --- hub trace ------------------------------------------------------------------------------
@click.command("trace")
@click.argument("ident", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="One JSON document: the applications and their timelines.")
@click.pass_context
@one_line_errors
def trace(ctx: click.Context, ident: str, as_json: bool) -> None:
    """Timeline of the application(s) with message id, correlation id or transport message id ID."""
    from hub.tracking.text import render_trace

    store = _store(_config(ctx))
    try:
        found = store.trace(ident, Scope.operator())
    finally:
        store.close()
    if not found:
        click.echo(f"no application with message id, correlation id or transport message id '{ident}'", err=True)
        sys.exit(EXIT_FAILED)
    if as_json:
        click.echo(json.dumps({"query": ident, "applications": [t.as_dict() for t in found]}, indent=2))
        return
    for n, found_trace in enumerate(found):
        if n:
            click.echo("")
        click.echo("\n".join(render_trace(found_trace)))
    if len(found) > 1:
        click.echo(f"\n{len(found)} applications match '{ident}'")


# --- hub status -----------------------------------------------------------------------------
@click.command("status")
@click.option("--destination", help="Only this destination (Behördenkennung), e.g. azr:000100.")
@click.option("--state", type=click.Choice(STATES), help="Only applications in this state.")
@click.option("--since", help="Only applications with an event since then: 2h, 7d, or ISO-8601 (UTC if no zone).")
@click.option("--portal", help="Only this portal's applications (app_id).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True,
              help="At most this many applications (newest last event first).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document: applications, counts per state.")
@click.pass_context
@one_line_errors
def status(ctx: click.Context, destination: str | None, state: str | None, since: str | None, portal: str | None,
           limit: int, as_json: bool) -> None:
    """Applications and where they are (newest first), with the number per state."""
    from hub.tracking.text import render_applications, render_counts

    since_at = parse_since(since) if since else None
    flt = ApplicationFilter(destination=destination, state=state, since=since_at, portal=portal)
    scope = Scope.operator()
    store = _store(_config(ctx))
    try:
        items: list[ApplicationSummary] = []
        cursor: str | None = None
        while len(items) < limit:
            page = store.applications(scope, flt, limit=min(limit - len(items), _PAGE), cursor=cursor)
            items += page.items
            cursor = page.next_cursor
            if cursor is None:
                break
        # counts over the same selection, every state (the --state filter picks the rows only)
        counts = store.counts(scope, ApplicationFilter(destination=destination, since=since_at, portal=portal))
    finally:
        store.close()
    more = cursor is not None
    if as_json:
        click.echo(json.dumps({
            "filter": {"destination": destination, "state": state, "since": since_at, "portal": portal,
                       "limit": limit},
            "applications": [a.as_dict() for a in items], "more": more, "counts": counts}, indent=2))
        return
    if items:
        click.echo("\n".join(render_applications(items)))
        click.echo("")
    else:
        click.echo("no applications match")
    if more:
        click.echo(f"(more than {limit} match: raise --limit or narrow the filter)")
    click.echo(render_counts(counts))


COMMANDS = (tracker, trace, status)
