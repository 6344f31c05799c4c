"""The return channel's message types (OZG.RueckkanalFrage.130102, OZG.Statusmeldung.130104,
OZG.Terminmitteilung.130105): the project's schema subsets, hub.samples.make_ozg_reply, and the
demo configuration that registers them."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import xmlschema
from lxml import etree

from hub.config import load_config
from hub.errors import SchemaViolation
from hub.runtime import build_registry
from hub.samples import (
    OZG_RUECKKANALFRAGE,
    OZG_STATUSMELDUNG,
    OZG_TERMINMITTEILUNG,
    REPLY_ROOTS,
    make_ozg_reply,
)
from schemas import XAUSLAENDER_NAMESPACE, builtin_schema
from transport.xta.metadata import Party

ROOT = Path(__file__).resolve().parents[3]
PORTAL = Party("alp:000001", "OZG-Portal (Test)", "Ausländerportal")
ABH = Party("azr:000100", "Ausländerbehörde Musterstadt (Test)")
SCHEMAS = {
    OZG_RUECKKANALFRAGE: "xauslaender/ozg-rueckkanalfrage-130102.xsd",
    OZG_STATUSMELDUNG: "xauslaender/ozg-statusmeldung-130104.xsd",
    OZG_TERMINMITTEILUNG: "xauslaender/ozg-terminmitteilung-130105.xsd",
}
HARDENED = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)
TYPES = sorted(SCHEMAS)


def _reply(message_type: str, seed: int = 7, ref: str = "OZG-ANTRAG-00000007") -> tuple[bytes, str]:
    return make_ozg_reply(message_type, reader=PORTAL, author=ABH, antragsidentifikation=ref, seed=seed)


@pytest.fixture(scope="module")
def compiled() -> dict[str, tuple[etree.XMLSchema, xmlschema.XMLSchema]]:
    return {mt: (etree.XMLSchema(etree.parse(str(builtin_schema(path)))), xmlschema.XMLSchema(str(builtin_schema(path))))
            for mt, path in SCHEMAS.items()}


def _verdicts(schemas: tuple[etree.XMLSchema, xmlschema.XMLSchema], document: etree._Element) -> tuple[bool, bool]:
    lxml_schema, xs_schema = schemas
    return lxml_schema.validate(document), xs_schema.is_valid(document)


@pytest.mark.parametrize("message_type", TYPES)
@pytest.mark.parametrize("seed", [0, 1, 7, 123_456_789])
def test_every_sample_reply_is_valid_for_lxml_and_xmlschema(compiled, message_type, seed) -> None:
    xml, reply_uuid = _reply(message_type, seed)
    document = etree.fromstring(xml, HARDENED)

    assert _verdicts(compiled[message_type], document) == (True, True), compiled[message_type][0].error_log
    root_name, number = REPLY_ROOTS[message_type]
    assert document.tag == f"{{{XAUSLAENDER_NAMESPACE}}}{root_name}"
    assert document.findtext("nachrichtenkopf.g2g/identifikation.nachricht/nachrichtenUUID") == reply_uuid
    assert document.findtext("nachrichtenkopf.g2g/identifikation.nachricht/nachrichtentyp/code") == number
    assert document.findtext("antragsidentifikation") == "OZG-ANTRAG-00000007"
    assert document.findtext("nachrichtenkopf.g2g/leser/behoerdenkennung/praefix/code") == "alp"
    assert document.findtext("nachrichtenkopf.g2g/autor/behoerdenkennung/kennung/code") == "000100"


def test_root_names_follow_the_style_of_the_application() -> None:
    antrag = etree.parse(str(builtin_schema("xauslaender/ozg-antrag-130101.xsd"))).getroot()
    assert antrag.find("{http://www.w3.org/2001/XMLSchema}element").get("name") == "ozg.antrag.130101"
    for message_type, path in SCHEMAS.items():
        schema = etree.parse(str(builtin_schema(path))).getroot()
        assert schema.get("targetNamespace") == XAUSLAENDER_NAMESPACE
        [root] = schema.findall("{http://www.w3.org/2001/XMLSchema}element")
        prefix, name, number = message_type.split(".")
        assert root.get("name") == f"{prefix.lower()}.{name[0].lower()}{name[1:]}.{number}" == REPLY_ROOTS[message_type][0]


@pytest.mark.parametrize("message_type", TYPES)
def test_samples_are_deterministic_and_distinct(message_type) -> None:
    assert _reply(message_type, 7) == _reply(message_type, 7)
    assert _reply(message_type, 7)[1] != _reply(message_type, 8)[1]
    others = {_reply(other, 7)[1] for other in TYPES if other != message_type}
    assert _reply(message_type, 7)[1] not in others  # the UUID depends on the message type too


def test_unknown_reply_type_is_refused() -> None:
    with pytest.raises(ValueError, match="no sample reply"):
        _reply("OZG.Antrag.130101")


def _drop(path: str) -> Callable[[etree._Element], None]:
    def mutate(root: etree._Element) -> None:
        el = root.find(path)
        el.getparent().remove(el)
    return mutate


def _set(path: str, text: str) -> Callable[[etree._Element], None]:
    def mutate(root: etree._Element) -> None:
        root.find(path).text = text
    return mutate


BROKEN = {
    "no antragsidentifikation": (TYPES, _drop("antragsidentifikation")),
    "empty antragsidentifikation": (TYPES, _set("antragsidentifikation", "")),
    "no nachrichtenkopf": (TYPES, _drop("nachrichtenkopf.g2g")),
    "wrong nachrichtentyp": (TYPES, _set("nachrichtenkopf.g2g/identifikation.nachricht/nachrichtentyp/code", "130101")),
    "not a UUID": (TYPES, _set("nachrichtenkopf.g2g/identifikation.nachricht/nachrichtenUUID", "nope")),
    "no question": ([OZG_RUECKKANALFRAGE], _drop("frage")),
    "no question text": ([OZG_RUECKKANALFRAGE], _drop("frage/frageText")),
    "unknown status code": ([OZG_STATUSMELDUNG], _set("status/bearbeitungsstatus/code", "99")),
    "no status text": ([OZG_STATUSMELDUNG], _drop("status/statustext")),
    "appointment without time": ([OZG_TERMINMITTEILUNG], _drop("termin/beginn")),
    "appointment time not a dateTime": ([OZG_TERMINMITTEILUNG], _set("termin/beginn", "morgen")),
    "bad postcode": ([OZG_TERMINMITTEILUNG], _set("termin/ort/postleitzahl", "1234")),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_replies_are_refused_by_both_validators(compiled, case) -> None:
    types, mutate = BROKEN[case]
    for message_type in types:
        document = copy.deepcopy(etree.fromstring(_reply(message_type)[0], HARDENED))
        mutate(document)
        assert _verdicts(compiled[message_type], document) == (False, False), f"{case}: {message_type}"


def test_a_reply_is_refused_by_another_types_schema(compiled) -> None:
    for message_type in TYPES:
        document = etree.fromstring(_reply(message_type)[0], HARDENED)
        for other in TYPES:
            if other != message_type:
                assert _verdicts(compiled[other], document) == (False, False)


def test_demo_config_registers_the_reply_types_with_their_schemas() -> None:
    config = load_config(ROOT / "examples" / "demo.toml", environ={})
    registry, types = build_registry(config)
    assert set(config.mailboxes["demo-portal"].message_types) == set(TYPES)
    for message_type in TYPES:
        assert types[message_type].list_uri == "urn:xoev-de:xauslaender:codeliste:nachrichtentyp"
        registry.validate(message_type, etree.fromstring(_reply(message_type)[0], HARDENED))
        with pytest.raises(SchemaViolation):
            other = next(t for t in TYPES if t != message_type)
            registry.validate(message_type, etree.fromstring(_reply(other)[0], HARDENED))
