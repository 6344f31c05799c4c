"""Connecting to RabbitMQ with the settings every hub process needs.

pika does not reconnect by itself and waits forever on a blocked broker unless told otherwise:
every connection here sets a heartbeat and ``blocked_connection_timeout`` (pitfall 2), and
connection failures become ``BrokerUnavailable`` with a hint on what to do. A broker that answers
but refuses the login, the vhost or an operation (403 ACCESS_REFUSED, 530 NOT_ALLOWED) is a
configuration error, ``BrokerAccessRefused``: retrying cannot help and "start RabbitMQ" would mislead.

Several nodes (``broker.urls``): every connection tries them in a fresh random order, so that
clients spread over the cluster instead of all crowding the first node, and a node that is down
costs one refused connect before the next is tried.
"""

from __future__ import annotations

import random
import re
import time

import pika
import pika.connection
import pika.exceptions

from hub.config import BrokerConfig
from hub.errors import BrokerAccessRefused, BrokerError, BrokerUnavailable, ConfigError

_ORDER = random.SystemRandom()  # not the process's seeded generator: forked workers must not agree


def node_parameters(url: str, config: BrokerConfig, client_name: str) -> pika.URLParameters:
    """One node's parameters with the configured heartbeat, timeouts and the client's name."""
    params = pika.URLParameters(url)
    params.heartbeat = config.heartbeat
    params.blocked_connection_timeout = config.blocked_connection_timeout
    params.connection_attempts = config.connection_attempts
    params.retry_delay = config.retry_delay
    params.client_properties = {"connection_name": client_name, "product": "xoev-hub"}
    return params


def shuffled_addresses(config: BrokerConfig) -> list[str]:
    """Every configured node's URL in a fresh random order: clients spread over the nodes."""
    urls = list(config.addresses)
    _ORDER.shuffle(urls)
    return urls


def connection_parameters(config: BrokerConfig, client_name: str) -> list[pika.URLParameters]:
    """The parameters of every configured node, shuffled anew on each call (with one node, a
    list of one)."""
    return [node_parameters(url, config, client_name) for url in shuffled_addresses(config)]


def node_address(params: pika.connection.Parameters) -> str:
    """``host:port`` of one node, as messages name it."""
    return f"{params.host}:{params.port}"


def redacted_url(url: str) -> str:
    """The broker URL without its password, for messages and logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def redacted_addresses(config: BrokerConfig) -> str:
    """Every configured node's URL without its password: "amqp://u:***@a:5672/v" or, for several,
    "any of amqp://..., amqp://..."."""
    urls = [redacted_url(url) for url in config.addresses]
    return urls[0] if len(urls) == 1 else "any of " + ", ".join(urls)


def broker_hosts(config: BrokerConfig) -> str:
    """``host:port/vhost`` of every configured node, comma-separated (what the demo prints)."""
    return ", ".join(url.rsplit("@", 1)[-1].split("://", 1)[-1] for url in config.addresses)


def broker_identity(config: BrokerConfig, node: pika.connection.Parameters | None = None) -> tuple[str, str, str]:
    """(user, vhost, host:port) of ``node`` (default: the first configured one): what a refusal
    names (never the password)."""
    params = node if node is not None else pika.URLParameters(config.url)
    return str(getattr(params.credentials, "username", "?")), str(params.virtual_host), node_address(params)


def _where(config: BrokerConfig, node: pika.connection.Parameters | None) -> str:
    """The node a message is about: ``node``, the only one, or "one of" all of them."""
    if node is not None or len(config.addresses) == 1:
        return broker_identity(config, node)[2]
    return "one of " + ", ".join(node_address(pika.URLParameters(url)) for url in config.addresses)


# "ConnectionClosedByBroker: (403) 'ACCESS_REFUSED - Login was refused ...'" inside pika's error texts
_BROKER_REPLY = re.compile(r"\((\d{3})\) (['\"])(.{1,300}?)\2")


def _reply(exc: BaseException) -> str:
    """The broker's own reply text (it names user and vhost, never a password), else pika's class name."""
    text = getattr(exc, "reply_text", None)
    if isinstance(text, str) and text:
        return text[:300]
    found = _BROKER_REPLY.search(str(exc))
    return found.group(3) if found else (str(exc)[:300] or type(exc).__name__)


# pika's Probable*Error wraps the repr of whatever ended the handshake: the broker's close
# ("ConnectionClosedByBroker: (403) '...'") or a lost stream ("StreamLostError: (...)").
_WRAPPED_CLOSE = re.compile(r"^(?:Connection|Channel)ClosedByBroker: " + _BROKER_REPLY.pattern)
_REFUSAL_CODES = (403, 530)  # ACCESS_REFUSED, NOT_ALLOWED


def _reply_code(exc: BaseException) -> int | None:
    """The AMQP reply code the broker answered with, if it answered at all (else None)."""
    code = getattr(exc, "reply_code", None)
    if isinstance(code, int):
        return code
    found = _WRAPPED_CLOSE.match(str(exc))
    return int(found.group(1)) if found else None


def access_refused(exc: BaseException, config: BrokerConfig, *,
                   node: pika.connection.Parameters | None = None) -> BrokerAccessRefused | None:
    """The refusal ``exc`` stands for, if the broker (``node``, default the first configured one)
    answered and said no; None for anything else (connection refused, lost, timed out: an outage,
    not a configuration error)."""
    if isinstance(exc, BrokerAccessRefused):
        return exc
    if _reply(exc).endswith("is down"):  # "NOT_ALLOWED - vhost x is down": the broker is (re)starting it
        return None
    user, vhost, address = broker_identity(config, node)
    # pika guesses "probable" refusals from the handshake stage alone, so a stream lost or a
    # 320 CONNECTION_FORCED (a node shutting down) looks the same: only the broker's 403/530 is a "no".
    # AuthenticationError proper (no common mechanism) is a refusal without a reply code.
    answered_no = _reply_code(exc) in _REFUSAL_CODES
    probable = (pika.exceptions.ProbableAuthenticationError, pika.exceptions.ProbableAccessDeniedError)
    if isinstance(exc, probable) and not answered_no:
        return None
    if isinstance(exc, pika.exceptions.ProbableAuthenticationError | pika.exceptions.AuthenticationError):
        return BrokerAccessRefused(
            f"RabbitMQ at {address} refused the login of user '{user}' to vhost '{vhost}' ({_reply(exc)}): "
            "wrong user name or password in broker.url / broker.urls / AMQP_URL")
    if isinstance(exc, pika.exceptions.ProbableAccessDeniedError):
        return BrokerAccessRefused(
            f"RabbitMQ at {address} refused user '{user}' access to vhost '{vhost}' ({_reply(exc)}): the vhost "
            "does not exist or the user has no permissions on it (rabbitmqctl add_vhost / set_permissions)")
    closed = (pika.exceptions.ChannelClosedByBroker, pika.exceptions.ConnectionClosedByBroker)
    if isinstance(exc, closed) and answered_no:
        return BrokerAccessRefused(
            f"RabbitMQ at {address} refused user '{user}' on vhost '{vhost}' ({_reply(exc)}): grant the "
            "user's permissions (rabbitmqctl set_permissions)")
    return None


def broker_failure(exc: BaseException, config: BrokerConfig, *, connecting: bool = False,
                   node: pika.connection.Parameters | None = None) -> BrokerError | ConfigError:
    """Translate a pika/socket error into the hub's tree: a refusal (configuration), an outage
    (``BrokerUnavailable``, with the start-RabbitMQ hint only while ``connecting``) or another
    refused operation (``BrokerError``, e.g. 404 NOT_FOUND of a queue nobody declared). ``node``:
    the node the error came from, when known."""
    refused = access_refused(exc, config, node=node)
    if refused is not None:
        return refused
    if isinstance(exc, pika.exceptions.ChannelClosedByBroker):
        return BrokerError(f"RabbitMQ refused the operation ({exc.reply_code}: {_reply(exc)})")
    if connecting:
        return BrokerUnavailable(
            f"cannot connect to RabbitMQ at {redacted_addresses(config)} ({str(exc) or 'connection refused'}). "
            "Start it (e.g. `rabbitmq-server -detached`) or point the hub at a running broker "
            "with AMQP_URL=amqp://user:pass@host:5672/vhost")
    return BrokerUnavailable(f"connection to RabbitMQ at {_where(config, node)} lost "
                             f"({type(exc).__name__}: {_reply(exc)})")


# rabbit_channel:check_msg_size: "message size N is larger than configured max size M" (N: body bytes)
_TOO_LARGE = re.compile(r"message size (\d+) is larger than (?:configured )?max size (\d+)")


def publish_refused(exc: BaseException, config: BrokerConfig, *,
                    node: pika.connection.Parameters | None = None) -> BrokerError | ConfigError | None:
    """Why the broker closed a publishing channel, if publishing the same message again cannot help:
    a refusal (403/530, configuration) or 406 PRECONDITION_FAILED (``BrokerError``, exit 1), most
    often a body above the broker's ``max_message_size``. None: an outage, worth a retry."""
    refused = access_refused(exc, config, node=node)
    if refused is not None:
        return refused
    if not isinstance(exc, pika.exceptions.ChannelClosedByBroker) or exc.reply_code != 406:
        return None
    if refused_body_size(exc) is not None:
        return BrokerError(
            f"RabbitMQ refused the message ({exc.reply_code}: {_reply(exc)}): it is larger than the broker's "
            "max_message_size (16 MiB by default on RabbitMQ 4.x): raise max_message_size in rabbitmq.conf "
            "or lower limits.max_content_bytes (docs/configuration.md)", reason="publish_refused")
    return BrokerError(
        f"RabbitMQ refused the message ({exc.reply_code}: {_reply(exc)}): a precondition failed, e.g. the "
        "broker's max_message_size or a message property it does not accept", reason="publish_refused")


def refused_body_size(exc: BaseException) -> int | None:
    """The body size (bytes) a 406 "message size ... is larger than ... max size" names, else None."""
    found = _TOO_LARGE.search(_reply(exc))
    return int(found.group(1)) if found else None


def connect(config: BrokerConfig, client_name: str) -> pika.BlockingConnection:
    """Open a blocking connection to the first node that takes it, trying every configured node in
    a shuffled order, ``connection_attempts`` rounds ``retry_delay`` apart. Raises
    ``BrokerAccessRefused`` as soon as a node refuses (users and vhosts are cluster-wide: another
    node would refuse too), else ``BrokerUnavailable`` naming every node tried (never a password)."""
    nodes = connection_parameters(config, client_name)
    last: BaseException | None = None
    for round_ in range(config.connection_attempts):
        if round_:
            time.sleep(config.retry_delay)
        for node in nodes:
            node.connection_attempts = 1  # the rounds are counted here, over all nodes
            try:
                return pika.BlockingConnection(node)
            except (pika.exceptions.AMQPError, OSError) as exc:
                refused = access_refused(exc, config, node=node)
                if refused is not None:
                    raise refused from None
                last = exc
    assert last is not None  # connection_attempts >= 1 and at least one node
    raise broker_failure(last, config, connecting=True) from None


def connected_node(connection: pika.BlockingConnection) -> str:
    """``host:port`` of the node a blocking connection went to (logs, tests of the failover)."""
    return node_address(connection._impl.params)
