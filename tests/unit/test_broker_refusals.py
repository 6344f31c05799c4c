"""Every pika failure maps to the hub's tree: a refusal (the broker answered "no") is a
configuration error naming user, vhost and host:port; an outage is ``BrokerUnavailable``; the
password appears nowhere. The texts are pika's own, as the real broker produces them
(tests/integration/test_broker_access.py covers the real thing)."""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from types import SimpleNamespace

import pika.exceptions as px
import pytest

from hub.broker import access_refused, broker_failure, publish_refused, refused_body_size
from hub.cli_support import EXIT_BROKER, EXIT_CONFIG, EXIT_FAILED, exit_code
from hub.config import BrokerConfig
from hub.errors import BrokerAccessRefused, BrokerError, BrokerUnavailable
from hub.publisher import ConfirmingPublisher, _Pending

SECRET = "s3cret-pw"
CONFIG = BrokerConfig(url=f"amqp://portal:{SECRET}@mq.example:5672/hub")
LOGIN = "ConnectionClosedByBroker: (403) 'ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.'"
NO_VHOST = "ConnectionClosedByBroker: (530) 'NOT_ALLOWED - vhost hub not found'"
NO_ACCESS = """ConnectionClosedByBroker: (530) "NOT_ALLOWED - access to vhost 'hub' refused for user 'portal'\""""
VHOST_DOWN = "ConnectionClosedByBroker: (530) 'NOT_ALLOWED - vhost hub is down'"

REFUSALS = [
    (px.ProbableAuthenticationError(LOGIN), "refused the login of user 'portal' to vhost 'hub'", "ACCESS_REFUSED - Login was refused"),
    (px.AuthenticationError("PLAIN"), "refused the login of user 'portal' to vhost 'hub'", "PLAIN"),
    (px.ProbableAccessDeniedError(NO_VHOST), "refused user 'portal' access to vhost 'hub'", "NOT_ALLOWED - vhost hub not found"),
    (px.ProbableAccessDeniedError(NO_ACCESS), "refused user 'portal' access to vhost 'hub'",
     "NOT_ALLOWED - access to vhost 'hub' refused for user 'portal')"),
    (px.ChannelClosedByBroker(403, "ACCESS_REFUSED - access to exchange 'hub.inbound' in vhost 'hub' refused for user 'portal'"),
     "refused user 'portal' on vhost 'hub'", "access to exchange 'hub.inbound'"),
    (px.ConnectionClosedByBroker(530, "NOT_ALLOWED - access to vhost 'hub' refused for user 'portal'"),
     "refused user 'portal' on vhost 'hub'", "NOT_ALLOWED"),
]
OUTAGES = [
    px.AMQPConnectionError("AMQPConnectionWorkflowFailed: 3 exceptions in all; last exception - ConnectionRefusedError(111)"),
    px.StreamLostError("Transport indicated EOF"),
    px.ConnectionClosedByBroker(320, "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"),
    px.ProbableAccessDeniedError(VHOST_DOWN),  # the broker is (re)starting the vhost
    px.AMQPHeartbeatTimeout("No activity or too many missed heartbeats in the last 60 seconds"),
    ConnectionResetError(104, "Connection reset by peer"),
    # pika calls any stream end during the handshake a "probable" refusal: these are outages (a TCP
    # reset, a load balancer, a node shutting down in a rolling restart), as pika builds them
    px.ProbableAuthenticationError(repr(px.StreamLostError("Transport indicated EOF"))),
    px.ProbableAccessDeniedError(repr(px.StreamLostError("Transport indicated EOF"))),
    px.ProbableAccessDeniedError(repr(px.ConnectionClosedByBroker(320, "CONNECTION_FORCED - shutdown"))),
    px.ProbableAuthenticationError(repr(px.ConnectionClosedByBroker(
        320, "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"))),
    px.ProbableAuthenticationError(repr(px.StreamLostError(
        "Stream connection lost: ConnectionResetError(104, 'Connection reset by peer')"))),
]


@pytest.mark.parametrize(("error", "what", "reply"), REFUSALS)
def test_refusals_are_configuration_errors_naming_user_vhost_and_address(error: Exception, what: str, reply: str) -> None:
    refused = access_refused(error, CONFIG)
    assert isinstance(refused, BrokerAccessRefused)
    text = str(refused)
    assert text.startswith(f"RabbitMQ at mq.example:5672 {what}"), text
    assert reply in text
    assert SECRET not in text and "Start it" not in text and "rabbitmq-server" not in text
    for connecting in (True, False):
        assert broker_failure(error, CONFIG, connecting=connecting) is not None
        assert exit_code(broker_failure(error, CONFIG, connecting=connecting)) == EXIT_CONFIG


@pytest.mark.parametrize("error", OUTAGES)
def test_outages_are_broker_unavailable(error: Exception) -> None:
    assert access_refused(error, CONFIG) is None
    at_start = broker_failure(error, CONFIG, connecting=True)
    assert isinstance(at_start, BrokerUnavailable) and exit_code(at_start) == EXIT_BROKER
    assert "rabbitmq-server -detached" in str(at_start)  # down at connect: say how to start it
    later = broker_failure(error, CONFIG)
    assert isinstance(later, BrokerUnavailable) and "lost" in str(later)
    assert SECRET not in str(at_start) + str(later)


@pytest.mark.parametrize(("code", "text"), [(404, "NOT_FOUND - no queue 'hub.dead' in vhost 'hub'"),
                                            (406, "PRECONDITION_FAILED - inequivalent arg 'x-queue-type'")])
def test_other_refused_operations_are_failures(code: int, text: str) -> None:
    error = broker_failure(px.ChannelClosedByBroker(code, text), CONFIG)
    assert type(error) is BrokerError and exit_code(error) == EXIT_FAILED
    assert text in str(error)


TOO_LARGE = "PRECONDITION_FAILED - message size 17825792 is larger than configured max size 16777216"


def test_a_message_above_max_message_size_is_a_failure_naming_the_cause_not_an_outage() -> None:
    """RabbitMQ 4.x refuses bodies above 16 MiB by closing the channel with 406: exit 1, not 3."""
    error = publish_refused(px.ChannelClosedByBroker(406, TOO_LARGE), CONFIG)
    assert type(error) is BrokerError and exit_code(error) == EXIT_FAILED
    assert "max_message_size" in str(error) and "17825792" in str(error) and "Start it" not in str(error)
    assert refused_body_size(px.ChannelClosedByBroker(406, TOO_LARGE)) == 17825792


def test_another_406_on_publish_is_a_failure_naming_a_precondition() -> None:
    error = publish_refused(px.ChannelClosedByBroker(
        406, "PRECONDITION_FAILED - user_id property set to 'x' but authenticated user was 'portal'"), CONFIG)
    assert type(error) is BrokerError and exit_code(error) == EXIT_FAILED and "precondition" in str(error)
    assert refused_body_size(px.ChannelClosedByBroker(406, "PRECONDITION_FAILED - x")) is None


@pytest.mark.parametrize("error", OUTAGES)
def test_outages_on_publish_are_retried(error: Exception) -> None:
    assert publish_refused(error, CONFIG) is None


def test_a_size_refusal_fails_only_the_message_of_that_size() -> None:
    """The rest of the window was lost with the channel, not refused: it fails as an outage, which
    ResilientPublisher retries."""
    publisher = ConfirmingPublisher.__new__(ConfirmingPublisher)  # the channel-close path only, no broker
    publisher._config, publisher._window = CONFIG, threading.BoundedSemaphore(2)
    publisher._connection = SimpleNamespace(is_closed=True, is_closing=False)
    publisher._stream, publisher._held = None, deque()
    big, small = (_Pending(Future(), f"m-{n}", "azr:000100", body_size=n) for n in (17825792, 1000))
    publisher._pending = {1: big, 2: small}
    publisher._window.acquire()
    publisher._window.acquire()
    publisher._on_channel_closed(None, px.ChannelClosedByBroker(406, TOO_LARGE))
    assert type(big.future.exception()) is BrokerError and "max_message_size" in str(big.future.exception())
    assert isinstance(small.future.exception(), BrokerUnavailable)
    assert publisher._pending == {} and publisher._window.acquire(blocking=False)  # window released
