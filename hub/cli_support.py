"""What every ``hub`` command shares: the exit codes and the global options.

Scripts and orchestrators act on the exit code, so it must mean the same for every command:
0 ok; 1 failed or bad input (a usage error, a missing or unreadable file, an unknown destination,
an expired certificate); 2 configuration error (the config file, or the broker refused the
configured login, vhost or permissions); 3 broker unreachable (down, or the connection was lost).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import pika.exceptions

from hub.errors import BrokerUnavailable, ConfigError, HubError

if TYPE_CHECKING:
    from hub.config import HubConfig

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_BROKER = 3

# "\b" keeps click from re-wrapping the lines into one paragraph
EXIT_CODES_EPILOG = """\b
Exit codes:
  0  ok
  1  failed, or bad input (usage, missing or unreadable file, unknown destination, ...)
  2  configuration error (config file; broker refused login, vhost or permissions)
  3  broker unreachable

Options of `hub` (e.g. --config) may also follow the subcommand: `hub certs check --config FILE`."""


def exit_code(error: HubError) -> int:
    """The exit code a command ends with when ``error`` stops it."""
    if isinstance(error, ConfigError):
        return EXIT_CONFIG
    if isinstance(error, BrokerUnavailable):
        return EXIT_BROKER
    return EXIT_FAILED


def fail(error: HubError) -> None:
    """End the command: one line on stderr, the exit code of ``error``, never a traceback."""
    click.echo(f"error: {error}", err=True)
    sys.exit(exit_code(error))


def one_line_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a command so that every HubError, and every pika error that escapes it (e.g. a
    channel closed with 403 ACCESS_REFUSED while declaring), ends it through ``fail``."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except HubError as exc:
            fail(exc)
        except pika.exceptions.AMQPError as exc:  # a broker operation refused or lost mid-command
            fail(_broker_error(exc))

    return wrapper


def _broker_error(exc: pika.exceptions.AMQPError) -> HubError:
    from hub.broker import broker_failure
    from hub.config import HubConfig

    config = click.get_current_context().ensure_object(dict).get("config")
    return broker_failure(exc, (config or HubConfig()).broker)


class HubGroup(click.Group):
    """The root group: a usage error (unknown option, missing or unreadable FILE argument, bad
    value) is bad input, exit 1; click's own code for it, 2, is the hub's configuration-error code."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            exc.exit_code = EXIT_FAILED  # type: ignore[misc]  # a ClassVar in click's types; click reads the instance's
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # raised while parsing a subcommand, or by a command itself
            exc.exit_code = EXIT_FAILED  # type: ignore[misc]  # a ClassVar in click's types; click reads the instance's
            raise


def _store_config_path(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is not None:  # given after the subcommand: it wins over `hub --config` and HUB_CONFIG
        ctx.ensure_object(dict)["config_path"] = value


def config_option() -> click.Option:
    """``--config`` for a subcommand; it stores into the shared context object like the global one."""
    return click.Option(["--config", "config_path"], type=click.Path(dir_okay=False, path_type=Path),
                        expose_value=False, is_eager=True, callback=_store_config_path,
                        help="Config file (TOML); same as `hub --config FILE`.")


def add_global_options(root: click.Group) -> None:
    """Let every subcommand (and sub-group) below ``root`` accept the global options as well, so
    ``hub certs check --config FILE`` works like ``hub --config FILE certs check``."""
    for command in root.commands.values():
        if not any(isinstance(p, click.Option) and "--config" in p.opts for p in command.params):
            command.params.append(config_option())
        if isinstance(command, click.Group):
            add_global_options(command)


def config_of(ctx: click.Context) -> HubConfig:
    """The config of this invocation, loaded once (``--config`` / HUB_CONFIG) and shared by every
    command module through ``ctx.obj``; it also sets the log level and format the config asks for
    (every long-running command reads the config before it logs anything of its own)."""
    from hub.config import load_config
    from hub.logs import configure_logging

    obj = ctx.ensure_object(dict)
    if "config" not in obj:
        obj["config"] = load_config(obj["config_path"])
        configure_logging(obj["config"].log_level, obj["config"].log_format)
    config: HubConfig = obj["config"]
    return config
