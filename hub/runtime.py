"""Assembling a worker's collaborators from the configuration, once, at start-up."""

from __future__ import annotations

from pathlib import Path

from adapters.base import Adapter
from adapters.registry import profile_class
from hub.config import AdapterConfig, HubConfig
from hub.directory import Directory
from hub.errors import ConfigError, HubError
from hub.keystore import KeyStore
from hub.ledger import open_ledger
from hub.limits import SizeLimits
from hub.pipeline import DeliveryPipeline, PipelineSettings
from schemas import builtin_schema
from schemas.registry import SchemaRegistry
from transport.xta.client import XtaEndpoint
from transport.xta.metadata import BusinessScenario, MessageType, Party


def schema_path(configured: Path) -> Path:
    """``builtin:<name>`` points into the schemas shipped with the hub; anything else is a file."""
    text = str(configured)
    if text.startswith("builtin:"):
        return builtin_schema(text.removeprefix("builtin:"))
    return configured


def build_registry(config: HubConfig) -> tuple[SchemaRegistry, dict[str, MessageType]]:
    """Register and compile every configured message type now, so a bad schema fails start-up."""
    registry = SchemaRegistry()
    types: dict[str, MessageType] = {}
    for mt in config.message_types:
        registry.register(mt.code, schema_path(mt.schema_path))
        types[mt.code] = MessageType(mt.code, mt.list_uri, mt.list_version, mt.payload_schema)
    registry.preload()
    return registry, types


def author_party(adapter: AdapterConfig) -> Party:
    a = adapter.author
    return Party(identifier=a.identifier, name=a.name, category=a.category)


def build_adapter(name: str, adapter: AdapterConfig, keys: KeyStore, base_dir: Path | None = None) -> Adapter:
    """The adapter of profile ``adapter.profile``; ``base_dir`` resolves relative paths in its options."""
    cls = profile_class(adapter.profile)
    try:  # a handle: renewed key/certificate files are picked up without a restart
        identity = keys.identity_handle(adapter.signing_key, adapter.signing_cert, adapter.signing_key_password_env,
                                        password_file=adapter.signing_key_password_file)
    except ConfigError:
        raise
    except HubError as exc:  # KeyStoreError and friends: name the config key
        raise ConfigError(f"adapters.{name}.signing_key: {exc}") from None
    return cls(
        name,
        # keep-alive pool: one connection per delivery/poll thread, plus the readiness check
        endpoint=XtaEndpoint(adapter.endpoint, timeout=adapter.timeout, pool_size=adapter.concurrency + 1),
        author=author_party(adapter),
        identity=identity,
        options=adapter.options,
        base_dir=base_dir,
    )


def build_pipeline(config: HubConfig, adapter_name: str, keys: KeyStore | None = None) -> DeliveryPipeline:
    """Everything one adapter worker needs, with keys and schemas loaded exactly once."""
    keys = keys or KeyStore()
    ac = config.adapter(adapter_name)
    try:
        directory = Directory.from_config(config, keys, adapter=adapter_name)
    except ConfigError:
        raise
    except HubError as exc:  # KeyStoreError: name the config section
        raise ConfigError(f"authorities: cannot load a reader certificate: {exc}") from None
    registry, types = build_registry(config)
    settings = PipelineSettings(
        adapter_name=adapter_name,
        author=author_party(ac),
        default_service=ac.service,
        business_scenario=BusinessScenario(ac.business_scenario, ac.business_scenario_list_uri,
                                           ac.business_scenario_list_version),
        limits=SizeLimits.from_config(config),
    )
    base = config.source.parent if config.source else Path.cwd()
    return DeliveryPipeline(settings, adapter=build_adapter(adapter_name, ac, keys, base), directory=directory,
                            registry=registry, message_types=types, ledger=open_ledger(config.ledger.url, base))
