"""ManagementPort and SendXtaPort beyond the basics: lookupService, transport reports, cancelMessage,
sendMessageSync, send options in the MessageMetaData, X509TokenContainer, account checks 9010-9014."""

from __future__ import annotations

import datetime as _dt
from dataclasses import replace
from pathlib import Path

import pytest
from lxml import etree
from xta_testdata import AUTHOR, READER, content, metadata

from hub.errors import XtaFault
from tests.clock import SteppedClock
from transport.security.demopki import make_test_pki
from transport.security.keys import load_certificate
from transport.xta import wire
from transport.xta.client import XtaClient, XtaEndpoint
from transport.xta.container import (
    OutgoingContainer,
    build_content_container,
    generic_container,
)
from transport.xta.metadata import DeliveryAttributes, Party
from transport.xta.mmd import parse_message_metadata
from transport.xta.mtom import Attachments
from transport.xta.ns import OSCI, OSCIMETA
from transport.xta.simulator import Exchange, SimulatorConfig, serve

SERVICE = "xauslaender1211OZGPORTALABH"
OTHER_READER = Party("azr:000200", category="Ausländerbehörde")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    return make_test_pki(tmp_path_factory.mktemp("pki"), ["reader"])


def _send(client: XtaClient, *, mtom: bool = False, **changes: object) -> str:
    message_id = client.create_message_id(AUTHOR)
    attachments = Attachments() if mtom else None
    container = OutgoingContainer(generic_container(build_content_container(content(), attachments)),
                                  attachments or Attachments())
    client.send_message(metadata(message_id, **changes), container)
    return message_id


def _client(running, **kwargs) -> XtaClient:
    return XtaClient(XtaEndpoint(running.url, timeout=5), **kwargs)


# ------------------------------------------------------------------ lookupService


def test_lookup_service_availability_and_certificate(pki) -> None:
    cert = load_certificate(pki["reader"][1])
    config = SimulatorConfig(services={READER.identifier: frozenset({SERVICE})},
                             reader_certificates={READER.identifier: cert})
    with serve(config) as running:
        client = _client(running)
        offered, not_offered, unknown = client.lookup_service(
            AUTHOR, [(READER, SERVICE), (READER, "urn:other:service"), (OTHER_READER, SERVICE)])
    assert (offered.available, not_offered.available, unknown.available) == (True, False, None)
    assert offered.reader == READER and offered.service == SERVICE
    assert wire.certificate_parameter(offered, ["ENCRYPTION_CERTIFICATE"]) == cert
    assert wire.certificate_parameter(offered, ["OTHER_CODE"]) is None
    assert not not_offered.parameters and not unknown.parameters


def test_lookup_service_permission_checks() -> None:
    config = SimulatorConfig(accounts=frozenset({AUTHOR.identifier}),
                             booked_services={AUTHOR.identifier: frozenset({SERVICE})})
    with serve(config) as running:
        client = _client(running)
        assert client.lookup_service(AUTHOR, [(READER, SERVICE)])[0].available is True
        with pytest.raises(XtaFault) as info:
            client.lookup_service(AUTHOR, [(READER, "urn:not:booked")])
        assert info.value.code == "9013"
        with pytest.raises(XtaFault) as info:
            client.lookup_service(Party("alp:nobody"), [(READER, SERVICE)])
        assert info.value.code == "9012"


# ------------------------------------------------------------------ transport reports


def test_transport_report_open_then_green() -> None:
    clock = SteppedClock()  # open until report_delay has passed on the simulator's clock, however busy the machine
    with serve(SimulatorConfig(report_delay=30, clock=clock)) as running:
        client = _client(running)
        message_id = _send(client)
        first = client.get_transport_report(AUTHOR, message_id)
        assert first.status == 0 and not first.final and first.status_name == "open"
        assert first.metadata.message_id == message_id and first.server_identity == "xta-simulator"
        assert [r.code for r in first.infos] == ["ACCEPTED"]
        clock.advance(29)
        assert client.get_transport_report(AUTHOR, message_id).status == 0  # not a moment early
        clock.advance(1)
        final = client.get_transport_report(AUTHOR, message_id)
    assert final.status == 1 and final.final and final.status_name == "green"
    assert [r.code for r in final.infos] == ["ACCEPTED", "DELIVERED"] and not final.errors
    assert final.metadata.delivery_attributes.delivery is not None


@pytest.mark.parametrize("config, reader, status, record", [
    (SimulatorConfig(report_status={READER.identifier: 3}), READER, 3, ("errors", "9032")),
    (SimulatorConfig(report_status={READER.identifier: 2}), READER, 2, ("warnings", "WARNING")),
    (SimulatorConfig(services={READER.identifier: frozenset({"urn:other"})}), READER, 3, ("errors", "9032")),
])
def test_transport_report_red_and_yellow(config, reader, status, record) -> None:
    with serve(config) as running:
        client = _client(running)
        report = client.get_transport_report(AUTHOR, _send(client, reader=reader))
    kind, code = record
    assert report.status == status
    assert [r.code for r in getattr(report, kind)] == [code]
    assert getattr(report, kind)[0].reason and getattr(report, kind)[0].list_uri


def test_transport_report_of_unknown_or_foreign_message_is_9070() -> None:
    with serve(SimulatorConfig()) as running:
        client = _client(running)
        message_id = _send(client)
        for author, ident in ((AUTHOR, "urn:de:xta:messageid:nope"), (Party("alp:someone-else"), message_id)):
            with pytest.raises(XtaFault) as info:
                client.get_transport_report(author, ident)
            assert (info.value.exception_type, info.value.code) == ("InvalidMessageIDException", "9070")


# ------------------------------------------------------------------ cancelMessage


def test_cancel_message() -> None:
    later = _dt.datetime.now(_dt.UTC) + _dt.timedelta(hours=1)
    with serve(SimulatorConfig()) as running:
        client = _client(running)
        without = _send(client)
        with pytest.raises(XtaFault) as info:
            client.cancel_message(AUTHOR, without)
        assert (info.value.exception_type, info.value.code) == ("CancelDeniedException", "9101")
        held = _send(client, delivery_attributes=DeliveryAttributes(not_before=later))
        assert client.get_transport_report(AUTHOR, held).status == 0  # held until NotBefore
        client.cancel_message(AUTHOR, held)
        report = client.get_transport_report(AUTHOR, held)
        assert report.status == 3 and "cancelled" in report.errors[0].reason
        past = _send(client, delivery_attributes=DeliveryAttributes(
            not_before=_dt.datetime.now(_dt.UTC) - _dt.timedelta(minutes=1)))
        with pytest.raises(XtaFault) as info:
            client.cancel_message(AUTHOR, past)
        assert info.value.code == "9100"
        with pytest.raises(XtaFault) as info:
            client.cancel_message(AUTHOR, "urn:de:xta:messageid:unknown")
        assert info.value.code == "9022"


# ------------------------------------------------------------------ send port: options and sync


def test_send_options_reach_the_server_in_metadata() -> None:
    seen: list[Exchange] = []
    attributes = DeliveryAttributes(service_quality="PRIORITY", receipt_requests=("Reception", "Delivery"),
                                    receipt_to="https://portal.example/receipts",
                                    obsolete_after=_dt.date(2031, 1, 31))
    with serve(SimulatorConfig(), observer=seen.append) as running:
        client = _client(running)
        message_id = _send(client, test=True, delivery_attributes=attributes, subject="Antrag")
        stored = running.store.get(message_id)
    md = stored.metadata
    assert md.test and md.subject == "Antrag"
    assert md.delivery_attributes.receipt_requests == ("Delivery", "Reception")  # schema order
    assert md.delivery_attributes.service_quality == "PRIORITY"
    assert md.delivery_attributes.receipt_to == "https://portal.example/receipts"
    assert md.delivery_attributes.obsolete_after == _dt.date(2031, 1, 31)
    header = etree.fromstring(seen[-1].request).find(f".//{{{OSCIMETA}}}MessageMetaData")
    assert parse_message_metadata(header) == replace(md)


def test_x509_token_container_header(pki) -> None:
    seen: list[Exchange] = []
    cert = load_certificate(pki["reader"][1])
    with serve(SimulatorConfig(), observer=seen.append) as running:
        client = _client(running)
        message_id = client.create_message_id(AUTHOR)
        client.send_message(metadata(message_id), generic_container(build_content_container(content())),
                            certificates=[cert])
    token = etree.fromstring(seen[-1].request).find(f".//{{{OSCI}}}X509TokenContainer")
    assert wire.parse_x509_token_container(token) == [cert]


@pytest.mark.parametrize("mtom", [False, True])
def test_send_message_sync(mtom) -> None:
    with serve(SimulatorConfig()) as running:
        client = _client(running)
        message_id = client.create_message_id(AUTHOR)
        attachments = Attachments() if mtom else None
        outgoing = OutgoingContainer(generic_container(build_content_container(content(), attachments)),
                                     attachments or Attachments())
        answer = client.send_message_sync(metadata(message_id), outgoing)
        assert running.store.get(message_id) is not None
    assert answer.metadata.in_reply_to == (message_id,)
    assert (answer.metadata.author, answer.metadata.reader) == (READER, AUTHOR)
    from transport.xta.container import parse_content_container

    reply = parse_content_container(answer.container, answer.parts or None)
    assert message_id.encode() in reply.message.data


def test_sync_async_faults() -> None:
    with serve(SimulatorConfig(sync_services=frozenset({"urn:sync:only"}))) as running:
        client = _client(running)
        with pytest.raises(XtaFault) as info:
            client.send_message_sync(metadata(client.create_message_id(AUTHOR)),
                                     generic_container(build_content_container(content())))
        assert (info.value.exception_type, info.value.code) == ("SyncAsyncException", "9080")
        with pytest.raises(XtaFault) as info:
            _send(client, service="urn:sync:only")
        assert info.value.code == "9081"


# ------------------------------------------------------------------ accounts 9010-9014


@pytest.mark.parametrize("config, code", [
    (SimulatorConfig(account_states={AUTHOR.identifier: "expired"}), "9010"),
    (SimulatorConfig(account_states={AUTHOR.identifier: "locked"}), "9011"),
    (SimulatorConfig(accounts=frozenset({"alp:other"})), "9012"),
    (SimulatorConfig(booked_services={AUTHOR.identifier: frozenset({"urn:other"})}), "9013"),
    (SimulatorConfig(client_certificates={AUTHOR.identifier: "00" * 32}), "9014"),
])
def test_account_checks(config, code) -> None:
    with serve(config) as running:
        client = _client(running)
        if code == "9013":  # service-specific: the account itself is fine
            assert client.check_account_active(AUTHOR)
            with pytest.raises(XtaFault) as info:
                _send(client)
        else:
            assert client.check_account_active(AUTHOR) is False
            with pytest.raises(XtaFault) as info:
                client.create_message_id(AUTHOR)
    assert (info.value.exception_type, info.value.code, info.value.transient) == (
        "PermissionDeniedException", code, False)


def test_mtom_request_is_accepted_and_recorded() -> None:
    with serve(SimulatorConfig()) as running:
        client = _client(running)
        message_id = _send(client, mtom=True)
        stored = running.store.get(message_id)
    assert stored.mtom and [p.data for p in stored.parts] == [p.data for p in content().parts]
