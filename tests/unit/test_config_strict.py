"""Strict config types (docs/configuration.md, docs/xta.md): a value of the wrong type in the file is
an error naming the key, never a guess; environment overrides, text by nature, are still converted."""

from __future__ import annotations

import copy
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pytest
import tomli_w
from click.testing import CliRunner
from pydantic import BaseModel

from adapters.xta2 import Xta2Addressing, Xta2Options, Xta2Settings, xta2_settings
from hub.cli import main
from hub.cli_support import EXIT_CONFIG
from hub.config import (
    AdapterConfig,
    AuthorityConfig,
    BreakerConfig,
    BrokerConfig,
    HttpConfig,
    HubConfig,
    LedgerConfig,
    LimitsConfig,
    MailboxConfig,
    MessageTypeConfig,
    PartyConfig,
    SimulatorConfigModel,
    StatusConfig,
    TopologyConfig,
    TrackerConfig,
    parse_config,
)
from hub.errors import ConfigError


def _minimal() -> dict[str, Any]:
    return {
        "message_types": [{"code": "OZG.Antrag.130101", "schema": "builtin:x.xsd", "list_uri": "urn:x",
                           "list_version": "1", "payload_schema": "urn:y"}],
        "adapters": {"advis": {"endpoint": "http://127.0.0.1:1/xta", "signing_key": "k.pem",
                               "author": {"identifier": "alp:1"}, "breaker": {}}},
        "authorities": [{"id": "azr:000100", "name": "ABH", "adapter": "advis", "certificate": "c.pem"}],
        "tracker": {},
        "mailboxes": {"portal-a": {"endpoint": "http://127.0.0.1:1/xta", "account": {"identifier": "alp:1"},
                                   "decryption_key": "k.pem", "message_types": ["OZG.Antrag.130101"]}},
    }


# where each section lives in the raw document: (path to the table, model, key as errors name it)
SECTIONS: list[tuple[tuple[str | int, ...], type[BaseModel], str]] = [
    ((), HubConfig, ""),
    (("broker",), BrokerConfig, "broker."),
    (("http",), HttpConfig, "http."),
    (("ledger",), LedgerConfig, "ledger."),
    (("limits",), LimitsConfig, "limits."),
    (("simulator",), SimulatorConfigModel, "simulator."),
    (("status",), StatusConfig, "status."),
    (("tracker",), TrackerConfig, "tracker."),
    (("topology",), TopologyConfig, "topology."),
    (("mailboxes", "portal-a"), MailboxConfig, "mailboxes.portal-a."),
    (("mailboxes", "portal-a", "account"), PartyConfig, "mailboxes.portal-a.account."),
    (("message_types", 0), MessageTypeConfig, "message_types[0]."),
    (("adapters", "advis"), AdapterConfig, "adapters.advis."),
    (("adapters", "advis"), Xta2Settings, "adapters.advis."),  # the profile's keys of the same table
    (("adapters", "advis", "author"), PartyConfig, "adapters.advis.author."),
    (("adapters", "advis", "breaker"), BreakerConfig, "adapters.advis.breaker."),
    (("authorities", 0), AuthorityConfig, "authorities[0]."),
    (("authorities", 0), Xta2Addressing, "authorities[0]."),  # the xta2 adapter's keys of the entry
]


def _scalar(annotation: Any) -> type | None:
    """bool, int, float or str if the annotation is one of them (or Optional of one)."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        return _scalar(members[0]) if len(members) == 1 else None
    if get_origin(annotation) is Literal:
        return str
    return annotation if annotation in (bool, int, float, str) else None


def _wrong_values() -> list[tuple[tuple[str | int, ...], str, Any, str]]:
    """For every scalar key of every section: a value of another type that lax parsing would accept."""
    cases: list[tuple[tuple[str | int, ...], str, Any, str]] = []
    for path, model, prefix in SECTIONS:
        if model is HubConfig:
            continue
        for name, field in model.model_fields.items():
            kind = _scalar(field.annotation)
            key = field.alias or name
            if kind is bool:
                cases.append((path, key, "yes", f"{prefix}{key}"))
            elif kind in (int, float):
                cases.append((path, key, "10", f"{prefix}{key}"))
            elif kind is str:
                cases.append((path, key, 10, f"{prefix}{key}"))
    cases.append(((), "log_level", 10, "log_level"))
    cases.append((("adapters", "advis"), "retry_delays", ["5", "30"], "adapters.advis.retry_delays[0]"))
    return cases


def test_every_section_is_covered() -> None:
    sections = {model for _p, model, _k in SECTIONS}
    nested = {f.annotation for f in HubConfig.model_fields.values() if isinstance(f.annotation, type)
              and issubclass(f.annotation, BaseModel)}
    assert nested <= sections, f"add to SECTIONS: {nested - sections}"
    assert len(_wrong_values()) > 40


@pytest.mark.parametrize(("path", "key", "value", "named"), _wrong_values(),
                         ids=lambda v: str(v) if isinstance(v, str) and "." in v else None)
def test_a_wrong_type_in_the_file_is_an_error_naming_the_key(path, key, value, named) -> None:
    raw = _minimal()
    table: Any = raw
    for part in path:
        table = table.setdefault(part, {}) if isinstance(part, str) else table[part]
    table[key] = value
    with pytest.raises(ConfigError) as info:
        parse_config(raw, base=Path("/etc/hub"), environ={})
    text = str(info.value)
    assert f"{named}: " in text, text
    assert "\n" not in text  # one line


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("endpiont", "http://127.0.0.1:1/xta", "adapters.advis.endpiont: Extra inputs"),  # no model of the table knows it
    ("profile", "xta3", "adapters.advis.profile: unknown adapter profile 'xta3'"),  # nobody registered it
], ids=["unknown_key", "unknown_profile"])
def test_an_unknown_adapter_key_or_profile_is_a_one_line_error_naming_it(key: str, value: str, expected: str) -> None:
    raw = _minimal()
    raw["adapters"]["advis"][key] = value
    with pytest.raises(ConfigError) as info:
        parse_config(raw, base=Path("/etc/hub"), environ={})
    text = str(info.value)
    assert expected in text, text
    assert "\n" not in text  # one line


def test_the_file_s_own_types_are_accepted() -> None:
    raw = _minimal()
    raw["broker"] = {"prefetch": 64, "blocked_connection_timeout": 5, "retry_delay": 0.5}  # int for a float too
    raw["adapters"]["advis"].update(retry_delays=[5, 30.5], poll_transport_reports=False, timeout=12,
                                    options={"mtom": False, "lookup_ttl": 10})
    raw["simulator"] = {"trusted_signers": ["ca.pem"], "readers": {"azr:000100": {"key": "r.pem"}}}
    config = parse_config(raw, base=Path("/etc/hub"), environ={})
    advis = config.adapters["advis"]
    assert config.broker.prefetch == 64 and config.broker.blocked_connection_timeout == 5.0
    assert advis.retry_delays == (5.0, 30.5) and advis.poll_transport_reports is False and advis.timeout == 12.0
    assert config.simulator.trusted_signers == (Path("/etc/hub/ca.pem"),)
    xta = xta2_settings(advis.section, Path("/etc/hub"), "adapters.advis")  # as the profile reads its keys
    assert xta.signing_key == Path("/etc/hub/k.pem")
    options = Xta2Options.from_mapping(xta.options)
    assert options.mtom is False and options.lookup_ttl == 10.0


@pytest.mark.parametrize(("option", "value"), [("mtom", "yes"), ("lookup_ttl", "10"), ("encrypt", 1),
                                               ("max_container_bytes", "40000000"), ("receipt_requests", "Fetch"),
                                               ("send_mode", True), ("tls_client_cert", 5)])
def test_profile_options_are_strict_too(option: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"adapters\.advis\.options\.{option}: "):
        Xta2Options.from_mapping({option: value}, key="adapters.advis.options")


def test_environment_overrides_are_converted_to_the_key_s_type() -> None:
    env = {
        "AMQP_URL": "amqp://u:p@broker:5672/v",
        "HUB_BROKER__PREFETCH": "64",
        "HUB_BROKER__RETRY_DELAY": "0.5",
        "HUB_HTTP__PORT": "9500",
        "HUB_ADAPTERS__ADVIS__POLL_TRANSPORT_REPORTS": "false",
        "HUB_ADAPTERS__ADVIS__TIMEOUT": "2.5",
        "HUB_ADAPTERS__ADVIS__RETRY_DELAYS": "[5, 30]",
        "HUB_ADAPTERS__ADVIS__BUSINESS_SCENARIO_LIST_VERSION": "2",  # text key: stays text
        "HUB_ADAPTERS__ADVIS__SIGNING_CERT": "cert.pem",
        "HUB_ADAPTERS__ADVIS__BREAKER__COOL_DOWN": "60",
        "HUB_ADAPTERS__ADVIS__OPTIONS__MTOM": "false",  # profile options: converted by the profile's model
        "HUB_ADAPTERS__ADVIS__OPTIONS__LOOKUP_TTL": "10",
        "HUB_ADAPTERS__ADVIS__OPTIONS__SERVICE_QUALITY": "fast",
    }
    config = parse_config(copy.deepcopy(_minimal()), base=Path("/etc/hub"), environ=env)
    advis = config.adapters["advis"]
    assert config.broker.url == "amqp://u:p@broker:5672/v"
    assert config.broker.prefetch == 64 and config.broker.retry_delay == 0.5 and config.http.port == 9500
    assert advis.poll_transport_reports is False and advis.timeout == 2.5 and advis.retry_delays == (5.0, 30.0)
    xta = xta2_settings(advis.section, Path("/etc/hub"), "adapters.advis")  # as the profile reads its keys
    assert xta.business_scenario_list_version == "2" and xta.signing_cert == Path("/etc/hub/cert.pem")
    assert advis.breaker.cool_down == 60.0
    options = Xta2Options.from_mapping(xta.options)
    assert options.mtom is False and options.lookup_ttl == 10.0 and options.service_quality == "fast"


def test_overrides_below_a_nested_table_are_converted_to_the_key_s_type() -> None:
    """Text keys stay text and numbers with a TOML-foreign spelling convert, however deep the key."""
    env = {
        "HUB_ADAPTERS__ADVIS__AUTHOR__NAME": "4711",  # str two tables down: not the TOML integer
        "HUB_ADAPTERS__ADVIS__BREAKER__FAILURE_RATE": ".5",  # float: not valid TOML, valid as a float
        "HUB_SIMULATOR__STORE_DIR": "2024",  # a path named like a number
    }
    config = parse_config(copy.deepcopy(_minimal()), base=Path("/etc/hub"), environ=env)
    advis = config.adapters["advis"]
    assert advis.author.name == "4711" and advis.breaker.failure_rate == 0.5
    assert config.simulator.store_dir == Path("/etc/hub/2024")


def test_profile_option_overrides_get_the_profile_s_types_not_toml_s() -> None:
    env = {"HUB_ADAPTERS__ADVIS__OPTIONS__MESSAGE_TYPE_LIST_VERSION": "1.2",  # str option: not the float 1.2
           "HUB_ADAPTERS__ADVIS__OPTIONS__LOOKUP_NEGATIVE_TTL": ".5"}
    config = parse_config(copy.deepcopy(_minimal()), base=Path("/etc/hub"), environ=env)
    options = config.adapters["advis"].section["options"]
    assert options["message_type_list_version"] == "1.2" and isinstance(options["message_type_list_version"], str)
    parsed = Xta2Options.from_mapping(options)
    assert parsed.message_type_list_version == "1.2" and parsed.lookup_negative_ttl == 0.5
    with pytest.raises(ConfigError, match=r"options\.lookup_ttl: "):  # the file's text stays an error
        Xta2Options.from_mapping({**options, "lookup_ttl": "10"}, key="options")


@pytest.mark.parametrize(("env", "named"), [({"HUB_BROKER__PREFETCH": "lots"}, "broker.prefetch"),
                                            ({"HUB_BROKER__PREFETCH": "0"}, "broker.prefetch"),
                                            ({"HUB_ADAPTERS__ADVIS__RETRY_DELAYS": "[5, -1]"}, "adapters.advis.retry_delays")])
def test_bad_environment_overrides_are_errors_naming_the_key(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=rf"{named}"):
        parse_config(_minimal(), base=Path("/"), environ=env)


def test_worker_with_a_string_for_a_bool_option_exits_2_with_one_line(pki, tmp_path: Path) -> None:
    key, cert = pki["portal"]
    doc = {
        "broker": {"url": "amqp://guest:guest@127.0.0.1:1/%2F"},
        "ledger": {"url": f"sqlite:///{tmp_path / 'ledger.db'}"},
        "adapters": {"alpha": {"endpoint": "http://127.0.0.1:9/xta", "signing_key": str(key), "signing_cert": str(cert),
                               "author": {"identifier": "alp:000001"}, "options": {"mtom": "yes", "lookup_ttl": "10"}}},
        "authorities": [{"id": "azr:000100", "name": "ABH", "adapter": "alpha", "certificate": str(pki["azr-000100"][1])}],
    }
    config = tmp_path / "hub.toml"
    config.write_text(tomli_w.dumps(doc))
    result = CliRunner().invoke(main, ["--config", str(config), "worker", "alpha", "--http-port", "0"])
    assert result.exit_code == EXIT_CONFIG, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert "adapters.alpha.options.mtom: " in line and "adapters.alpha.options.lookup_ttl: " in line
    assert "cannot connect" not in result.output  # refused before any connection is tried
