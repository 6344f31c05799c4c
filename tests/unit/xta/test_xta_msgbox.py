"""MsgBoxPort: per-reader mailboxes; getStatusList -> getMessage -> close; fetched only after close."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from xta_testdata import AUTHOR, READER, content, metadata

from hub.errors import ProtocolError, XtaFault
from transport.security.demopki import make_test_pki
from transport.security.encryption import decrypt_xml
from transport.security.keys import load_certificate, load_private_key
from transport.xta import mtom
from transport.xta.client import XtaClient, XtaEndpoint
from transport.xta.container import (
    OutgoingContainer,
    build_content_container,
    container_payload,
    generic_container,
    parse_content_container,
)
from transport.xta.e2e import encrypt_container
from transport.xta.metadata import Party
from transport.xta.msgbox import MsgBoxClient
from transport.xta.simulator import SimulatorConfig, serve
from transport.xta.wire import NO_MATCH, REQUEST_ID_INVALID

OTHER = Party("azr:000200")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    return make_test_pki(tmp_path_factory.mktemp("pki"), ["reader"])


def _deliver(client: XtaClient, reader: Party = READER, size: int = 2048) -> str:
    message_id = client.create_message_id(AUTHOR)
    client.send_message(metadata(message_id, reader=reader),
                        generic_container(build_content_container(content(size=size))))
    return message_id


@pytest.fixture(params=[True, False], ids=["mtom", "inline"])
def box(request):
    with serve(SimulatorConfig(mtom_responses=request.param, status_list_page=2)) as running:
        client = XtaClient(XtaEndpoint(running.url, timeout=5))
        yield running, client, MsgBoxClient(client)
        client.close()


def test_reading_order_and_fetch_only_after_close(box) -> None:
    running, client, msgbox = box
    ids = [_deliver(client, size=1000 + i) for i in range(3)]
    other = _deliver(client, OTHER)
    listing = msgbox.get_status_list(READER)
    assert [e.message_id for e in listing.entries] == ids[:2] and listing.items_pending == 1  # page of 2
    assert all(e.reader == READER and e.author == AUTHOR for e in listing.entries)
    rest = msgbox.get_next_status_list(READER, listing.request_id)
    assert [e.message_id for e in rest.entries] == ids[2:] and rest.items_pending == 0
    fetched = msgbox.get_message(READER, ids[0])
    assert fetched.metadata.message_id == ids[0] and not fetched.encrypted
    assert fetched.content() == content(size=1000)
    assert bool(fetched.parts) is running.simulator.config.mtom_responses  # MTOM or inline, both readable
    # not closed: still in the mailbox, handed out again
    assert [e.message_id for e in msgbox.get_status_list(READER, max_items=10).entries][:1] == [ids[0]]
    msgbox.close(READER, fetched.request_id)
    remaining = msgbox.get_status_list(READER, max_items=10)
    assert ids[0] not in [e.message_id for e in remaining.entries]
    assert running.store.stats()["fetched"] == 1
    assert client.get_transport_report(AUTHOR, ids[0]).infos[-1].code == "FETCHED"
    # the other reader's mailbox is separate
    assert [e.message_id for e in msgbox.get_status_list(OTHER).entries] == [other]


def test_iterating_with_get_next_message_and_partial_close(box) -> None:
    _, client, msgbox = box
    ids = [_deliver(client) for _ in range(3)]
    first = msgbox.get_message(READER)
    assert first.metadata.message_id == ids[0] and first.items_pending == 2
    second = msgbox.get_next_message(READER, first.request_id, last_received=[ids[0]])
    third = msgbox.get_next_message(READER, first.request_id)
    assert [second.metadata.message_id, third.metadata.message_id] == ids[1:]
    assert msgbox.get_next_message(READER, first.request_id) is None  # iterator exhausted
    msgbox.close(READER, first.request_id, last_received=ids[:2])  # third not confirmed
    assert [e.message_id for e in msgbox.get_status_list(READER).entries] == [ids[2]]


def test_empty_mailbox_and_invalid_iterators(box) -> None:
    _, client, msgbox = box
    empty = msgbox.get_status_list(READER)
    assert empty.entries == () and empty.no_message_reason == NO_MATCH
    assert msgbox.get_message(READER) is None
    invalid = msgbox.get_next_status_list(READER, "urn:uuid:unknown")
    assert invalid.no_message_reason == REQUEST_ID_INVALID
    assert msgbox.get_next_message(READER, "urn:uuid:unknown") is None
    with pytest.raises(XtaFault) as info:
        msgbox.close(READER, "urn:uuid:unknown")
    assert (info.value.exception_type, info.value.code) == ("InvalidMessageIDException", "9070")
    message_id = _deliver(client)
    with pytest.raises(XtaFault) as info:
        msgbox.get_message(OTHER, message_id)  # not in that reader's mailbox
    assert info.value.code == "9070"
    fetched = msgbox.get_message(READER, message_id)
    with pytest.raises(XtaFault):
        msgbox.close(READER, fetched.request_id, last_received=["urn:de:xta:messageid:never-handed-out"])


def test_encrypted_content_reaches_the_reader_encrypted(pki) -> None:
    with serve(SimulatorConfig()) as running:
        client = XtaClient(XtaEndpoint(running.url, timeout=5))
        msgbox = MsgBoxClient(client)
        message_id = client.create_message_id(AUTHOR)
        attachments = mtom.Attachments()
        sent = content(size=50_000, attachments=2)
        element = generic_container(encrypt_container(sent, load_certificate(pki["reader"][1]), attachments))
        client.send_message(metadata(message_id), OutgoingContainer(element, attachments))
        fetched = msgbox.get_message(READER)
        assert fetched.encrypted
        with pytest.raises(ProtocolError):
            fetched.content()
        encrypted = container_payload(fetched.container)
        mtom.inline_xop(encrypted, fetched.parts)
        reader_key = load_private_key(pki["reader"][0])
        assert isinstance(reader_key, rsa.RSAPrivateKey)
        plaintext = decrypt_xml(encrypted, reader_key)
        from lxml import etree

        assert parse_content_container(etree.fromstring(plaintext)) == sent
        msgbox.close(READER, fetched.request_id)


def test_msgbox_accounts() -> None:
    with serve(SimulatorConfig(readers=frozenset({READER.identifier}),
                               account_states={OTHER.identifier: "locked"})) as running:
        msgbox = MsgBoxClient(XtaClient(XtaEndpoint(running.url, timeout=5)))
        assert msgbox.get_status_list(READER).entries == ()
        for reader, code in ((OTHER, "9012"), (Party("azr:999999"), "9012")):
            with pytest.raises(XtaFault) as info:
                msgbox.get_status_list(reader)
            assert info.value.code == code


def test_report_delay_keeps_messages_out_of_the_mailbox() -> None:
    with serve(SimulatorConfig(report_delay=30)) as running:
        client = XtaClient(XtaEndpoint(running.url, timeout=5))
        _deliver(client)
        assert MsgBoxClient(client).get_status_list(READER).entries == ()
