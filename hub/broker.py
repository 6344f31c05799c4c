"""Connecting to RabbitMQ with the settings every hub process needs.

pika does not reconnect by itself and waits forever on a blocked broker unless told otherwise:
every connection here sets a heartbeat and ``blocked_connection_timeout`` (pitfall 2), and
connection failures become ``BrokerUnavailable`` with a hint on what to do.
"""

from __future__ import annotations

import pika
import pika.exceptions

from hub.config import BrokerConfig
from hub.errors import BrokerUnavailable


def connection_parameters(config: BrokerConfig, client_name: str) -> pika.URLParameters:
    params = pika.URLParameters(config.url)
    params.heartbeat = config.heartbeat
    params.blocked_connection_timeout = config.blocked_connection_timeout
    params.connection_attempts = config.connection_attempts
    params.retry_delay = config.retry_delay
    params.client_properties = {"connection_name": client_name, "product": "xoev-hub"}
    return params


def redacted_url(url: str) -> str:
    """The broker URL without its password, for messages and logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def connect(config: BrokerConfig, client_name: str) -> pika.BlockingConnection:
    """Open a blocking connection or raise BrokerUnavailable saying how to fix it."""
    try:
        return pika.BlockingConnection(connection_parameters(config, client_name))
    except (pika.exceptions.AMQPError, OSError) as exc:
        raise BrokerUnavailable(
            f"cannot connect to RabbitMQ at {redacted_url(config.url)} ({str(exc) or 'connection refused'}). "
            "Start it (e.g. `rabbitmq-server -detached`) or point the hub at a running broker "
            "with AMQP_URL=amqp://user:pass@host:5672/vhost"
        ) from None
