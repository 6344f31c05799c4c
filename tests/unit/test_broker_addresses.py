"""Several broker nodes (``broker.urls``): the config keys, the shuffled order per connection, and
``connect`` trying every node before it gives up (tests/integration/test_broker_failover.py covers
the real thing)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pika
import pika.exceptions as px
import pytest

from hub.broker import connect, connection_parameters, redacted_addresses
from hub.config import BrokerConfig, parse_config
from hub.errors import BrokerAccessRefused, BrokerUnavailable, ConfigError

SECRET = "s3cret-pw"
NODES = tuple(f"amqp://hub:{SECRET}@mq{n}.example:5672/hub" for n in (1, 2, 3))


def _broker(raw: dict[str, Any], environ: dict[str, str] | None = None) -> BrokerConfig:
    return parse_config({"broker": raw}, base=Path("/etc/hub"), environ=environ or {}).broker


def test_urls_is_a_list_and_url_a_list_of_one() -> None:
    assert _broker({"urls": list(NODES)}).addresses == NODES
    assert _broker({"url": NODES[1]}).addresses == (NODES[1],)
    assert _broker({}).addresses == ("amqp://guest:guest@127.0.0.1:5672/%2F",)
    assert _broker({"urls": list(NODES)}).url == NODES[0]  # tools that talk to one node take the first


def test_amqp_url_may_hold_several_comma_separated_and_replaces_the_files_choice() -> None:
    env = {"AMQP_URL": f" {NODES[0]},{NODES[1]} , {NODES[2]}"}
    assert _broker({"url": "amqp://file/"}, env).addresses == NODES
    assert _broker({"urls": list(NODES)}, {"AMQP_URL": "amqp://one/"}).addresses == ("amqp://one/",)
    assert _broker({}, {"HUB_BROKER__URLS": ",".join(NODES[:2])}).addresses == NODES[:2]
    assert _broker({}, {"HUB_BROKER__URLS": f'["{NODES[2]}"]'}).addresses == (NODES[2],)


def test_a_comma_in_a_password_does_not_split_the_url() -> None:
    """Only a comma followed by the next URL's scheme separates: passwords may hold commas."""
    one = "amqp://hub:pa,ss@mq1.example:5672/hub"
    assert _broker({}, {"AMQP_URL": one}).addresses == (one,)
    two = "amqp://hub:pa,ss@mq2.example:5672/hub"
    assert _broker({}, {"AMQP_URL": f"{one}, {two}"}).addresses == (one, two)


def test_an_empty_list_never_means_localhost() -> None:
    with pytest.raises(ConfigError, match=r"broker: urls is empty"):
        _broker({"urls": []})
    with pytest.raises(ConfigError, match=r"broker\.url: must be an amqp:// or amqps:// URL"):
        _broker({}, {"AMQP_URL": " , "})  # not a URL: an error, not the default


@pytest.mark.parametrize(("raw", "expected"), [
    ({"url": NODES[0], "urls": [NODES[1]]}, r"^invalid configuration: broker: both url and urls are set"),
    ({"urls": [NODES[0], "amqp://other:pw@mq2.example:5672/hub"]}, r"same user, password and vhost"),
    ({"urls": [NODES[0], f"amqp://hub:{SECRET}@mq2.example:5672/other"]}, r"same user, password and vhost"),
    ({"urls": [NODES[0], "http://mq2.example/"]}, r"broker\.urls\[1\]: must be an amqp:// or amqps:// URL"),
    ({"url": "mq1.example:5672"}, r"broker\.url: must be an amqp:// or amqps:// URL"),
])
def test_config_errors_name_the_key(raw: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as caught:
        _broker(raw)
    assert "\n" not in str(caught.value) and SECRET not in str(caught.value)


def test_every_connection_gets_a_fresh_shuffled_order_with_the_settings() -> None:
    config = BrokerConfig(urls=NODES, heartbeat=7, blocked_connection_timeout=9.0)
    seen = set()
    for _ in range(300):  # 6 orders: the chance that one is missing is 6 * (5/6)**300, about 1e-23
        params = connection_parameters(config, "hub-worker-x")
        seen.add(tuple(p.host for p in params))
        assert sorted(p.host for p in params) == ["mq1.example", "mq2.example", "mq3.example"]
        assert all(p.heartbeat == 7 and p.blocked_connection_timeout == 9.0 for p in params)
        assert all(p.client_properties["connection_name"] == "hub-worker-x" for p in params)
    assert seen == set(itertools.permutations(["mq1.example", "mq2.example", "mq3.example"]))


class _Recorder:
    """Stands in for pika.BlockingConnection: records the node tried, fails as told."""

    def __init__(self, fail: dict[str, BaseException]) -> None:
        self.tried: list[str] = []
        self.fail = fail

    def __call__(self, params: Any) -> str:
        assert params.connection_attempts == 1  # the rounds over all nodes are counted by connect()
        self.tried.append(params.host)
        error = self.fail.get(params.host)
        if error is not None:
            raise error
        return f"connection to {params.host}"


def test_connect_tries_every_node_in_rounds_and_names_them_all(monkeypatch: pytest.MonkeyPatch) -> None:
    down = px.AMQPConnectionError("ConnectionRefusedError(111, 'Connection refused')")
    recorder = _Recorder({f"mq{n}.example": down for n in (1, 2, 3)})
    monkeypatch.setattr(pika, "BlockingConnection", recorder)
    config = BrokerConfig(urls=NODES, connection_attempts=2, retry_delay=0.0)
    with pytest.raises(BrokerUnavailable) as caught:
        connect(config, "test")
    assert sorted(recorder.tried) == sorted(["mq1.example", "mq2.example", "mq3.example"] * 2)
    assert len(set(recorder.tried[:3])) == 3  # a round tries each node once before the next round
    text = str(caught.value)
    assert all(f"amqp://hub:***@mq{n}.example:5672/hub" in text for n in (1, 2, 3)) and SECRET not in text


def test_connect_takes_the_first_node_that_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    down = px.AMQPConnectionError("ConnectionRefusedError(111, 'Connection refused')")
    recorder = _Recorder({"mq1.example": down, "mq2.example": down})
    monkeypatch.setattr(pika, "BlockingConnection", recorder)
    assert connect(BrokerConfig(urls=NODES, connection_attempts=1), "test") == "connection to mq3.example"
    assert recorder.tried[-1] == "mq3.example" and len(recorder.tried) <= 3


def test_a_refusal_ends_the_attempt_at_once_naming_that_node(monkeypatch: pytest.MonkeyPatch) -> None:
    login = px.ProbableAuthenticationError(
        "ConnectionClosedByBroker: (403) 'ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN.'")
    recorder = _Recorder({f"mq{n}.example": login for n in (1, 2, 3)})
    monkeypatch.setattr(pika, "BlockingConnection", recorder)
    with pytest.raises(BrokerAccessRefused) as caught:
        connect(BrokerConfig(urls=NODES, connection_attempts=3, retry_delay=0.0), "test")
    assert len(recorder.tried) == 1
    assert str(caught.value).startswith(f"RabbitMQ at {recorder.tried[0]}:5672 refused the login of user 'hub'")


def test_redacted_addresses() -> None:
    assert redacted_addresses(BrokerConfig(url=NODES[0])) == "amqp://hub:***@mq1.example:5672/hub"
    assert redacted_addresses(BrokerConfig(urls=NODES[:2])) == (
        "any of amqp://hub:***@mq1.example:5672/hub, amqp://hub:***@mq2.example:5672/hub")


def test_management_api_addresses_follow_the_nodes_unless_configured() -> None:
    from hub.management import ManagementApi

    assert _broker({"urls": list(NODES)}).management_addresses == (
        "http://mq1.example:15672", "http://mq2.example:15672", "http://mq3.example:15672")
    assert _broker({"url": "amqps://hub:pw@mq.example:5671/hub"}).management_addresses == (
        "https://mq.example:15671",)
    configured = _broker({"urls": list(NODES), "management_urls": ["https://mq-admin.example/rabbit/"]})
    assert configured.management_addresses == ("https://mq-admin.example/rabbit",)
    api = ManagementApi.from_config(_broker({"url": "amqp://hub:p%40ss@mq1.example:5672/a%2Fb"}))
    assert api.vhost == "a/b" and api._session.auth == ("hub", "p@ss")
    assert ManagementApi.from_config(_broker({})).vhost == "/"
    with pytest.raises(ConfigError, match="broker.management_urls"):
        _broker({"management_urls": ["mq1.example:15672"]})
    with pytest.raises(ConfigError, match="no user or password in the URL") as refused:
        _broker({"management_urls": [f"http://hub:{SECRET}@mq1.example:15672"]})
    assert SECRET not in str(refused.value)
    # a node on another AMQP port gets no guessed API (it could be another broker's)
    assert _broker({"url": "amqp://hub:pw@mq.example:5673/hub"}).management_addresses == ()
