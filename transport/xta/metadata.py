"""The XTA 2 / OSCI MessageMetaData (namespace http://www.osci.eu/ws/2014/10/transport) as data.

Only the values live here; ``transport.xta.soap`` renders them to XML and parses them back.
"""

from __future__ import annotations

from dataclasses import dataclass

BUSINESS_SCENARIO_LIST_URI = "urn:de:dataport:codeliste:business.scenario"


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
