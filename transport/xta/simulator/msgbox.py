"""The MsgBoxPort of the simulator (OSCI 2.0.2 MsgBox as XTA 2.1.1 uses it): per-reader mailboxes.

The caller's Author header names the reader whose mailbox is read. A message is in the mailbox once
its transport report is final green/yellow; it stays there, however often it is listed or handed
out, until the reader *closes* the iterator it got it from (``close`` with the MsgBoxRequestID;
``LastMsgReceived`` narrows which of the handed-out messages count as fetched, none = all of them).

- getStatusList: a page of MessageMetaData (or MsgAttributes) entries, header MsgBoxResponse with a
  new MsgBoxRequestID and ItemsPending; getNextStatusList continues that iterator.
- getMessage: the message selected by MsgSelector/MessageID, or the oldest one; header MessageMetaData
  + MsgBoxResponse; body the GenericContentContainer as the author sent it (encrypted stays encrypted),
  as MTOM when ``mtom_responses`` is on. getNextMessage continues the iterator.
- nothing (left): MsgBoxResponse/NoMessageAvailable reason NoMatch (empty body); an unknown
  MsgBoxRequestID in getNext*: reason RequestIdInvalid. close with an unknown MsgBoxRequestID, or
  with a LastMsgReceived that was not handed out under it, and getMessage of a MessageID not in the
  mailbox: InvalidMessageID 9070.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from lxml import etree

from hub.errors import ProtocolError
from transport.content import Content, ContentPart
from transport.xta import wire
from transport.xta.container import build_content_container, generic_container
from transport.xta.metadata import Party
from transport.xta.mmd import render_message_metadata
from transport.xta.mtom import Attachments
from transport.xta.ns import OSCI, WSA, XENC, q
from transport.xta.simulator.config import SimulatorConfig
from transport.xta.simulator.ops import Answer, Request, SimulatedFault, XtaOperations
from transport.xta.simulator.reports import in_mailbox
from transport.xta.simulator.store import MessageStore, StoredMessage, WireContent

MSG_ATTRIBUTES_FORM = "MsgAtrributes"  # sic, OSCI2_02.xsd


@dataclass
class _Iterator:
    reader: str
    kind: str  # "list" or "message"
    remaining: list[str]
    handed_out: list[str] = field(default_factory=list)
    list_form: str | None = None
    page: int = 100
    created: float = field(default_factory=time.monotonic)


class MsgBoxOperations:
    """getStatusList, getNextStatusList, getMessage, getNextMessage, close."""

    MAX_ITERATORS = 10_000

    def __init__(self, config: SimulatorConfig, store: MessageStore, accounts: XtaOperations) -> None:
        self.config = config
        self.store = store
        self.accounts = accounts
        self._lock = threading.Lock()
        self._iterators: dict[str, _Iterator] = {}

    def reset(self) -> None:
        with self._lock:
            self._iterators.clear()

    # ------------------------------------------------------------------ helpers

    def _reader(self, request: Request) -> Party:
        """The reader whose mailbox the caller (Author header) reads: a MsgBox account (``readers``;
        None = any), with the same account-state and client-certificate checks as authors."""
        reader = self.accounts.author_of(request)
        if reader is None:
            raise SimulatedFault("9012", "Account nicht vorhanden (kein Author angegeben)")
        self.accounts.authorize(reader, request, accounts=self.config.readers)
        return reader

    def _request(self, request: Request) -> wire.MsgBoxRequest:
        if len(request.body) != 1:
            raise SimulatedFault("9020", f"{request.operation} expects one OSCI MsgBox request element")
        try:
            return wire.parse_msgbox_request(request.body[0])
        except ProtocolError as exc:
            raise SimulatedFault("9022", str(exc)) from None

    def _mailbox(self, reader: str, only: tuple[str, ...] = ()) -> list[StoredMessage]:
        now = self.config.clock()
        result = []
        for message in self.store.messages(reader):
            state = self.store.state(message.message_id)
            if state is not None and in_mailbox(state, now) and (not only or message.message_id in only):
                result.append(message)
        return result

    def _new_iterator(self, iterator: _Iterator) -> str:
        request_id = f"urn:uuid:{uuid.uuid4()}"
        with self._lock:
            if len(self._iterators) >= self.MAX_ITERATORS:  # forget the oldest
                oldest = min(self._iterators, key=lambda k: self._iterators[k].created)
                del self._iterators[oldest]
            self._iterators[request_id] = iterator
        return request_id

    def _iterator(self, request_id: str | None, reader: str, kind: str | None = None) -> _Iterator | None:
        with self._lock:
            it = self._iterators.get(request_id or "")
        if it is None or it.reader != reader or (kind is not None and it.kind != kind):
            return None
        return it

    # ------------------------------------------------------------------ status lists

    def get_status_list(self, request: Request) -> Answer:
        reader = self._reader(request)
        req = self._request(request)
        if request.body[0].tag != wire.MSGBOX_STATUS_LIST_REQUEST:
            raise SimulatedFault("9022", "getStatusList expects osci:MsgBoxStatusListRequest")
        page = min(req.max_items or self.config.status_list_page, self.config.status_list_page)
        ids = [m.message_id for m in self._mailbox(reader.identifier, req.message_ids)]
        iterator = _Iterator(reader.identifier, "list", ids, list_form=req.list_form, page=page)
        return self._list_page(self._new_iterator(iterator), iterator)

    def get_next_status_list(self, request: Request) -> Answer:
        reader = self._reader(request)
        req = self._request(request)
        iterator = self._iterator(req.request_id, reader.identifier, "list")
        if iterator is None:
            return Answer(headers=[wire.render_msgbox_response(req.request_id or "urn:invalid", None,
                                                               wire.REQUEST_ID_INVALID)],
                          body=[wire.render_status_list(())])
        return self._list_page(req.request_id or "", iterator)

    def _list_page(self, request_id: str, iterator: _Iterator) -> Answer:
        with self._lock:  # one iterator may be continued from two connections at once
            taken, iterator.remaining = iterator.remaining[:iterator.page], iterator.remaining[iterator.page:]
        messages = [m for m in (self.store.get(i) for i in taken) if m is not None]
        if not messages:
            header = wire.render_msgbox_response(request_id, None, wire.NO_MATCH)
        else:
            header = wire.render_msgbox_response(request_id, len(iterator.remaining))
        if iterator.list_form == MSG_ATTRIBUTES_FORM:
            body = _attribute_list(messages, self.store)
        else:
            body = wire.render_status_list(m.metadata for m in messages if m.metadata is not None)
        return Answer(headers=[header], body=[body])

    # ------------------------------------------------------------------ messages

    def get_message(self, request: Request) -> Answer:
        reader = self._reader(request)
        req = self._request(request)
        if request.body[0].tag != wire.MSGBOX_FETCH_REQUEST:
            raise SimulatedFault("9022", "getMessage expects osci:MsgBoxFetchRequest")
        mailbox = [m.message_id for m in self._mailbox(reader.identifier)]
        if req.message_ids:
            missing = [i for i in req.message_ids if i not in mailbox]
            if missing:
                raise SimulatedFault("9070", f"MessageID für den Account nicht bekannt: {missing[0]}")
            mailbox = [i for i in mailbox if i in req.message_ids]
        iterator = _Iterator(reader.identifier, "message", mailbox)
        return self._next_message(self._new_iterator(iterator), iterator, request)

    def get_next_message(self, request: Request) -> Answer:
        reader = self._reader(request)
        req = self._request(request)
        iterator = self._iterator(req.request_id, reader.identifier, "message")
        if iterator is None:
            return Answer(headers=[wire.render_msgbox_response(req.request_id or "urn:invalid", None,
                                                               wire.REQUEST_ID_INVALID)])
        return self._next_message(req.request_id or "", iterator, request)

    def _next_message(self, request_id: str, iterator: _Iterator, request: Request) -> Answer:
        while True:
            with self._lock:
                if not iterator.remaining:
                    break
                message_id = iterator.remaining.pop(0)
            message = self.store.get(message_id)
            state = self.store.state(message_id)
            if message is None or state is None or not in_mailbox(state, self.config.clock()):
                continue  # fetched or cancelled meanwhile
            with self._lock:
                iterator.handed_out.append(message_id)
            self.store.hand_out(message_id, request_id)
            attachments = Attachments() if request.wants_mtom else None
            assert message.metadata is not None and message.wire is not None
            headers = [render_message_metadata(message.metadata),
                       wire.render_msgbox_response(request_id, len(iterator.remaining))]
            return Answer(headers=headers, body=[wire_container(message.wire, attachments)], attachments=attachments)
        return Answer(headers=[wire.render_msgbox_response(request_id, None, wire.NO_MATCH)])

    def close(self, request: Request) -> Answer:
        reader = self._reader(request)
        req = self._request(request)
        if request.body[0].tag != wire.MSGBOX_CLOSE_REQUEST:
            raise SimulatedFault("9022", "close expects osci:MsgBoxCloseRequest")
        iterator = self._iterator(req.request_id, reader.identifier)
        if iterator is None:
            raise SimulatedFault("9070", f"MsgBoxRequestID unbekannt: {req.request_id}")
        fetched = list(req.last_received) or list(iterator.handed_out)
        unknown = [i for i in fetched if i not in iterator.handed_out]
        if unknown:
            raise SimulatedFault("9070", f"MessageID was not handed out under this MsgBoxRequestID: {unknown[0]}")
        now = self.config.clock()
        for message_id in fetched:
            self.store.update_state(message_id, fetched_at=now)
        with self._lock:
            self._iterators.pop(req.request_id or "", None)
        return Answer()


def _attribute_list(messages: list[StoredMessage], store: MessageStore) -> etree._Element:
    """osci:MsgStatusList in the MsgAttributes form (OSCI's short form)."""
    from transport.xta.simulator.reports import _iso

    root = etree.Element(wire.MSG_STATUS_LIST, nsmap={"osci": OSCI, "wsa": WSA})
    for message in messages:
        state = store.state(message.message_id)
        attrs = etree.SubElement(root, q(OSCI, "MsgAttributes"))
        etree.SubElement(attrs, q(WSA, "MessageID")).text = message.message_id
        etree.SubElement(attrs, q(OSCI, "TypeOfBusinessScenario")).text = message.service
        size = message.metadata.size if message.metadata is not None and message.metadata.size else \
            sum(p.size for p in message.parts)
        etree.SubElement(attrs, q(OSCI, "MsgSize")).text = str(min(size, 2**31 - 1))
        etree.SubElement(attrs, q(OSCI, "DeliveryTime")).text = _iso(state.ready_at if state else time.time())
    return root



def wire_container(content: WireContent, attachments: Attachments | None) -> etree._Element:
    """The GenericContentContainer as the author sent it; binary content as XOP parts when
    ``attachments`` is given (MTOM), else inline base64."""
    import base64

    from transport.security.xml import parse_xml

    if content.encrypted:
        encrypted = parse_xml(content.encrypted_template or b"")
        value = encrypted.find(f"{{{XENC}}}CipherData/{{{XENC}}}CipherValue")
        assert value is not None  # the store's template always has one (ops._template)
        if attachments is not None:
            attachments.include(value, content.cipher or b"")
        else:
            value.text = base64.b64encode(content.cipher or b"").decode("ascii")
        return generic_container(encrypted)
    parts = [ContentPart(p.data, p.content_type, p.filename, p.description) for p in content.parts]
    return generic_container(build_content_container(Content(parts[0], tuple(parts[1:])), attachments))
