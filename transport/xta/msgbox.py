"""MsgBoxPort client (the reader's side): list, fetch and close messages of one's own mailbox.

Reading order per XTA 2.1.1: getStatusList -> getMessage -> close; a message counts as fetched only
after ``close`` (until then it stays in the mailbox and is handed out again). Answers may be MTOM or
inline base64; content is returned with its binary parts resolved (``FetchedMessage.content``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from lxml import etree

from hub.errors import ProtocolError
from transport.content import Content
from transport.xta import wire
from transport.xta.answers import Reply, malformed_answers
from transport.xta.client import XtaClient
from transport.xta.container import (
    CONTENT_CONTAINER,
    GENERIC_CONTENT_CONTAINER,
    container_payload,
    parse_content_container,
)
from transport.xta.metadata import MessageMetaData, Party, StatusList
from transport.xta.mmd import MESSAGE_METADATA, parse_message_metadata
from transport.xta.soap import render_author_header


@dataclass(frozen=True)
class FetchedMessage:
    """One message handed out by getMessage/getNextMessage (not yet fetched until ``close``)."""

    request_id: str
    metadata: MessageMetaData
    container: etree._Element = field(repr=False)  # xta:GenericContentContainer
    parts: Mapping[str, memoryview] = field(default_factory=dict, repr=False)
    items_pending: int | None = None

    @property
    def encrypted(self) -> bool:
        return container_payload(self.container).tag != CONTENT_CONTAINER

    def content(self) -> Content:
        """The plaintext content (``ProtocolError`` if it is encrypted: decrypt ``container`` first)."""
        return parse_content_container(self.container, self.parts or None)


class MsgBoxClient:
    """The MsgBox operations over an ``XtaClient`` (same endpoint, session and TLS identity)."""

    def __init__(self, client: XtaClient) -> None:
        self.client = client

    def _call(self, operation: str, reader: Party, request: etree._Element) -> Reply:
        return self.client.call(operation, [render_author_header(reader)], [request])

    def get_status_list(self, reader: Party, *, max_items: int | None = None,
                        message_ids: Sequence[str] = ()) -> StatusList:
        """The first page of ``reader``'s mailbox (MessageMetaData entries, no content)."""
        request = wire.render_msgbox_request(wire.MSGBOX_STATUS_LIST_REQUEST, wire.MsgBoxRequest(
            max_items=max_items, list_form="MessageMetaData", message_ids=tuple(message_ids)))
        reply = self._call("getStatusList", reader, request)
        with malformed_answers("getStatusList"):
            return wire.parse_status_list(reply.header, reply.body[0] if reply.body else None)

    def get_next_status_list(self, reader: Party, request_id: str) -> StatusList:
        request = wire.render_msgbox_request(wire.MSGBOX_GET_NEXT_REQUEST, wire.MsgBoxRequest(request_id=request_id))
        reply = self._call("getNextStatusList", reader, request)
        with malformed_answers("getNextStatusList"):
            return wire.parse_status_list(reply.header, reply.body[0] if reply.body else None)

    def get_message(self, reader: Party, message_id: str | None = None) -> FetchedMessage | None:
        """The message ``message_id`` (or the oldest one); None when the mailbox holds none."""
        request = wire.render_msgbox_request(wire.MSGBOX_FETCH_REQUEST, wire.MsgBoxRequest(
            message_ids=(message_id,) if message_id else ()))
        return self._fetched(self._call("getMessage", reader, request))

    def get_next_message(self, reader: Party, request_id: str,
                         last_received: Sequence[str] = ()) -> FetchedMessage | None:
        request = wire.render_msgbox_request(wire.MSGBOX_GET_NEXT_REQUEST, wire.MsgBoxRequest(
            request_id=request_id, last_received=tuple(last_received)))
        return self._fetched(self._call("getNextMessage", reader, request))

    def close(self, reader: Party, request_id: str, last_received: Sequence[str] = ()) -> None:
        """Commit the fetch: the listed messages (default: all handed out under ``request_id``) leave
        the mailbox."""
        request = wire.render_msgbox_request(wire.MSGBOX_CLOSE_REQUEST, wire.MsgBoxRequest(
            request_id=request_id, last_received=tuple(last_received)))
        self._call("close", reader, request)

    @staticmethod
    def _fetched(reply: Reply) -> FetchedMessage | None:
        with malformed_answers("getMessage"):
            request_id, pending, reason = wire.parse_msgbox_response(reply.header)
            if reason is not None or not reply.body:
                return None
            container = reply.only(GENERIC_CONTENT_CONTAINER, "getMessage")
            mmd_el = reply.header.find(MESSAGE_METADATA) if reply.header is not None else None
            if mmd_el is None:
                raise ProtocolError("getMessage answer without MessageMetaData header")
            return FetchedMessage(request_id, parse_message_metadata(mmd_el), container, reply.parts, pending)
