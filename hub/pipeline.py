"""The per-message work of an adapter worker, free of any broker code.

decode envelope -> directory lookup -> hardened parse -> schema validation -> adapter.deliver
(sign, encrypt, XTA). Every failure surfaces as a ``HubError`` whose ``transient`` flag decides
retry vs dead letter; the pipeline itself never acks or publishes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import pika

from adapters.base import Adapter, Delivery, DeliveryReceipt
from hub.directory import Directory
from hub.envelope import Envelope, decode_envelope
from hub.errors import ContentTooLarge, DirectoryError, UnknownMessageType
from schemas.registry import SchemaRegistry
from transport.security.xml import parse_xml
from transport.xta.metadata import BusinessScenario, MessageType, Party

DEFAULT_MAX_CONTENT_BYTES = 40 * 1024 * 1024


@dataclass(frozen=True)
class PipelineSettings:
    adapter_name: str
    author: Party
    default_service: str
    business_scenario: BusinessScenario
    max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES


class DeliveryPipeline:
    """Validates and delivers one message; thread-safe (called from the worker's thread pool)."""

    def __init__(self, settings: PipelineSettings, *, adapter: Adapter, directory: Directory,
                 registry: SchemaRegistry, message_types: Mapping[str, MessageType]) -> None:
        self.settings = settings
        self.adapter = adapter
        self.directory = directory
        self.registry = registry
        self.message_types = dict(message_types)

    def decode(self, properties: pika.BasicProperties, body: bytes) -> Envelope:
        return decode_envelope(properties, body)

    def process(self, envelope: Envelope) -> DeliveryReceipt:
        s = self.settings
        authority = self.directory.lookup(envelope.destination)
        if authority.adapter != s.adapter_name:
            raise DirectoryError(
                f"destination '{envelope.destination}' belongs to adapter '{authority.adapter}', "
                f"not '{s.adapter_name}' (stale binding?)")
        message_type = self.message_types.get(envelope.message_type)
        if message_type is None:
            raise UnknownMessageType(f"message type '{envelope.message_type}' is not configured")
        if envelope.content.size > s.max_content_bytes:
            raise ContentTooLarge(
                f"content is {envelope.content.size} bytes, the limit is {s.max_content_bytes}")
        document = parse_xml(envelope.content.message.data)
        self.registry.validate(envelope.message_type, document)
        scenario = s.business_scenario
        if envelope.business_scenario and envelope.business_scenario != scenario.code:
            scenario = BusinessScenario(envelope.business_scenario, scenario.list_uri, scenario.list_version)
        delivery = Delivery(
            message_id=envelope.message_id,
            content=envelope.content,
            author=s.author,
            reader=authority.reader,
            reader_certificate=authority.certificate,
            service=envelope.service or s.default_service,
            message_type=message_type,
            business_scenario=scenario,
            test=envelope.test,
        )
        return self.adapter.deliver(delivery)
