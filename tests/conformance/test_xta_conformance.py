"""The hub's XTA 2.1.1 wire format held against the official XTA 2 Version 3 schema set.

Every SOAP request the client sends and every answer or fault the simulator returns must validate
against the official XSDs (SOAP 1.2 envelope, XTA-Webservice 2.1.1 global elements and exceptions,
OSCI MessageMetaData 2.02, WS-Addressing), read in place from ../shared/standards (never copied,
never fetched). Conversely the official samples must validate against the project's own subset.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import requests
from lxml import etree

from schemas.xta import MESSAGE_METADATA_XSD, WEBSERVICE_XSD, WSDL_PATH
from tests.conformance.recording import call_as_named
from tests.conformance.xta_official import (
    XENC11,
    OfficialXtaSchemas,
    official_xta_lxml_schema,
    official_xta_schemas,
)
from tests.standards import standards_path
from transport.content import Content, ContentPart
from transport.security.demopki import make_test_pki
from transport.security.encryption import encrypt_xml
from transport.security.keys import load_certificate, load_private_key
from transport.xta.client import XtaClient, XtaEndpoint
from transport.xta.container import build_content_container, generic_container
from transport.xta.metadata import BusinessScenario, MessageMetaData, MessageType, Party
from transport.xta.ns import OSCIMETA, SOAP12, WSA, WSA_ANONYMOUS, XTA
from transport.xta.simulator import Exchange, InjectedFault, SimulatorConfig, serve

OFFICIAL = standards_path("xta2-v3", module_level=True)  # skipped locally, a failure in CI, when absent
SCHEMA_DIR = OFFICIAL / "schema"
SAMPLES = OFFICIAL / "samples"

AUTHOR = Party("alp:portal-1", name="Beispiel-Portal", category="Onlinedienst")
READER = Party("azr:000100", name="ABH Musterstadt", category="Ausländerbehörde")
LOCKED_READER = Party("azr:000200", category="Ausländerbehörde")  # simulator holds the wrong key for it
ACTIONS = {
    "checkAccountActive": "http://www.xta.de/XTA/CheckAccountActive",
    "createMessageId": "http://www.xta.de/XTA/CreateMessageID",
    "sendMessage": "http://www.xta.de/XTA/SendMessage",
}
MAX_CONTAINER = 64 * 1024


def _metadata(message_id: str, reader: Party = READER, size: int | None = None) -> MessageMetaData:
    return MessageMetaData(
        author=AUTHOR, reader=reader, message_id=message_id, service="xauslaender1211OZGPORTALABH",
        business_scenario=BusinessScenario("XAUSLAENDER_DATA"),
        message_type=MessageType("OZG.Antrag.130101", "urn:xoev-de:xauslaender:codeliste:nachrichten", "26.11",
                                 "http://www.osci.de/xauslaender2611"),
        size=size, test=True,
    )


def _content(size: int = 20 * 1024) -> Content:
    return Content(
        ContentPart(b"<antrag>" + b"x" * size + b"</antrag>", "application/xml", "antrag.xml"),
        (ContentPart(b"%PDF-1.7 nachweis", "application/pdf", "nachweis.pdf", "Nachweis"),
         ContentPart(b"", "text/plain", "leer.txt")),
    )


@pytest.fixture(scope="module")
def official_schema(tmp_path_factory) -> OfficialXtaSchemas:
    return official_xta_schemas(tmp_path_factory.mktemp("xta-official"))


@dataclass
class Scenario:
    exchange: Exchange
    from_client: bool  # request rendered by XtaClient (not hand-made)


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory) -> Iterator[dict[str, Scenario]]:
    """Run every operation, answer and fault once against a simulator that records the exchanges."""
    pki = make_test_pki(tmp_path_factory.mktemp("pki"), ["reader", "intruder"])
    reader_cert = load_certificate(pki["reader"][1])
    seen: list[Exchange] = []
    config = SimulatorConfig(accounts=frozenset({AUTHOR.identifier}), max_container_bytes=MAX_CONTAINER,
                             reader_keys={LOCKED_READER.identifier: load_private_key(pki["intruder"][0])})
    result: dict[str, Scenario] = {}
    with serve(config, observer=seen.append) as sim:
        client = XtaClient(XtaEndpoint(sim.url, timeout=10))

        def record(name: str, call, *, from_client: bool = True, raises: bool = True) -> object:
            before = len(seen)
            value = call_as_named(name, call, by_client=from_client, raises=raises)  # a fault only where named
            assert len(seen) == before + 1, name
            result[name] = Scenario(seen[-1], from_client)
            return value

        def plain() -> etree._Element:
            return generic_container(build_content_container(_content()))

        def encrypted(size: int = 1024) -> etree._Element:
            return generic_container(encrypt_xml(etree.tostring(build_content_container(_content(size))), reader_cert))

        assert record("checkAccountActive", lambda: client.check_account_active(AUTHOR)) is True
        assert record("checkAccountActive_unknown_9012", lambda: client.check_account_active(Party("alp:nobody")),
                      raises=False) is False  # PermissionDenied answers "not active"
        record("createMessageId", lambda: client.create_message_id(AUTHOR))
        record("createMessageId_unknown_9012", lambda: client.create_message_id(Party("alp:nobody")))
        sent_id = client.create_message_id(AUTHOR)
        record("sendMessage_plain", lambda: client.send_message(_metadata(sent_id, size=20 * 1024), plain()))
        enc_id = client.create_message_id(AUTHOR)
        record("sendMessage_encrypted", lambda: client.send_message(_metadata(enc_id), encrypted()))
        record("sendMessage_duplicate_9024", lambda: client.send_message(_metadata(sent_id), plain()))
        record("sendMessage_not_issued_9022",
               lambda: client.send_message(_metadata("urn:de:xta:messageid:other:1"), plain()))
        big_id = client.create_message_id(AUTHOR)
        record("sendMessage_too_large_9023",
               lambda: client.send_message(_metadata(big_id), encrypted(2 * MAX_CONTAINER)))
        locked_id = client.create_message_id(AUTHOR)
        record("sendMessage_undecryptable_9052",
               lambda: client.send_message(_metadata(locked_id, reader=LOCKED_READER), encrypted()))
        virus_id = client.create_message_id(AUTHOR)
        eicar = Content(ContentPart(b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE", "text/plain", "eicar.txt"))
        record("sendMessage_virus_9060", lambda: client.send_message(
            _metadata(virus_id), generic_container(build_content_container(eicar))))
        sim.inject(InjectedFault(operation="createMessageId", code="9030"))
        record("createMessageId_technical_9030", lambda: client.create_message_id(AUTHOR))

        def raw(data: bytes) -> None:
            requests.post(sim.url, data=data, headers={"Content-Type": "application/soap+xml"}, timeout=10)

        record("malformed_xml_9000", lambda: raw(b"<oops"), from_client=False)
        record("missing_addressing_9020", lambda: raw(
            f'<e:Envelope xmlns:e="{SOAP12}"><e:Body/></e:Envelope>'.encode()), from_client=False)
        record("unknown_action_9000", lambda: raw(
            f'<e:Envelope xmlns:e="{SOAP12}" xmlns:wsa="{WSA}"><e:Header><wsa:Action>urn:x</wsa:Action>'
            f'<wsa:MessageID>urn:uuid:0</wsa:MessageID></e:Header><e:Body/></e:Envelope>'.encode()),
            from_client=False)
        record("soap11_version_mismatch", lambda: raw(
            b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>'),
            from_client=False)
        client.close()
    yield result


SCENARIOS = [
    "checkAccountActive", "checkAccountActive_unknown_9012", "createMessageId", "createMessageId_unknown_9012",
    "sendMessage_plain", "sendMessage_encrypted", "sendMessage_duplicate_9024", "sendMessage_not_issued_9022",
    "sendMessage_too_large_9023", "sendMessage_undecryptable_9052", "sendMessage_virus_9060",
    "createMessageId_technical_9030", "malformed_xml_9000", "missing_addressing_9020", "unknown_action_9000",
    "soap11_version_mismatch",
]


def _assert_valid(schema: OfficialXtaSchemas, data: bytes) -> etree._Element:
    root = etree.fromstring(data)
    errors = schema.errors(root)  # xmlschema and libxml2 both
    assert not errors, errors
    # The envelope's Header/Body/Detail content is "lax": make sure each child was really checked,
    # i.e. is declared in the official set, instead of being skipped as unknown.
    declared = schema.xmlschema.maps.elements
    children = [c for part in (f"{{{SOAP12}}}Header", f"{{{SOAP12}}}Body") for el in root.findall(part) for c in el]
    children += [c for d in root.iter(f"{{{SOAP12}}}Detail") for c in d]
    for child in children:
        if isinstance(child.tag, str) and child.tag != f"{{{SOAP12}}}Fault":
            assert child.tag in declared, f"{child.tag} is not declared in the official schemas"
    return root


def test_every_scenario_ran(scenarios) -> None:
    assert sorted(scenarios) == sorted(SCENARIOS)


@pytest.mark.parametrize("name", SCENARIOS)
def test_simulator_answer_validates(official_schema, scenarios, name) -> None:
    exchange = scenarios[name].exchange
    root = _assert_valid(official_schema, exchange.response)
    fault = root.find(f"{{{SOAP12}}}Body/{{{SOAP12}}}Fault")
    expected_code = name.rpartition("_")[2] if name.rpartition("_")[2].isdigit() else None
    if name == "soap11_version_mismatch":
        assert exchange.status == 500
        assert fault.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Value") == "soap-env:VersionMismatch"
    elif expected_code is None:
        assert exchange.status == 200 and fault is None
        assert root.findtext(f"{{{SOAP12}}}Header/{{{WSA}}}Action") == ACTIONS[exchange.operation]
    else:
        assert fault is not None
        assert fault.findtext(f".//{{{XTA}}}errorCode/code") == expected_code
        assert exchange.status == (500 if expected_code == "9030" else 400)
    if name == "createMessageId":
        assert root.find(f"{{{SOAP12}}}Body/{{{WSA}}}MessageID") is not None


@pytest.mark.parametrize("name", [n for n in SCENARIOS
                                  if not n.startswith(("malformed", "missing", "unknown_", "soap11"))])
def test_client_request_validates(official_schema, scenarios, name) -> None:
    scenario = scenarios[name]
    assert scenario.from_client
    root = _assert_valid(official_schema, scenario.exchange.request)
    header = root.find(f"{{{SOAP12}}}Header")
    operation = scenario.exchange.operation
    assert header.findtext(f"{{{WSA}}}Action") == ACTIONS[operation]
    assert header.findtext(f"{{{WSA}}}MessageID").startswith("urn:uuid:")
    assert header.findtext(f"{{{WSA}}}To").endswith("/xta")
    assert header.findtext(f"{{{WSA}}}ReplyTo/{{{WSA}}}Address") == WSA_ANONYMOUS
    if operation == "sendMessage":
        assert header.find(f"{{{OSCIMETA}}}MessageMetaData") is not None
        assert root.find(f"{{{SOAP12}}}Body/{{{XTA}}}GenericContentContainer") is not None
    else:
        assert header.find(f"{{{OSCIMETA}}}Author") is not None
        assert len(root.find(f"{{{SOAP12}}}Body")) == 0


def test_libxml2_needs_the_imported_xml_enc_11_schema(official_schema, scenarios, tmp_path) -> None:
    """The hub's RSA-OAEP key transport writes xenc11:MGF under a strict wildcard: libxml2 accepts it only
    with XML-Enc 1.1 imported (xmlschema would quietly use its bundled copy), so both validators run."""
    root = etree.fromstring(scenarios["sendMessage_encrypted"].exchange.request)
    assert root.find(f".//{{{XENC11}}}MGF") is not None
    without = official_xta_lxml_schema(SCHEMA_DIR, tmp_path, None)
    assert not without.validate(root)
    assert "MGF" in str(without.error_log)
    assert official_schema.lxml.validate(root), official_schema.lxml.error_log


def test_encrypted_request_carries_encrypted_data(scenarios) -> None:
    root = etree.fromstring(scenarios["sendMessage_encrypted"].exchange.request)
    assert root.find(f".//{{{XTA}}}GenericContentContainer/{{http://www.w3.org/2001/04/xmlenc#}}EncryptedData") \
        is not None


# ------------------------------------------------------------------ the project's own subset


@pytest.fixture(scope="module")
def own_schemas() -> tuple[etree.XMLSchema, etree.XMLSchema]:
    return (etree.XMLSchema(etree.parse(str(WEBSERVICE_XSD))), etree.XMLSchema(etree.parse(str(MESSAGE_METADATA_XSD))))


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.xml")) if SAMPLES.is_dir() else [])
def test_official_samples_validate_against_own_subset(own_schemas, sample) -> None:
    webservice, metadata = own_schemas
    root = etree.parse(str(SAMPLES / sample)).getroot()
    checked = 0
    for el in root.iter(f"{{{OSCIMETA}}}MessageMetaData", f"{{{OSCIMETA}}}Author"):
        if el.getparent().tag == f"{{{SOAP12}}}Header" or el.tag.endswith("MessageMetaData"):
            metadata.assertValid(el)
            checked += 1
    for el in root.iter(f"{{{XTA}}}GenericContentContainer", *(f"{{{XTA}}}{n}" for n in (
            "PermissionDeniedException", "ParameterIsNotValidException", "XTAWSTechnicalProblemException"))):
        webservice.assertValid(el)
        checked += 1
    if sample.startswith(("01", "03", "04", "09", "10")):
        assert checked, "sample holds elements of the implemented subset"


def _wsdl_ops(path: Path) -> dict[str, dict[str, object]]:
    ns = {"w": "http://schemas.xmlsoap.org/wsdl/", "s": "http://schemas.xmlsoap.org/wsdl/soap12/"}
    wsam = "{http://www.w3.org/2007/05/addressing/metadata}Action"
    doc = etree.parse(str(path))
    ops: dict[str, dict[str, object]] = {}
    for op in doc.iterfind("w:portType/w:operation", ns):
        ops[op.get("name")] = {
            "input": op.find("w:input", ns).get(wsam), "output": op.find("w:output", ns).get(wsam),
            "faults": sorted(f.get("message") for f in op.iterfind("w:fault", ns)),
        }
    for binding in doc.iterfind("w:binding", ns):
        for op in binding.iterfind("w:operation", ns):
            ops[op.get("name")].update({
                "binding": binding.get("name"),
                "soapAction": op.find("s:operation", ns).get("soapAction"),
                "headers": sorted(h.get("part") for h in op.iterfind("w:input/s:header", ns)),
                "output_headers": sorted(h.get("part") for h in op.iterfind("w:output/s:header", ns)),
                "binding_faults": sorted(f.get("name") for f in op.iterfind("w:fault", ns)),
            })
    return ops


def test_own_wsdl_matches_official_operations() -> None:
    ours, official = _wsdl_ops(WSDL_PATH), _wsdl_ops(SCHEMA_DIR / "XTA.wsdl")
    assert set(ours) == set(official) == {
        "checkAccountActive", "lookupService", "createMessageId", "getTransportReport", "cancelMessage",
        "sendMessage", "sendMessageSync", "getStatusList", "getMessage", "getNextMessage", "getNextStatusList",
        "close"}
    for name, spec in ours.items():
        assert spec == official[name], name


def test_metadata_equal_after_official_round_trip(official_schema) -> None:
    """What the simulator parses back is what the client meant (no field lost on the wire)."""
    from transport.xta.soap import parse_message_metadata, render_message_metadata

    md = replace(_metadata("urn:de:xta:messageid:x:1", size=123), test=False)
    el = render_message_metadata(md)
    errors = list(official_schema.xmlschema.maps.elements[f"{{{OSCIMETA}}}MessageMetaData"].iter_errors(el))
    assert not errors, errors
    assert official_schema.lxml.validate(el), official_schema.lxml.error_log
    assert parse_message_metadata(el) == md
