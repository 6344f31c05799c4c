"""Configuration: one TOML file plus environment overrides, validated once at start-up.

Environment overrides: ``AMQP_URL`` sets ``broker.url`` (several URLs, comma-separated: ``broker.urls``), ``HUB_LOG_FORMAT`` sets ``log_format``;
any ``HUB_<SECTION>__<KEY>`` (double underscore between levels, case-insensitive) sets that key,
e.g. ``HUB_BROKER__PREFETCH=64`` or ``HUB_ADAPTERS__ADVIS__ENDPOINT=https://...``. Relative file
paths are resolved against the folder of the config file. Errors name the offending key (``adapters.advis.endpoint: ...``).

Types are strict (``adapters/settings.py``): ``prefetch = "64"`` in the file is an error. Override
values are text by nature and are converted to the key's type as pydantic's lax mode does ("64",
"true", ".5"), at any depth; values of profile options, whose types only the profile knows, stay
``EnvText`` until the profile's options model converts them by its own types.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from adapters.settings import EnvText, StrictSettings
from hub.errors import ConfigError

DESTINATION_PATTERN = re.compile(r"^[a-z0-9]{2,10}:[A-Za-z0-9_\-]{1,64}$")
ADAPTER_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_\-]{0,40}$")
PORTAL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


EndpointUrl = Annotated[str, AfterValidator(_http_url)]  # an XTA endpoint (adapters, mailboxes)


class _Strict(StrictSettings):
    """A config section: strict types; environment overrides (``EnvText``) are converted by the
    type of the key they set, at any depth, by ``StrictSettings`` itself."""


def _amqp_url(value: str) -> str:
    if not value.startswith(("amqp://", "amqps://")):
        raise ValueError("must be an amqp:// or amqps:// URL")
    return value


AmqpUrl = Annotated[str, AfterValidator(_amqp_url)]
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


class BrokerConfig(_Strict):
    """``url`` (one node) or ``urls`` (several nodes of a cluster, tried in a shuffled order per
    connection so that clients spread over the nodes); ``addresses`` is the list either way."""

    single_url: AmqpUrl | None = Field(None, alias="url", description="one broker node")
    urls: tuple[AmqpUrl, ...] | None = Field(None, description="several nodes of one cluster")
    heartbeat: int = Field(30, ge=1, le=600, description="AMQP heartbeat (seconds)")
    blocked_connection_timeout: float = Field(60.0, gt=0)
    prefetch: int = Field(32, ge=1, le=10_000)
    confirm_window: int = Field(256, ge=1, le=100_000)
    connection_attempts: int = Field(3, ge=1)
    retry_delay: float = Field(1.0, ge=0)
    management_urls: tuple[EndpointUrl, ...] | None = Field(
        None, description="base URLs of the nodes' management HTTP API (queue policies, hub/management.py); "
        "default: http://<host>:15672 of every broker address on port 5672 (https://<host>:15671 for "
        "amqps on 5671); set it when the nodes use other ports")

    @classmethod
    def settings_value(cls, field: FieldInfo, value: Any) -> Any:
        """``HUB_BROKER__URLS=amqp://a,amqp://b``: comma-separated, like ``AMQP_URL``."""
        if field is cls.model_fields["urls"] and isinstance(value, EnvText) and not value.lstrip().startswith("["):
            return split_urls(value)
        return super().settings_value(field, value)

    @model_validator(mode="after")
    def _one_way_to_name_the_nodes(self) -> BrokerConfig:
        if self.single_url is not None and self.urls is not None:
            raise ValueError("both url and urls are set: keep one (urls lists several nodes of a cluster)")
        if self.urls is not None and not self.urls:  # a template's empty list must not mean localhost
            raise ValueError("urls is empty: list every node of the cluster (or set url)")
        if any("@" in urlsplit(u).netloc for u in self.management_urls or ()):
            # (it would show in messages; the API is called with the AMQP user's credentials)
            raise ValueError("management_urls: no user or password in the URL (the AMQP user's are used)")
        if self.urls is not None and len({_login(u) for u in self.urls}) > 1:
            # users and vhosts are cluster-wide: a node with other credentials would refuse at random
            raise ValueError("urls: every node must be given with the same user, password and vhost")
        return self

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every configured node's URL, in the configured order (``hub.broker`` shuffles them)."""
        if self.urls:
            return self.urls
        return (self.single_url if self.single_url is not None else DEFAULT_BROKER_URL,)

    @property
    def url(self) -> str:
        """The first address: for tools that talk to one node (tests, management calls)."""
        return self.addresses[0]

    @property
    def management_addresses(self) -> tuple[str, ...]:
        """The management API of every node: ``management_urls``, or one per broker address on the
        AMQP default port (the plugin's default port there; the credentials are the AMQP ones).
        A node on another AMQP port gets no guess: its API could be another broker's."""
        if self.management_urls:
            return tuple(u.rstrip("/") for u in self.management_urls)
        derived: dict[str, None] = {}
        for address in self.addresses:
            parts = urlsplit(address)
            tls = parts.scheme == "amqps"
            if parts.port not in (None, 5671 if tls else 5672):
                continue
            host = parts.hostname or "127.0.0.1"
            host = f"[{host}]" if ":" in host else host
            derived[f"https://{host}:15671" if tls else f"http://{host}:15672"] = None
        return tuple(derived)


def split_urls(text: str) -> tuple[str, ...]:
    """``AMQP_URL``'s comma-separated list. A comma separates URLs only where the next one begins
    (``amqp://`` or ``amqps://``): a password may hold a comma of its own."""
    return tuple(part.strip() for part in re.split(r",\s*(?=amqps?://)", text.strip()) if part.strip())


def _login(url: str) -> tuple[str | None, str | None, str]:
    """(user, password, vhost) of an AMQP URL: what must be the same on every node of a cluster."""
    parts = urlsplit(url)
    return parts.username, parts.password, parts.path


class PartyConfig(_Strict):
    identifier: str
    name: str | None = None
    category: str | None = None


_MIB = 1024 * 1024
# The largest content whose envelope (4/3 for base64 + 1 MiB of JSON) stays under RabbitMQ 3.x's
# default max_message_size of 128 MiB; hub/limits.py explains how the limits relate.
MAX_CONTENT_BYTES_CEILING = 90 * _MIB


class LimitsConfig(_Strict):
    max_content_bytes: int = Field(20 * _MIB, ge=1024, le=MAX_CONTENT_BYTES_CEILING,
                                   description="message + attachments (decoded bytes) per message")
    max_xml_nodes: int = Field(100_000, ge=100, le=10_000_000,
                               description="elements, attributes, ... of the XML message")


class MessageTypeConfig(_Strict):
    code: str
    schema_path: Path = Field(alias="schema")
    list_uri: str
    list_version: str
    payload_schema: str
    max_content_bytes: int | None = Field(None, ge=1024, le=MAX_CONTENT_BYTES_CEILING,
                                          description="overrides limits.max_content_bytes for this type")


class BreakerConfig(_Strict):
    consecutive_failures: int = Field(5, ge=1)
    failure_rate: float = Field(0.5, gt=0, le=1)
    window: int = Field(20, ge=1)
    cool_down: float = Field(30.0, gt=0)


class AdapterConfig(_Strict):
    """The hub's keys of ``[adapters.<name>]``; every other key of the section belongs to the profile
    (``section``), which validates it with its own model (``adapters/registry.py``)."""

    model_config = ConfigDict(extra="allow")

    profile: str = "xta2"
    timeout: float = Field(30.0, gt=0, description="seconds per endpoint call")
    concurrency: int = Field(4, ge=1, le=256)
    author: PartyConfig | None = None
    service: str = "xauslaender1211OZGPORTALABH"
    retry_delays: tuple[float, ...] = (5, 30, 120, 600, 3600, 21600)
    delivery_limit: int = Field(5, ge=1, le=1000, description=(
        "deliveries of one message before the broker dead-letters it (a crash loop); a policy, "
        "so `hub topology apply` changes it in place"))
    queue_max_length: int | None = Field(None, ge=1, description=(
        "messages the delivery queue holds at most; beyond, publishes are refused (portal sees a nack)"))
    queue_max_bytes: int | None = Field(None, ge=1024, description="bytes the delivery queue holds at most")
    breaker: BreakerConfig = BreakerConfig()
    poll_transport_reports: bool = True
    report_poll_interval: float = Field(10.0, gt=0, description="seconds between status follow-up polls")
    report_poll_max: int = Field(360, ge=1, description="polls before giving up (transport_report_timeout)")
    report_first_poll_delay: float | None = Field(
        None, gt=0, description="seconds from delivery to the first status follow-up poll (default: "
        "report_poll_interval); the delay then doubles up to report_poll_interval")

    @property
    def section(self) -> dict[str, Any]:
        """The profile's own keys (``endpoint``, ``signing_key``, ``options`` ... for xta2), as written."""
        return dict(self.model_extra or {})

    @field_validator("retry_delays")
    @classmethod
    def _delays_positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(d <= 0 for d in value):
            raise ValueError("every retry delay must be > 0 seconds")
        return value

    @property
    def first_poll_delay(self) -> float:
        """``report_first_poll_delay``, or ``report_poll_interval`` when not set."""
        return self.report_first_poll_delay if self.report_first_poll_delay is not None else self.report_poll_interval


class AuthorityConfig(_Strict):
    """One ``[[authorities]]`` entry: the hub's keys; the rest is the adapter's addressing
    (``addressing``: an xta2 reader's ``certificate``, a fit-connect ``destination_id``), validated
    by the adapter's profile."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    adapter: str

    @field_validator("id")
    @classmethod
    def _id_is_behoerdenkennung(cls, value: str) -> str:
        if not DESTINATION_PATTERN.match(value):
            raise ValueError("must be a DVDV Behördenkennung 'praefix:kennung', e.g. 'azr:000100'")
        return value

    @property
    def addressing(self) -> dict[str, Any]:
        """The adapter-specific keys of this entry, as written."""
        return dict(self.model_extra or {})


class HttpConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(9400, ge=0, le=65535)


class SimulatorReaderConfig(_Strict):
    key: Path


class SimulatorConfigModel(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8700, ge=0, le=65535)
    readers: dict[str, SimulatorReaderConfig] = Field(default_factory=dict)
    trusted_signers: tuple[Path, ...] = ()
    latency: float = Field(0.0, ge=0)
    store_dir: Path | None = None


class LedgerConfig(_Strict):
    url: str = Field("sqlite:///var/hub-ledger.db",
                     description="sqlite:///path (relative to the config file) or postgresql://...")


class TrackerConfig(_Strict):
    """``hub tracker``: the tracking store, its HTTP API/page, and who may read it."""

    store: str = Field("sqlite:///var/hub-tracking.db",
                       description="sqlite:///path (relative to the config file) or postgresql://...")
    host: str = "127.0.0.1"
    port: int = Field(9410, ge=0, le=65535)
    tokens_file: Path | None = Field(None, description="TOML file of hashed bearer tokens; re-read when it changes")
    retention_days: float = Field(90.0, gt=0, description="default age for `hub tracker purge`")
    batch_size: int = Field(200, ge=1, le=10_000, description="events written per transaction")
    page_size: int = Field(50, ge=1, le=1000, description="default page size of the API and the page")
    secure_cookies: bool = Field(False, description="set true behind a TLS-terminating proxy: the page's "
                                 "session cookie is then always marked Secure")


REPLY_MESSAGE_TYPES = ("OZG.RueckkanalFrage.130102", "OZG.Statusmeldung.130104", "OZG.Terminmitteilung.130105")


class MailboxConfig(_Strict):
    """One portal's own XTA account, read for the authorities' replies (the return channel)."""

    profile: str = "xta2"
    endpoint: EndpointUrl
    timeout: float = Field(30.0, gt=0)
    account: PartyConfig
    decryption_key: Path
    decryption_key_password_env: str | None = None
    trusted_signers: tuple[Path, ...] = ()
    poll_interval: float = Field(30.0, gt=0, description="seconds between mailbox polls when it was empty")
    batch: int = Field(50, ge=1, le=1000, description="replies taken per getStatusList")
    message_types: tuple[str, ...] = REPLY_MESSAGE_TYPES
    options: dict[str, Any] = Field(default_factory=dict)


class StatusConfig(_Strict):
    """How workers publish status events (docs/message-contract.md, "Status batches")."""

    batch_window: float = Field(0.0, ge=0, le=5.0, description=(
        "seconds a worker collects status events before it publishes them as one batch message per "
        "portal; 0 (default): one message per event. Turn on only once every consumer of hub.status "
        "reads batches"))
    batch_max_events: int = Field(100, ge=1, le=500, description="events per batch message at most")


class TopologyConfig(_Strict):
    """How ``hub topology apply`` shapes the quorum queues on a cluster (docs/cluster.md)."""

    quorum_initial_group_size: int = Field(3, ge=1, le=9, description=(
        "replicas of each new quorum queue (RabbitMQ caps it at the cluster's size); an existing "
        "queue keeps its members: grow it with rabbitmq-queues"))
    leader_locator: Literal["balanced", "client-local"] = Field("balanced", description=(
        "where a new queue's leader goes: balanced spreads leaders over the nodes"))
    policy_priority: int = Field(10, ge=0, le=1_000_000, description=(
        "priority of the hub's per-queue policies; an operator policy of a higher priority "
        "matching hub.* replaces them (RabbitMQ applies one policy per queue)"))


class HubConfig(_Strict):
    broker: BrokerConfig = BrokerConfig()
    topology: TopologyConfig = TopologyConfig()
    status: StatusConfig = StatusConfig()
    ledger: LedgerConfig = LedgerConfig()
    tracker: TrackerConfig = TrackerConfig()
    mailboxes: dict[str, MailboxConfig] = Field(default_factory=dict)
    http: HttpConfig = HttpConfig()
    limits: LimitsConfig = LimitsConfig()
    message_types: tuple[MessageTypeConfig, ...] = ()
    adapters: dict[str, AdapterConfig] = Field(default_factory=dict)
    authorities: tuple[AuthorityConfig, ...] = ()
    simulator: SimulatorConfigModel = SimulatorConfigModel()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object per line (hub/logs.py)")
    source: Path | None = None

    @model_validator(mode="after")
    def _cross_references(self) -> HubConfig:
        for name in self.adapters:
            if not ADAPTER_NAME_PATTERN.match(name):
                raise ValueError(f"adapters.{name}: adapter names are lower-case letters, digits, '-', '_'")
        seen: set[str] = set()
        for i, authority in enumerate(self.authorities):
            if authority.adapter not in self.adapters:
                raise ValueError(
                    f"authorities[{i}].adapter: '{authority.adapter}' is not a configured adapter "
                    f"(known: {', '.join(sorted(self.adapters)) or 'none'})"
                )
            if authority.id in seen:
                raise ValueError(f"authorities[{i}].id: '{authority.id}' is listed twice")
            seen.add(authority.id)
        codes = [m.code for m in self.message_types]
        if len(codes) != len(set(codes)):
            raise ValueError("message_types: a code is listed twice")
        accounts: dict[str, str] = {}
        for portal, mailbox in self.mailboxes.items():
            if not PORTAL_PATTERN.match(portal):
                raise ValueError(f"mailboxes.{portal}: portal ids are letters, digits, '-', '_' (the app_id)")
            other = accounts.setdefault(mailbox.account.identifier.strip().casefold(), portal)
            if other != portal:  # two pollers of one mailbox: each reply published for both portals
                raise ValueError(f"mailboxes.{portal}.account.identifier: '{mailbox.account.identifier}' is also "
                                 f"the account of mailboxes.{other} (one mailbox, one portal)")
            missing = [t for t in mailbox.message_types if t not in codes]
            if missing:
                raise ValueError(f"mailboxes.{portal}.message_types: '{missing[0]}' has no [[message_types]] entry "
                                 "(its schema validates the replies)")
        return self

    def adapter(self, name: str) -> AdapterConfig:
        try:
            return self.adapters[name]
        except KeyError:
            raise ConfigError(
                f"adapter '{name}' is not configured (known: {', '.join(sorted(self.adapters)) or 'none'})"
            ) from None

    def message_type(self, code: str) -> MessageTypeConfig | None:
        return next((m for m in self.message_types if m.code == code), None)


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    if environ.get("AMQP_URL"):  # replaces the file's url or urls: one URL, or several comma-separated
        broker = raw.setdefault("broker", {})
        if not isinstance(broker, dict):
            raise ConfigError("broker: must be a table")
        broker.pop("url", None)
        broker.pop("urls", None)
        urls = split_urls(environ["AMQP_URL"])
        if not urls:
            raise ConfigError("AMQP_URL: no broker URL in it")
        broker.update({"url": EnvText(urls[0])} if len(urls) == 1 else {"urls": urls})
    for key, value in environ.items():  # a top-level key: HUB_<KEY> has no section to split on
        if key.upper() == "HUB_LOG_FORMAT":
            raw["log_format"] = EnvText(value.strip().lower())  # JSON, json, Json: one format
    for key, value in environ.items():
        if not key.upper().startswith("HUB_") or "__" not in key or key.upper() == "HUB_CONFIG":
            continue
        path = [p.lower() for p in key[4:].split("__")]
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{key}: '{part}' is not a section")
            node = child
        node[path[-1]] = EnvText(value)


def _resolve_paths(config: HubConfig, base: Path) -> HubConfig:
    """Make every relative file path absolute against the config file's folder."""

    def fix(p: Path | None) -> Path | None:
        if p is None:
            return None
        if str(p).startswith("builtin:"):
            return p
        return p if p.is_absolute() else (base / p).resolve()

    data = config.model_dump(by_alias=True)
    for mt in data["message_types"]:
        mt["schema"] = fix(Path(mt["schema"]))
    sim = data["simulator"]
    for reader in sim["readers"].values():
        reader["key"] = fix(reader["key"])
    sim["trusted_signers"] = tuple(fix(p) for p in sim["trusted_signers"])
    sim["store_dir"] = fix(sim["store_dir"])
    data["tracker"]["tokens_file"] = fix(data["tracker"]["tokens_file"])
    for mailbox in data["mailboxes"].values():
        mailbox["decryption_key"] = fix(mailbox["decryption_key"])
        mailbox["trusted_signers"] = tuple(fix(p) for p in mailbox["trusted_signers"])
    return HubConfig.model_validate(data)


def _format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = ""
        for part in item["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        loc = loc or "(top level)"
        msg = item["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}")
    return "invalid configuration: " + "; ".join(lines)  # one line, however many problems


def parse_config(raw: dict[str, Any], *, base: Path, environ: Mapping[str, str] | None = None) -> HubConfig:
    """Validate a parsed TOML document (with environment overrides applied)."""
    _apply_env(raw, os.environ if environ is None else environ)
    try:
        config = HubConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None
    from adapters.registry import check_sections  # the profiles' own models (imports the profiles)

    check_sections({name: (ac.profile, ac.section, ac.author is not None) for name, ac in config.adapters.items()},
                   [(a.adapter, a.addressing) for a in config.authorities])
    return _resolve_paths(config, base)


def load_config(path: Path | str, environ: Mapping[str, str] | None = None) -> HubConfig:
    """Read, override and validate the config file; raise ConfigError with the bad key named."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path} (pass --config or set HUB_CONFIG)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    config = parse_config(raw, base=path.resolve().parent, environ=environ)
    return config.model_copy(update={"source": path.resolve()})
