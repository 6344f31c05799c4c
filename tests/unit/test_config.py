from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.xta2 import xta2_settings
from hub.config import load_config, parse_config
from hub.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "demo.toml"


def _minimal() -> dict[str, Any]:
    return {
        "adapters": {"advis": {"endpoint": "http://127.0.0.1:1/xta", "signing_key": "k.pem",
                               "author": {"identifier": "alp:1"}}},
        "authorities": [{"id": "azr:000100", "name": "ABH", "adapter": "advis", "certificate": "c.pem"}],
    }


def test_example_config_loads_and_resolves_paths() -> None:
    config = load_config(EXAMPLE, environ={})
    assert set(config.adapters) == {"advis", "auso", "fitconnect"}  # two XTA servers, one FIT-Connect route
    assert len(config.authorities) == 5
    assert config.source is not None  # the profile resolves its paths against the config's folder
    advis = xta2_settings(config.adapters["advis"].section, config.source.parent, "adapters.advis")
    assert advis.signing_key == (ROOT / "var/demo/pki/portal.key.pem").resolve()
    assert str(config.message_types[0].schema_path).startswith("builtin:")


def test_environment_overrides() -> None:
    env = {"AMQP_URL": "amqp://u:p@broker:5672/v", "HUB_BROKER__PREFETCH": "64",
           "HUB_ADAPTERS__ADVIS__ENDPOINT": "https://xta.example/xta"}
    config = load_config(EXAMPLE, environ=env)
    assert config.broker.url == "amqp://u:p@broker:5672/v"
    assert config.broker.prefetch == 64
    assert config.adapters["advis"].section["endpoint"] == "https://xta.example/xta"


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda c: c["authorities"][0].update(adapter="nope"), r"authorities\[0\]\.adapter: 'nope' is not a configured adapter"),
    (lambda c: c["authorities"][0].update(id="000100"), r"authorities\[0\]\.id: must be a DVDV Behördenkennung"),
    (lambda c: c["adapters"]["advis"].update(endpoint="ftp://x"), r"adapters\.advis\.endpoint: must be an http"),
    (lambda c: c["adapters"]["advis"].update(concurrency=0), r"adapters\.advis\.concurrency"),
    (lambda c: c.update(brokr={}), r"brokr: Extra inputs are not permitted"),
    (lambda c: c["adapters"]["advis"].pop("author"), r"adapters\.advis\.author: Field required"),
    (lambda c: c["authorities"].append(dict(c["authorities"][0])), r"'azr:000100' is listed twice"),
])
def test_errors_name_the_bad_key(mutate, expected) -> None:
    raw = _minimal()
    mutate(raw)
    with pytest.raises(ConfigError, match=expected):
        parse_config(raw, base=Path("/etc/hub"), environ={})


def test_env_override_is_validated_too() -> None:
    with pytest.raises(ConfigError, match=r"broker\.prefetch"):
        parse_config(_minimal(), base=Path("/"), environ={"HUB_BROKER__PREFETCH": "lots"})


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[broker\nurl=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
