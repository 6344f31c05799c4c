"""The per-message work of an adapter worker, free of any broker code.

decode envelope (sizes checked before anything is decoded) -> ledger check -> directory lookup ->
hardened parse (nodes counted: bounded memory; text and depth bounded by our limits) -> schema validation ->
adapter.prepare (size limit, lookupService) -> transport id (created once, recorded in the ledger)
-> adapter.deliver (seal and send over its transport) -> ledger: delivered. The new id's record is written (its
fsync, ~3 ms on a plain disk) on a helper thread while the adapter signs and encrypts; the adapter
waits for it (``ready``) before it sends anything, so the record is still durable before the id is
used. Every failure surfaces as a ``HubError`` whose ``transient`` flag decides
retry vs dead letter; the pipeline itself never acks or publishes. Each step is a ``timed`` stage
(hub/stages.py: decode, ledger, parse, validate, lookup, send for the transport id; the adapter times
sign, encrypt, send).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import pika
from lxml import etree

from adapters.base import Adapter, Delivery, DeliveryReceipt, MessageKind, Party, Recipient
from hub.directory import Directory
from hub.envelope import Envelope, decode_envelope
from hub.errors import (
    DirectoryError,
    HubError,
    TransportError,
    TransportIdInvalid,
    UnknownMessageType,
)
from hub.ledger import DeliveryLedger, ReportSchedule
from hub.limits import SizeLimits
from hub.stages import timed
from schemas.registry import SchemaRegistry
from transport.security.xml import parse_xml


@dataclass(frozen=True)
class PipelineSettings:
    adapter_name: str
    author: Party | None  # the adapter's configured sender, if any
    default_service: str
    limits: SizeLimits = field(default_factory=SizeLimits)


class DeliveryPipeline:
    """Validates and delivers one message; thread-safe (called from the worker's thread pool)."""

    def __init__(self, settings: PipelineSettings, *, adapter: Adapter, directory: Directory,
                 registry: SchemaRegistry, message_types: Mapping[str, MessageKind],
                 ledger: DeliveryLedger) -> None:
        self.settings = settings
        self.ledger = ledger
        self.adapter = adapter
        self.directory = directory
        self.registry = registry
        self.message_types = dict(message_types)
        self._recorders: ThreadPoolExecutor | None = None  # writes new ids' records (see the docstring)
        self._recorders_lock = threading.Lock()

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
        delivery = Delivery(
            message_id=envelope.message_id,
            content=envelope.content,
            sender=s.author,
            recipient=Recipient(authority.id, authority.name, authority.addressing),
            service=envelope.service or s.default_service,
            message_type=message_type,
            test=envelope.test,
            business_scenario=envelope.business_scenario,
        )
        with timed("lookup"):
            self.adapter.prepare(delivery)  # size limit, service availability: refuse before an id is spent
        ref = application_ref(document)
        recording: Future[str] | None = None
        if entry is not None and entry.adapter == s.adapter_name:
            transport_id = entry.transport_message_id
        else:
            # the candidate id is an endpoint call (createMessageId, create submission): timed as "send"
            with timed("send"):
                transport_id = self.adapter.new_transport_id(delivery)
            recording = self._record(envelope, transport_id)
        try:
            try:
                # every id we send was recorded for this message alone: "already used" means accepted
                receipt = self.adapter.deliver(delivery, transport_id, resend=True,
                                               ready=self._ready(recording, transport_id, ref, on_delivering))
            except _RecordedOther as other:  # another process recorded its id first: deliver under that one
                transport_id, recording = other.transport_id, None
                receipt = self.adapter.deliver(delivery, transport_id, resend=True,
                                               ready=self._ready(None, transport_id, ref, on_delivering))
        except TransportError as error:
            # the endpoint's explicit refusal (the id was not used) or an id the endpoint has lost: a
            # later attempt or a replay needs a new one
            if not error.transient or isinstance(error, TransportIdInvalid):
                _settle(recording)  # (a refusal before ``ready``: the record must not land after the forget)
                self._forget(envelope.message_id)
            raise
        finally:
            _settle(recording)  # the adapter failed before ``ready``: the record lands before a retry
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

    def _record(self, envelope: Envelope, candidate: str) -> Future[str]:
        """Record ``candidate`` for the message on a helper thread (the ledger keeps whichever id was
        recorded first: another process may race us); the stage timings go to this message's observer."""
        with self._recorders_lock:
            if self._recorders is None:
                self._recorders = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ledger-record")
            recorders = self._recorders
        context = contextvars.copy_context()  # the stage observer and the log context of this message

        def record() -> str:
            with timed("ledger"):
                return self.ledger.allocate(envelope.message_id, self.settings.adapter_name, envelope.destination,
                                            candidate)
        return recorders.submit(context.run, record)

    @staticmethod
    def _ready(recording: Future[str] | None, transport_id: str, ref: str | None,
               on_delivering: Callable[[str, str | None], None] | None) -> Callable[[], None]:
        """What the adapter calls between sealing and sending: the record is durable (a ledger
        failure raises here, before anything is sent), then the ``delivering`` event."""
        def ready() -> None:
            if recording is not None:
                recorded = recording.result()
                if recorded != transport_id:
                    raise _RecordedOther(recorded)
            if on_delivering is not None:
                on_delivering(transport_id, ref)
        return ready

    def _forget(self, message_id: str) -> None:
        """Drop a refused allocation; if the ledger is down, keep the id (a resend with it is safe)."""
        try:
            self.ledger.forget(message_id)
        except HubError:
            pass

    def close(self) -> None:
        with self._recorders_lock:
            recorders, self._recorders = self._recorders, None
        if recorders is not None:
            recorders.shutdown(wait=True)
        self.adapter.close()
        self.ledger.close()


APPLICATION_REF = "antragsidentifikation"
_MAX_REF = 200


def _settle(recording: Future[str] | None) -> None:
    """Wait until a ledger record being written has landed or failed (its error is not ours here)."""
    if recording is not None:
        recording.exception()


class _RecordedOther(HubError):
    """The ledger holds another id for the message (recorded first by another process); the
    pipeline delivers under that one (never seen outside it)."""

    transient = True
    reason = "transport_id_raced"

    def __init__(self, transport_id: str) -> None:
        super().__init__("another transport id is recorded for this message")
        self.transport_id = transport_id


def application_ref(document: etree._Element) -> str | None:
    """The XAusländer ``antragsidentifikation`` (top level of the message), by which a portal and a
    reply name the application; ``None`` when the message has none. An id, not content: capped."""
    for child in document:
        if isinstance(child.tag, str) and etree.QName(child).localname == APPLICATION_REF:
            text = (child.text or "").strip()
            return text[:_MAX_REF] or None
    return None
