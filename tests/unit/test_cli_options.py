"""The command line's contract without a broker: global options after any subcommand, and exit
codes as README and `hub --help` promise (1 bad input, 2 configuration, 3 broker unreachable)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import tomli_w
from click.testing import CliRunner, Result

from hub.cli import main
from hub.cli_support import EXIT_BROKER, EXIT_CONFIG, EXIT_FAILED

# a subcommand of each kind, with the arguments it needs to get as far as loading the config
SUBCOMMANDS = {
    "certs check": ["certs", "check"],
    "topology apply": ["topology", "apply"],
    "dlq list": ["dlq", "list"],
    "worker": ["worker", "alpha", "--http-port", "0"],
    "demo": ["demo", "--count", "1"],
}


def _run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def _leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _leaf_commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


@pytest.fixture()
def config_file(tmp_path: Path) -> Path:
    """A config that loads (nothing in it is contacted by the tests that use it)."""
    doc = {
        "broker": {"url": "amqp://guest:guest@127.0.0.1:1/%2F", "connection_attempts": 1},
        "adapters": {"alpha": {"endpoint": "http://127.0.0.1:9/xta", "signing_key": "k.pem",
                               "author": {"identifier": "alp:000001"}}},
        "authorities": [{"id": "azr:000100", "name": "ABH", "adapter": "alpha", "certificate": "c.pem"}],
    }
    path = tmp_path / "hub.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


def test_every_subcommand_accepts_the_global_options() -> None:
    leaves = _leaf_commands(main)
    assert len(leaves) >= 9  # certs check, demo, dlq x4, publish, simulator, topology apply, worker
    for leaf in leaves:
        result = _run(*leaf, "--help")
        assert result.exit_code == 0, (leaf, result.output)
        if leaf == ("stack",):  # always examples/stack.toml: --config is refused (tests/unit/test_stack.py)
            assert "--config FILE" not in result.output
            continue
        assert "--config FILE" in result.output, leaf


@pytest.mark.parametrize("subcommand", list(SUBCOMMANDS))
def test_config_after_the_subcommand_wins(subcommand: str, tmp_path: Path) -> None:
    before, after = tmp_path / "before.toml", tmp_path / "after.toml"
    result = _run("--config", str(before), *SUBCOMMANDS[subcommand], "--config", str(after))
    assert result.exit_code == EXIT_CONFIG, result.output
    assert f"config file not found: {after}" in result.output


@pytest.mark.parametrize("subcommand", list(SUBCOMMANDS))
def test_config_before_the_subcommand_and_the_environment_still_work(subcommand: str, tmp_path: Path) -> None:
    before = tmp_path / "before.toml"
    result = _run("--config", str(before), *SUBCOMMANDS[subcommand])
    assert result.exit_code == EXIT_CONFIG, result.output
    assert f"config file not found: {before}" in result.output
    from_env = tmp_path / "from-env.toml"
    result = _run(*SUBCOMMANDS[subcommand], env={"HUB_CONFIG": str(from_env)})
    assert f"config file not found: {from_env}" in result.output


def test_certs_check_runs_with_config_after_the_subcommand(config_file: Path) -> None:
    result = _run("certs", "check", "--config", str(config_file))
    assert "No such option" not in result.output
    assert "adapters.alpha.signing_cert" in result.output or "adapters.alpha.signing_key" in result.output
    assert result.exit_code == EXIT_FAILED  # the key files of this config do not exist: unreadable


def test_help_documents_the_exit_codes() -> None:
    result = _run("--help")
    assert result.exit_code == 0
    for line in ("0  ok", "1  failed, or bad input", "2  configuration error", "3  broker unreachable"):
        assert line in result.output


def test_missing_payload_file_is_an_input_error(config_file: Path, tmp_path: Path) -> None:
    result = _run("--config", str(config_file), "publish", str(tmp_path / "missing.xml"), "--to", "azr:000100")
    assert result.exit_code == EXIT_FAILED, result.output
    assert "does not exist" in result.output
    missing_attachment = _run("--config", str(config_file), "publish", str(config_file), "--to", "azr:000100",
                              "--attach", str(tmp_path / "missing.pdf"))
    assert missing_attachment.exit_code == EXIT_FAILED, missing_attachment.output


@pytest.mark.parametrize("args", [
    ["--no-such-option"],
    ["certs", "check", "--no-such-option"],
    ["publish"],  # FILE and --to missing
    ["dlq", "replay"],  # neither MESSAGE_ID nor --all nor a filter
    ["dlq", "list", "--older-than", "soon"],
    ["simulator", "--latency", "not-a-number"],  # a flag passed through to the simulator's own parser
])
def test_usage_errors_are_input_errors(args: list[str], config_file: Path) -> None:
    result = _run("--config", str(config_file), *args)
    assert result.exit_code == EXIT_FAILED, result.output


def test_configuration_and_broker_errors_keep_their_codes(config_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[broker]\nprefetch = "lots"\n')
    assert _run("--config", str(bad), "topology", "apply").exit_code == EXIT_CONFIG
    assert _run("--config", str(config_file), "worker", "nobody").exit_code == EXIT_CONFIG
    down = _run("--config", str(config_file), "dlq", "list")  # the config's broker port 1 refuses
    assert down.exit_code == EXIT_BROKER, down.output
    assert "rabbitmq-server -detached" in down.output
