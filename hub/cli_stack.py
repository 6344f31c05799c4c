"""``hub stack``: compose.yaml's processes natively on this host (hub/stack.py), until Ctrl-C."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from hub.cli_support import one_line_errors


def _interval(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[1-9][0-9]*(ms|s|m)", value):
        raise click.BadParameter(f"'{value}' is not a Prometheus duration like 1s, 5s, 1m")
    return value


@click.command("stack")
@click.option("--repo", type=click.Path(file_okay=False, exists=True, path_type=Path), default=Path("."),
              show_default=True, help="The repository (examples/stack.toml, monitoring/, scripts/).")
@click.option("--state", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for examples/stack.toml (a copy) and var/stack/ (default: the repository).")
@click.option("--adapter", help="Adapter of the two workers (default: the first of examples/stack.toml).")
@click.option("--prometheus-port", type=int, default=9090, show_default=True, help="Prometheus listens here.")
@click.option("--scrape-interval", callback=_interval,
              help="Global scrape and evaluation interval of a derived copy of monitoring/prometheus.yml "
                   "(default: the file's 15s), e.g. 1s for tests.")
@click.option("--config", "config_path", hidden=True, help="Not accepted: the stack reads examples/stack.toml.")
@click.pass_context
@one_line_errors
def stack(ctx: click.Context, repo: Path, state: Path | None, adapter: str | None, prometheus_port: int,
          scrape_interval: str | None, config_path: str | None) -> None:
    """Start what compose.yaml runs, natively: secrets and keys in var/stack/, topology, XTA simulator,
    two workers of one adapter (9401, 9402), tracker (9410), reply poller (9420) and Prometheus
    (Debian package) with monitoring/prometheus.yml; the broker is the running RabbitMQ (AMQP_URL,
    default guest on 127.0.0.1). Always reads examples/stack.toml (127.0.0.1 overrides via HUB_*
    variables; --config is refused). Ctrl-C or SIGTERM stops every process."""
    from hub.stack import DEFAULT_AMQP_URL, StackError, StackOptions, run_stack

    root = ctx.find_root()
    if config_path is not None or root.get_parameter_source("config_path") == ParameterSource.COMMANDLINE:
        raise StackError("--config does not apply to `hub stack`: it always reads examples/stack.toml of --repo "
                         "(change values with HUB_<SECTION>__<KEY> variables)")

    options = StackOptions(repo=repo.resolve(), state=state, adapter=adapter, prometheus_port=prometheus_port,
                           scrape_interval=scrape_interval, amqp_url=os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL)
    sys.exit(run_stack(options, echo=lambda line: click.echo(line)))
