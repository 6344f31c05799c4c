"""RabbitMQ's management HTTP API: what AMQP cannot do (policies, a queue's arguments).

Queue policies are set here because ``rabbitmqctl set_policy`` is not a library call. Every
node of a cluster serves the same API; a node that does not answer costs one attempt before the
next is tried (in a shuffled order, like ``hub.broker``). The credentials are the AMQP user's: it
needs the ``policymaker`` tag (or ``administrator``) to set policies and at least ``management``
to read queues.

Failures by whose fault they are: 401/403 is the configuration's (``BrokerAccessRefused``: fix the
user's tags); no node answering is ``BrokerUnavailable`` (transient); a 400 on a policy the hub
built is a bug or an unsupported broker version, reported with the broker's words
(``ConfigError``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import quote, unquote, urlsplit

import requests

from hub.config import BrokerConfig
from hub.errors import BrokerAccessRefused, BrokerUnavailable, ConfigError

_ORDER = random.SystemRandom()
TIMEOUT = 5.0  # seconds per call and node (the operator's apply)
WORKER_TIMEOUT = 2.0  # a reconnecting worker's: during a partition the majority's API can take 15-20 s


@dataclass(frozen=True)
class QueueState:
    """What the broker says about one queue (the fields the topology needs)."""

    name: str
    type: str
    arguments: dict[str, Any]
    consumers: int
    messages: int
    policy: str | None


@dataclass(frozen=True)
class Policy:
    name: str
    pattern: str
    apply_to: str
    priority: int
    definition: dict[str, Any]


class ManagementApi:
    """The management API of one vhost, over every configured node."""

    def __init__(self, bases: tuple[str, ...], user: str, password: str, vhost: str,
                 *, timeout: float = TIMEOUT) -> None:
        if not bases:
            raise ConfigError("broker.management_urls: not set, and no broker address uses the AMQP default port "
                              "from which the management API's address (port 15672) could be guessed")
        self.bases = bases
        self.user = user
        self.vhost = vhost
        self.timeout = timeout
        self._session = requests.Session()
        self._session.auth = (user, password)

    @classmethod
    def from_config(cls, config: BrokerConfig, *, timeout: float = TIMEOUT) -> ManagementApi:
        """The API of the broker the AMQP URLs name, with their user and vhost."""
        parts = urlsplit(config.url)
        vhost = parts.path[1:] if parts.path not in ("", "/") else "/"
        return cls(config.management_addresses, unquote(parts.username or "guest"),
                   unquote(parts.password or "guest"), unquote(vhost), timeout=timeout)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- calls --------------------------------------------------------------------------------

    def _call(self, method: str, path: str, json: Any = None) -> requests.Response:
        bases = list(self.bases)
        _ORDER.shuffle(bases)
        failures: list[str] = []
        for base in bases:
            try:
                answer = self._session.request(method, f"{base}/api{path}", json=json, timeout=self.timeout)
            except requests.RequestException as exc:
                failures.append(f"{base}: {type(exc).__name__}")
                continue
            if answer.status_code in (401, 403):
                raise BrokerAccessRefused(
                    f"the management API at {base} refused user '{self.user}' on vhost '{self.vhost}' "
                    f"({answer.status_code} for {method} {path.split('?')[0]}): the user needs the 'policymaker' "
                    "(or 'administrator') tag and permissions on the vhost")
            if answer.status_code >= 500:
                failures.append(f"{base}: HTTP {answer.status_code}")
                continue
            return answer
        raise BrokerUnavailable("no management API answered (" + "; ".join(failures) + "): is the "
                                "rabbitmq_management plugin enabled (broker.management_urls)?")

    def _vhost(self) -> str:
        return quote(self.vhost, safe="")

    def cluster_name(self) -> str | None:
        """The name of the cluster this API belongs to (to check it is the AMQP connection's)."""
        answer = self._call("GET", "/overview?columns=cluster_name")
        try:
            body = answer.json()
        except ValueError:
            return None
        name = body.get("cluster_name") if isinstance(body, dict) else None
        return str(name) if name else None

    def queues(self, prefix: str = "") -> dict[str, QueueState]:
        """Every queue of the vhost whose name starts with ``prefix``."""
        answer = self._call("GET", f"/queues/{self._vhost()}?columns=name,type,arguments,consumers,messages,policy")
        if answer.status_code == 404:
            raise ConfigError(f"the vhost '{self.vhost}' does not exist on the broker")
        out: dict[str, QueueState] = {}
        for q in _json_list(answer):
            name = str(q.get("name", ""))
            if name.startswith(prefix):
                out[name] = QueueState(name, str(q.get("type", "classic")), dict(q.get("arguments") or {}),
                                       int(q.get("consumers") or 0), int(q.get("messages") or 0),
                                       q.get("policy") or None)
        return out

    def policies(self) -> dict[str, Policy]:
        answer = self._call("GET", f"/policies/{self._vhost()}")
        if answer.status_code == 404:
            raise ConfigError(f"the vhost '{self.vhost}' does not exist on the broker")
        return {
            str(p["name"]): Policy(str(p["name"]), str(p.get("pattern", "")), str(p.get("apply-to", "all")),
                                   int(p.get("priority", 0)), dict(p.get("definition") or {}))
            for p in _json_list(answer)
        }

    def put_policy(self, policy: Policy) -> None:
        body = {"pattern": policy.pattern, "apply-to": policy.apply_to, "priority": policy.priority,
                "definition": policy.definition}
        answer = self._call("PUT", f"/policies/{self._vhost()}/{quote(policy.name, safe='')}", json=body)
        if answer.status_code not in (200, 201, 204):
            raise ConfigError(f"the broker refused the policy {policy.name} ({answer.status_code}): "
                              f"{_reason(answer)}")

    def delete_policy(self, name: str) -> None:
        answer = self._call("DELETE", f"/policies/{self._vhost()}/{quote(name, safe='')}")
        if answer.status_code not in (200, 204, 404):
            raise ConfigError(f"the broker refused to delete the policy {name} ({answer.status_code}): "
                              f"{_reason(answer)}")


def _json_list(answer: requests.Response) -> list[dict[str, Any]]:
    try:
        body = answer.json()
    except ValueError:
        raise BrokerUnavailable(f"the management API answered {answer.status_code} without JSON") from None
    if not isinstance(body, list):
        raise BrokerUnavailable("the management API answered something other than a list")
    return [item for item in body if isinstance(item, dict)]


def _reason(answer: requests.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:200]
    return str(body.get("reason", body))[:300] if isinstance(body, dict) else str(body)[:300]
