"""Assembling a worker's collaborators from the configuration, once, at start-up."""

from __future__ import annotations

from pathlib import Path

from adapters.base import Adapter, AdapterContext, MessageKind, Party
from adapters.registry import profile_class
from hub.config import AdapterConfig, HubConfig
from hub.directory import Directory
from hub.keystore import KeyStore
from hub.ledger import open_ledger
from hub.limits import SizeLimits
from hub.pipeline import DeliveryPipeline, PipelineSettings
from schemas import builtin_schema
from schemas.registry import SchemaRegistry


def schema_path(configured: Path) -> Path:
    """``builtin:<name>`` points into the schemas shipped with the hub; anything else is a file."""
    text = str(configured)
    if text.startswith("builtin:"):
        return builtin_schema(text.removeprefix("builtin:"))
    return configured


def build_registry(config: HubConfig) -> tuple[SchemaRegistry, dict[str, MessageKind]]:
    """Register and compile every configured message type now, so a bad schema fails start-up."""
    registry = SchemaRegistry()
    types: dict[str, MessageKind] = {}
    for mt in config.message_types:
        registry.register(mt.code, schema_path(mt.schema_path))
        types[mt.code] = MessageKind(mt.code, mt.list_uri, mt.list_version, mt.payload_schema)
    registry.preload()
    return registry, types


def sender_party(adapter: AdapterConfig) -> Party | None:
    """The adapter's configured author as the neutral ``Party`` (None when not configured)."""
    a = adapter.author
    return None if a is None else Party(identifier=a.identifier, name=a.name, category=a.category)


def build_adapter(name: str, adapter: AdapterConfig, keys: KeyStore, base_dir: Path | None = None) -> Adapter:
    """The adapter of profile ``adapter.profile``, built by the profile from its own keys of the
    section; ``base_dir`` resolves relative paths."""
    cls = profile_class(adapter.profile)
    context = AdapterContext(keys=keys, base_dir=base_dir, concurrency=adapter.concurrency, timeout=adapter.timeout,
                             sender=sender_party(adapter))
    return cls.from_config(name, adapter.section, context)


def build_pipeline(config: HubConfig, adapter_name: str, keys: KeyStore | None = None) -> DeliveryPipeline:
    """Everything one adapter worker needs, with keys and schemas loaded exactly once."""
    keys = keys or KeyStore()
    ac = config.adapter(adapter_name)
    base = config.source.parent if config.source else Path.cwd()
    adapter = build_adapter(adapter_name, ac, keys, base)
    try:
        directory = Directory.from_config(config, adapter=adapter_name, resolve=adapter.addressing)
    except BaseException:
        adapter.close()
        raise
    registry, types = build_registry(config)
    settings = PipelineSettings(
        adapter_name=adapter_name,
        author=sender_party(ac),
        default_service=ac.service,
        limits=SizeLimits.from_config(config),
    )
    return DeliveryPipeline(settings, adapter=adapter, directory=directory,
                            registry=registry, message_types=types, ledger=open_ledger(config.ledger.url, base))
