"""The per-message work of an adapter worker, free of any broker code.

decode envelope (sizes checked before anything is decoded) -> ledger check -> directory lookup ->
hardened parse (nodes counted: bounded memory; text and depth bounded by our limits) -> schema validation ->
adapter.prepare (size limit, lookupService) -> transport id (created once, recorded in the ledger)
-> adapter.deliver (sign, encrypt, XTA) -> ledger: delivered. Every failure surfaces as a ``HubError`` whose ``transient`` flag decides
retry vs dead letter; the pipeline itself never acks or publishes. Each step is a ``timed`` stage
(hub/stages.py: decode, ledger, parse, validate, lookup, send for createMessageId; the adapter times
sign, encrypt, send).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import pika
from lxml import etree

from adapters.base import Adapter, Delivery, DeliveryReceipt
from hub.directory import Directory
from hub.envelope import Envelope, decode_envelope
from hub.errors import DirectoryError, HubError, UnknownMessageType, XtaFault
from hub.ledger import DeliveryLedger, ReportSchedule
from hub.limits import SizeLimits
from hub.stages import timed
from schemas.registry import SchemaRegistry
from transport.security.xml import parse_xml
from transport.xta.metadata import BusinessScenario, MessageType, Party


@dataclass(frozen=True)
class PipelineSettings:
    adapter_name: str
    author: Party
    default_service: str
    business_scenario: BusinessScenario
    limits: SizeLimits = field(default_factory=SizeLimits)


class DeliveryPipeline:
    """Validates and delivers one message; thread-safe (called from the worker's thread pool)."""

    def __init__(self, settings: PipelineSettings, *, adapter: Adapter, directory: Directory,
                 registry: SchemaRegistry, message_types: Mapping[str, MessageType],
                 ledger: DeliveryLedger) -> None:
        self.settings = settings
        self.ledger = ledger
        self.adapter = adapter
        self.directory = directory
        self.registry = registry
        self.message_types = dict(message_types)

    def decode(self, properties: pika.BasicProperties, body: bytes | bytearray) -> Envelope:
        with timed("decode"):
            return decode_envelope(properties, body, self.settings.limits)

    def process(self, envelope: Envelope, *,
                on_delivering: Callable[[str, str | None], None] | None = None,
                report: ReportSchedule | None = None) -> DeliveryReceipt:
        """Deliver one application. ``on_delivering(transport id, application ref)`` is called once
        the transport id is fixed, just before the adapter's deliver call (the worker's
        ``delivering`` status event); it must not raise. ``report``: schedule the transport report
        in the statement that marks it delivered (not for a duplicate)."""
        s = self.settings
        with timed("ledger"):
            entry = self.ledger.lookup(envelope.message_id)
        if entry is not None and entry.delivered:
            return DeliveryReceipt(entry.transport_message_id, duplicate=True)
        authority = self.directory.lookup(envelope.destination)
        if authority.adapter != s.adapter_name:
            raise DirectoryError(
                f"destination '{envelope.destination}' belongs to adapter '{authority.adapter}', "
                f"not '{s.adapter_name}' (stale binding?)")
        message_type = self.message_types.get(envelope.message_type)
        if message_type is None:
            raise UnknownMessageType(f"message type '{envelope.message_type}' is not configured")
        with timed("parse"):
            document = parse_xml(envelope.content.message.data, s.limits.xml_limits(envelope.message_type))
        with timed("validate"):
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
        with timed("lookup"):
            self.adapter.prepare(delivery)  # size limit, service availability: refuse before an id is spent
        if entry is not None and entry.adapter == s.adapter_name:
            transport_id = entry.transport_message_id
        else:
            # the candidate id is an XTA call (createMessageId): timed as "send", not as ledger time;
            # the ledger keeps whichever id was recorded first (another process may race us)
            with timed("send"):
                candidate = self.adapter.new_transport_id()
            with timed("ledger"):
                transport_id = self.ledger.allocate(envelope.message_id, s.adapter_name, envelope.destination,
                                                    candidate)
        if on_delivering is not None:
            on_delivering(transport_id, application_ref(document))
        try:
            # every id we send was recorded for this message alone: "already used" means accepted
            receipt = self.adapter.deliver(delivery, transport_id, resend=True)
        except XtaFault as error:
            if not error.transient:  # an explicit refusal: the id was not used, a replay needs a new one
                self._forget(envelope.message_id)
            raise
        if receipt.accepted_on_resend:
            # "already used": our own earlier attempt was accepted, unless another worker racing on the
            # same application has confirmed (and followed up) that acceptance in the meantime
            with timed("ledger"):
                recorded = self.ledger.lookup(envelope.message_id)
            if recorded is not None and recorded.delivered:
                return replace(receipt, duplicate=True)
        with timed("ledger"):
            if report is None:
                self.ledger.mark_delivered(envelope.message_id)
            else:
                self.ledger.mark_delivered(envelope.message_id, report)
        return receipt

    def _forget(self, message_id: str) -> None:
        """Drop a refused allocation; if the ledger is down, keep the id (a resend with it is safe)."""
        try:
            self.ledger.forget(message_id)
        except HubError:
            pass

    def close(self) -> None:
        self.adapter.close()
        self.ledger.close()


APPLICATION_REF = "antragsidentifikation"
_MAX_REF = 200


def application_ref(document: etree._Element) -> str | None:
    """The XAusländer ``antragsidentifikation`` (top level of the message), by which a portal and a
    reply name the application; ``None`` when the message has none. An id, not content: capped."""
    for child in document:
        if isinstance(child.tag, str) and etree.QName(child).localname == APPLICATION_REF:
            text = (child.text or "").strip()
            return text[:_MAX_REF] or None
    return None
