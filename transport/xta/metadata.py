"""The XTA 2 / OSCI MessageMetaData (namespace http://www.osci.eu/ws/2014/10/transport) and the other
structured answers of XTA 2.1.1 (TransportReport, lookupService results, MsgBox status lists) as data.

Only the values live here; ``transport.xta.soap`` and ``transport.xta.wire`` render them to XML and
parse them back.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

BUSINESS_SCENARIO_LIST_URI = "urn:de:dataport:codeliste:business.scenario"

# OSCI ReceiptRequestType children, in schema order.
RECEIPT_KINDS: tuple[str, ...] = ("Submission", "Relay", "Delivery", "Fetch", "Reception")

# TransportReport MessageStatus/Status (the "traffic light").
STATUS_OPEN, STATUS_GREEN, STATUS_YELLOW, STATUS_RED = 0, 1, 2, 3
STATUS_NAMES = {STATUS_OPEN: "open", STATUS_GREEN: "green", STATUS_YELLOW: "yellow", STATUS_RED: "red"}


@dataclass(frozen=True)
class Party:
    """A PartyType identifier: value like ``azr:000100``, with @type, @category and @name."""

    identifier: str
    name: str | None = None
    category: str | None = None
    type: str = "xoev"


@dataclass(frozen=True)
class MessageType:
    """Qualifier/MessageType: the code (e.g. ``OZG.Antrag.130101``) with its list and payload schema."""

    code: str
    list_uri: str
    list_version: str
    payload_schema: str


@dataclass(frozen=True)
class BusinessScenario:
    """Qualifier/BusinessScenario/Defined: a code from a business-scenario code list.

    ``defined=False`` stands for the schema's other choice, BusinessScenario/Undefined (free text in
    ``code``, no list), which other senders may use.
    """

    code: str
    list_uri: str = BUSINESS_SCENARIO_LIST_URI
    list_version: str = "1"
    defined: bool = True


@dataclass(frozen=True)
class DeliveryAttributes:
    """oscimeta:DeliveryAttributes. The sender sets ``origin``, ``initial_send``, ``not_before``,
    ``obsolete_after``, ``service_quality`` and ``receipt_requests``; XTA servers fill in
    ``delivery``, ``initial_fetch`` and ``reception`` (e.g. in a TransportReport)."""

    origin: _dt.datetime | None = None
    initial_send: _dt.datetime | None = None
    not_before: _dt.datetime | None = None
    obsolete_after: _dt.date | None = None
    delivery: _dt.datetime | None = None
    initial_fetch: _dt.datetime | None = None
    reception: _dt.datetime | None = None
    service_quality: str | None = None
    receipt_requests: tuple[str, ...] = ()  # subset of RECEIPT_KINDS, in that order
    receipt_to: str | None = None  # wsa:Address of ReceiptRequests/ReceiptTo

    def __post_init__(self) -> None:
        unknown = set(self.receipt_requests) - set(RECEIPT_KINDS)
        if unknown:
            raise ValueError(f"unknown receipt request(s) {sorted(unknown)}; known: {', '.join(RECEIPT_KINDS)}")
        ordered = tuple(k for k in RECEIPT_KINDS if k in self.receipt_requests)
        object.__setattr__(self, "receipt_requests", ordered)


@dataclass(frozen=True)
class MessageProperty:
    """One oscimeta:MessageProperties/Property: a coded key and a value (scenario-specific)."""

    code: str
    list_uri: str
    list_version: str
    value: str


@dataclass(frozen=True)
class MessageMetaData:
    """Everything the XTA server needs to route a message, none of it taken from the payload."""

    author: Party
    reader: Party
    message_id: str  # the XTA MessageID from createMessageId
    service: str  # DVDV service URI, e.g. urn:xoev-de:... or xauslaender1211OZGPORTALABH
    business_scenario: BusinessScenario
    message_type: MessageType
    size: int | None = None
    test: bool = False
    delivery_attributes: DeliveryAttributes = DeliveryAttributes()
    subject: str | None = None
    in_reply_to: tuple[str, ...] = ()
    properties: tuple[MessageProperty, ...] = ()


# ---------------------------------------------------------------------- management port answers


@dataclass(frozen=True)
class ReportRecord:
    """One Error/Warning/Info line of a TransportReport (RecordType): no payload, only a coded reason."""

    timestamp: str
    code: str
    list_uri: str
    list_version: str
    reason: str


@dataclass(frozen=True)
class TransportReport:
    """xta:TransportReport: the transport order's metadata, the status and its records."""

    metadata: MessageMetaData
    report_time: str
    server_identity: str
    status: int
    errors: tuple[ReportRecord, ...] = ()
    warnings: tuple[ReportRecord, ...] = ()
    infos: tuple[ReportRecord, ...] = ()
    additional_report_types: tuple[str, ...] = ()  # AdditionalReports/Report/Key codes (data not kept)

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.status, f"unknown({self.status})")

    @property
    def final(self) -> bool:
        return self.status != STATUS_OPEN


@dataclass(frozen=True)
class ServiceParameter:
    """LookupServiceResult/ServiceParameter: a coded parameter type and its (binary) resource."""

    code: str
    list_uri: str
    list_version: str
    resource: bytes = field(repr=False)


@dataclass(frozen=True)
class LookupResult:
    """One lookupService answer: is ``service`` offered by ``reader`` (None = the server does not know)?"""

    reader: Party
    service: str
    available: bool | None
    parameters: tuple[ServiceParameter, ...] = ()


# ---------------------------------------------------------------------- MsgBox answers


@dataclass(frozen=True)
class StatusList:
    """getStatusList / getNextStatusList: one page of a reader's mailbox (no content)."""

    request_id: str
    entries: tuple[MessageMetaData, ...]
    items_pending: int | None  # further entries for getNextStatusList (None: NoMessageAvailable)
    no_message_reason: str | None = None
