"""Sample parties, metadata and content for the XTA unit tests."""

from __future__ import annotations

from dataclasses import replace

from transport.content import Content, ContentPart
from transport.xta.metadata import BusinessScenario, MessageMetaData, MessageType, Party

AUTHOR = Party("alp:portal-1", name="Beispiel-Portal", category="Onlinedienst")
READER = Party("azr:000100", name="ABH Musterstadt", category="Ausländerbehörde")
MESSAGE_TYPE = MessageType(
    code="OZG.Antrag.130101",
    list_uri="urn:xoev-de:xauslaender:codeliste:nachrichten",
    list_version="26.11",
    payload_schema="http://www.osci.de/xauslaender2611",
)


def metadata(message_id: str = "urn:de:xta:messageid:test:1", **changes: object) -> MessageMetaData:
    md = MessageMetaData(
        author=AUTHOR,
        reader=READER,
        message_id=message_id,
        service="xauslaender1211OZGPORTALABH",
        business_scenario=BusinessScenario("XAUSLAENDER_DATA"),
        message_type=MESSAGE_TYPE,
        size=None,
    )
    return replace(md, **changes)  # type: ignore[arg-type]


def content(size: int = 2048, attachments: int = 1) -> Content:
    message = ContentPart(data=b"<antrag>" + b"x" * max(0, size - 17) + b"</antrag>",
                          content_type="application/xml", filename="antrag.xml")
    extra = tuple(
        ContentPart(data=b"%PDF-1.7 " + bytes([i]) * 100, content_type="application/pdf",
                    filename=f"anlage-{i}.pdf", description="Nachweis")
        for i in range(attachments)
    )
    return Content(message=message, attachments=extra)


