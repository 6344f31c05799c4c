"""The xta2 delivery profile (adapters/xta2.py) against the simulator: size limit, options, lookups,
transport reports, faults."""

from __future__ import annotations

from pathlib import Path

import pytest
from xta_testdata import AUTHOR, MESSAGE_TYPE, READER

from adapters.base import Delivery
from adapters.xta2 import Xta2Adapter, Xta2Receipt
from hub.errors import ContentTooLarge
from tests.clock import SteppedClock
from tests.support.deliveries import xta_delivery
from transport.content import Content, ContentPart
from transport.security.demopki import make_test_pki
from transport.security.keys import (
    load_certificate,
    load_private_key,
    load_signing_identity,
)
from transport.xta.client import XtaEndpoint
from transport.xta.simulator import Exchange, SimulatorConfig, serve


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    return make_test_pki(tmp_path_factory.mktemp("pki"), ["portal", "reader", "other"])


@pytest.fixture(scope="module")
def identity(pki):
    return load_signing_identity(*pki["portal"])


def delivery(pki, size: int = 1000, *, reader=READER, service: str = "xauslaender1211OZGPORTALABH") -> Delivery:
    return xta_delivery(
        Content(ContentPart(b"<a>" + b"x" * max(0, size - 7) + b"</a>", "application/xml", "antrag.xml")),
        message_id="m-1", author=AUTHOR, reader=reader, certificate=load_certificate(pki["reader"][1]),
        service=service, message_type=MESSAGE_TYPE, business_scenario="XAUSLAENDER_DATA")


@pytest.fixture()
def sim(pki):
    config = SimulatorConfig(reader_keys={READER.identifier: load_private_key(pki["reader"][0])},
                             trusted_signers=(load_certificate(pki["ca"][1]),))
    with serve(config) as running:
        yield running


def adapter(sim, identity, **options) -> Xta2Adapter:
    return Xta2Adapter("alpha", endpoint=XtaEndpoint(sim.url, timeout=10), author=AUTHOR, identity=identity,
                       options=options)


def test_size_limit_is_checked_before_anything_is_sent(sim, identity, pki) -> None:
    xta = adapter(sim, identity, max_container_bytes=4096)
    with pytest.raises(ContentTooLarge, match="max_container_bytes") as info:
        xta.deliver(delivery(pki, 5000), "urn:de:xta:messageid:unused")
    assert not info.value.transient and info.value.reason == "content_too_large"
    assert "5000 bytes" in str(info.value) and "4096" in str(info.value)
    assert sim.store.stats()["calls"] == {}  # refused before any SOAP call
    # the signature part counts too: content below the limit, signed content above it
    with pytest.raises(ContentTooLarge):
        xta.deliver(delivery(pki, 4000), "urn:de:xta:messageid:unused")
    xta.deliver(delivery(pki, 1000), xta.new_transport_id())
    assert len(sim.store) == 1
    xta.close()


# ------------------------------------------------------------------ options


def test_options_are_validated_with_the_key_named(sim, identity, tmp_path) -> None:
    from adapters.xta2 import Xta2Options
    from hub.errors import ConfigError

    for bad, key in (({"sned_mode": "sync"}, "sned_mode"), ({"send_mode": "later"}, "send_mode"),
                     ({"receipt_requests": ["Bogus"]}, "receipt_requests"), ({"max_container_bytes": 0},
                                                                              "max_container_bytes")):
        with pytest.raises(ConfigError, match=key):
            Xta2Options.from_mapping(bad)
    opts = Xta2Options.from_mapping({"tls_ca_bundle": "certs/ca.pem", "wsdl": "/abs/x.wsdl"}, tmp_path)
    assert opts.tls_ca_bundle == tmp_path / "certs/ca.pem" and str(opts.wsdl) == "/abs/x.wsdl"
    assert Xta2Options().mtom and Xta2Options().send_mode == "async" and Xta2Options().tls() is None


def test_metadata_carries_the_profile_options(sim, identity, pki) -> None:
    xta = adapter(sim, identity, test_message=True, service_quality="PRIO", receipt_requests=["Reception"],
                  receipt_to="https://portal/receipts", business_scenario_list_uri="urn:list:bs",
                  business_scenario_list_version="9", message_type_list_uri="urn:list:mt",
                  message_type_list_version="7", payload_schema="urn:schema", obsolete_after_days=30)
    message_id = xta.new_transport_id()
    xta.deliver(delivery(pki), message_id)
    md = sim.store.get(message_id).metadata
    assert md.test is True
    assert md.delivery_attributes.service_quality == "PRIO"
    assert md.delivery_attributes.receipt_requests == ("Reception",)
    assert md.delivery_attributes.receipt_to == "https://portal/receipts"
    assert md.delivery_attributes.obsolete_after is not None
    assert (md.business_scenario.list_uri, md.business_scenario.list_version) == ("urn:list:bs", "9")
    assert (md.message_type.list_uri, md.message_type.list_version, md.message_type.payload_schema) == (
        "urn:list:mt", "7", "urn:schema")
    undefined = adapter(sim, identity, business_scenario_undefined=True)
    other_id = undefined.new_transport_id()
    undefined.deliver(delivery(pki), other_id)
    assert sim.store.get(other_id).metadata.business_scenario.defined is False


@pytest.mark.parametrize("options", [{}, {"mtom": False}, {"encrypt": False}, {"encrypt": False, "mtom": False},
                                     {"sign": False, "encrypt": False}])
def test_every_mtom_encrypt_combination_arrives_intact(pki, identity, options) -> None:
    trusted = () if options.get("sign") is False else (load_certificate(pki["ca"][1]),)
    config = SimulatorConfig(reader_keys={READER.identifier: load_private_key(pki["reader"][0])},
                             trusted_signers=trusted)
    sent = delivery(pki, 300_000)
    with serve(config) as running:
        xta = adapter(running, identity, **options)
        message_id = xta.new_transport_id()
        xta.deliver(sent, message_id)
        stored = running.store.get(message_id)
    assert stored.parts[0].data == sent.content.message.data
    assert stored.mtom is options.get("mtom", True)
    assert stored.verified is (options.get("sign") is not False)


def test_sync_mode_returns_the_readers_answer(sim, identity, pki) -> None:
    xta = adapter(sim, identity, send_mode="sync")
    message_id = xta.new_transport_id()
    receipt = xta.deliver(delivery(pki), message_id)
    assert isinstance(receipt, Xta2Receipt)
    assert receipt.transport_message_id == message_id
    assert receipt.sync_metadata.in_reply_to == (message_id,)
    assert message_id.encode() in receipt.sync_content.message.data


def test_x509_token_container_option(identity, pki) -> None:
    seen: list[Exchange] = []
    with serve(SimulatorConfig(), observer=seen.append) as running:
        xta = adapter(running, identity, x509_token_container=True, encrypt=False)
        xta.deliver(delivery(pki), xta.new_transport_id())
    from lxml import etree

    from transport.xta import mtom, wire
    from transport.xta.ns import OSCI

    root = etree.fromstring(mtom.parse_multipart(seen[-1].request, seen[-1].request_content_type).root)
    certs = wire.parse_x509_token_container(root.find(f".//{{{OSCI}}}X509TokenContainer"))
    assert certs == [identity.certificate, load_certificate(pki["reader"][1])]


def test_resend_after_lost_answer_counts_as_delivered(sim, identity, pki) -> None:
    from hub.errors import EndpointUnavailable
    from transport.xta.simulator import InjectedFault

    xta = adapter(sim, identity)
    message_id = xta.new_transport_id()
    sim.inject(InjectedFault(operation="sendMessage", drop=True, after_processing=True))
    with pytest.raises(EndpointUnavailable):
        xta.deliver(delivery(pki), message_id)
    receipt = xta.deliver(delivery(pki), message_id, resend=True)
    assert receipt.accepted_on_resend and not receipt.duplicate and receipt.transport_message_id == message_id
    assert len(sim.store) == 1


# ------------------------------------------------------------------ lookupService


def test_lookup_is_cached_per_destination(identity, pki) -> None:
    config = SimulatorConfig(services={READER.identifier: frozenset({"xauslaender1211OZGPORTALABH"})})
    with serve(config) as running:
        xta = adapter(running, identity, encrypt=False, lookup_ttl=3600)
        for _ in range(3):
            xta.deliver(delivery(pki), xta.new_transport_id())
        assert running.store.stats()["calls"]["lookupService"] == 1
        short = adapter(running, identity, encrypt=False, lookup_ttl=0)
        short.deliver(delivery(pki), short.new_transport_id())
        short.deliver(delivery(pki), short.new_transport_id())
        assert running.store.stats()["calls"]["lookupService"] == 3
        off = adapter(running, identity, encrypt=False, lookup_service=False)
        off.deliver(delivery(pki), off.new_transport_id())
        assert running.store.stats()["calls"]["lookupService"] == 3


def test_service_not_offered_is_a_permanent_directory_error(identity, pki) -> None:
    from hub.errors import DirectoryError

    config = SimulatorConfig(services={READER.identifier: frozenset({"urn:something:else"})})
    with serve(config) as running:
        xta = adapter(running, identity)
        with pytest.raises(DirectoryError, match="does not offer") as info:
            xta.deliver(delivery(pki), "urn:de:xta:messageid:unused")
        assert not info.value.transient and info.value.reason == "xta_service_unavailable"
        assert "sendMessage" not in running.store.stats()["calls"]


@pytest.mark.parametrize("mode", ["directory", "lookup", "match"])
def test_reader_certificate_from_lookup(identity, pki, mode) -> None:
    """The server returns 'other' as the reader's encryption certificate; the directory holds 'reader'."""
    from hub.errors import SecurityError

    config = SimulatorConfig(reader_certificates={READER.identifier: load_certificate(pki["other"][1])},
                             reader_keys={READER.identifier: load_private_key(pki["other"][0])})
    with serve(config) as running:
        xta = adapter(running, identity, reader_certificate=mode)
        message_id = xta.new_transport_id()
        if mode == "match":
            with pytest.raises(SecurityError, match="another encryption certificate"):
                xta.deliver(delivery(pki), message_id)
            return
        if mode == "directory":  # encrypted for the directory's certificate: 'other' cannot decrypt
            from hub.errors import XtaFault

            with pytest.raises(XtaFault) as info:
                xta.deliver(delivery(pki), message_id)
            assert info.value.code == "9052"
            return
        xta.deliver(delivery(pki), message_id)
        assert running.store.get(message_id).parts[0].data == delivery(pki).content.message.data


# ------------------------------------------------------------------ transport reports, cancel, check


def test_transport_report_result(identity, pki) -> None:
    clock = SteppedClock()  # the report turns final when the test steps the clock, not when the machine is idle
    with serve(SimulatorConfig(report_delay=30, report_status={"azr:000200": 3}, clock=clock)) as running:
        xta = adapter(running, identity, encrypt=False)
        green_id, red_id = xta.new_transport_id(), xta.new_transport_id()
        xta.deliver(delivery(pki), green_id)
        from transport.xta.metadata import Party

        xta.deliver(delivery(pki, reader=Party("azr:000200")), red_id)
        first = xta.transport_report(green_id)
        assert (first.status, first.status_name, first.final) == (0, "open", False)
        clock.advance(30)
        green, red = xta.transport_report(green_id), xta.transport_report(red_id)
    assert (green.status, green.status_name, green.final, green.errors) == (1, "green", True, ())
    assert (red.status, red.status_name) == (3, "red") and red.errors[0].code == "9032"
    detail = red.detail()
    assert detail["status"] == 3 and detail["errors"][0]["code"] == "9032" and detail["xta_message_id"] == red_id
    import json

    json.dumps(detail)  # fit for a status event


def test_check_and_cancel(identity, pki) -> None:
    from hub.errors import XtaFault

    with (serve(SimulatorConfig(account_states={AUTHOR.identifier: "locked"})) as running,
          pytest.raises(XtaFault, match="not active")):
        adapter(running, identity).check()
    with serve(SimulatorConfig()) as running:
        xta = adapter(running, identity, encrypt=False)
        xta.check()
        message_id = xta.new_transport_id()
        xta.deliver(delivery(pki), message_id)
        with pytest.raises(XtaFault) as info:
            xta.cancel(message_id)  # no NotBefore: nothing to cancel
        assert info.value.code == "9101"
