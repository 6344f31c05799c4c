"""hub.samples against the shipped OZG.Antrag.130101 schema, and that schema against the code lists."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from lxml import etree

from hub.errors import ConfigError, SchemaViolation
from hub.samples import (
    ANTRAGSGRUENDE,
    ANTRAGSGRUND_LIST,
    AUFENTHALTSZWECK_LIST,
    AUFENTHALTSZWECKE,
    make_attachment,
    make_ozg_application,
)
from schemas import (
    BUILTIN_SCHEMAS,
    OZG_ANTRAG_130101,
    XAUSLAENDER_NAMESPACE,
    builtin_schema,
    register_builtin_schemas,
)
from schemas.registry import SchemaRegistry
from tests.standards import standards_path
from transport.xta.metadata import Party

READER = Party(identifier="azr:000100", name="Ausländerbehörde Musterstadt (Test)")
AUTHOR = Party(identifier="alp:000001", name="Demo-Portal")
XS = "{http://www.w3.org/2001/XMLSchema}"
# Parsed as the worker parses payloads: no DTDs, no entities, no network.
HARDENED = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    reg = SchemaRegistry()
    register_builtin_schemas(reg)
    reg.preload()
    return reg


def parse(data: bytes) -> etree._Element:
    return etree.fromstring(data, HARDENED)


def test_builtin_schema_is_located_by_message_type_or_file_name() -> None:
    by_type = builtin_schema(OZG_ANTRAG_130101)

    assert by_type.is_file()
    assert builtin_schema(BUILTIN_SCHEMAS[OZG_ANTRAG_130101]) == by_type
    with pytest.raises(ConfigError):
        builtin_schema("gibt-es-nicht.xsd")
    with pytest.raises(ConfigError):
        builtin_schema("../hub/errors.py")


def test_schema_says_it_is_a_project_subset() -> None:
    root = etree.parse(str(builtin_schema(OZG_ANTRAG_130101))).getroot()

    assert root.get("targetNamespace") == XAUSLAENDER_NAMESPACE
    note = root.findtext(f"{XS}annotation/{XS}documentation") or ""
    assert "PROJECT SUBSET" in note and "NOT the official" in note


@pytest.mark.parametrize("seed", [0, 1, 2, 7, 42, 99, 12345, 2**31, 2**62 - 1])
def test_samples_validate_for_many_seeds(registry: SchemaRegistry, seed: int) -> None:
    attachment, _, _ = make_attachment(seed)
    for with_attachment in (None, attachment):
        data, _ = make_ozg_application(reader=READER, author=AUTHOR, seed=seed,
                                       attachment=with_attachment)
        registry.validate(OZG_ANTRAG_130101, parse(data))


def test_samples_are_deterministic_per_seed() -> None:
    first = make_ozg_application(reader=READER, author=AUTHOR, seed=5, attachment=b"%PDF-1.7 x")
    again = make_ozg_application(reader=READER, author=AUTHOR, seed=5, attachment=b"%PDF-1.7 x")
    other = make_ozg_application(reader=READER, author=AUTHOR, seed=6, attachment=b"%PDF-1.7 x")

    assert first == again
    assert other[1] != first[1]
    assert len({make_ozg_application(reader=READER, author=AUTHOR, seed=s)[1] for s in range(200)}) == 200


def test_sample_carries_its_uuid_and_header(registry: SchemaRegistry) -> None:
    data, message_uuid = make_ozg_application(reader=READER, author=AUTHOR, seed=3, test=False)
    root = parse(data)

    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert uuid.UUID(message_uuid).version == 4
    assert root.tag == f"{{{XAUSLAENDER_NAMESPACE}}}ozg.antrag.130101"
    assert root.findtext("nachrichtenkopf.g2g/identifikation.nachricht/nachrichtenUUID") == message_uuid
    assert root.findtext("nachrichtenkopf.g2g/identifikation.nachricht/nachrichtentyp/code") == "130101"
    leser = root.find("nachrichtenkopf.g2g/leser/behoerdenkennung")
    assert (leser.findtext("praefix/code"), leser.findtext("kennung/code")) == ("azr", "000100")
    assert root.findtext("nachrichtenkopf.g2g/autor/behoerdenkennung/praefix/code") == "alp"
    assert root.get("standard") == "XAusländer" and root.get("version") == "26.11"
    assert root.get("test") == "false"
    assert root.find("anlage") is None
    registry.validate(OZG_ANTRAG_130101, root)


def test_anlage_describes_the_attachment() -> None:
    attachment, filename, content_type = make_attachment(11, size=5000)
    data, _ = make_ozg_application(reader=READER, author=AUTHOR, seed=11, attachment=attachment)
    anlage = parse(data).find("anlage")

    assert anlage.findtext("dateiname") == filename
    assert anlage.findtext("mimeType") == content_type == "application/pdf"
    assert anlage.findtext("groesse") == "5000"
    assert anlage.findtext("sha256") == hashlib.sha256(attachment).hexdigest()


def test_attachment_is_a_deterministic_pdf_of_the_requested_size() -> None:
    data, filename, content_type = make_attachment(9)

    assert len(data) == 24_000
    assert data.startswith(b"%PDF-1.7") and data.rstrip().endswith(b"%%EOF")
    assert (filename, content_type) == ("nachweis-9.pdf", "application/pdf")
    assert make_attachment(9) == (data, filename, content_type)
    assert make_attachment(10)[0] != data
    assert len(make_attachment(9, size=1_000_000)[0]) == 1_000_000
    with pytest.raises(ValueError):
        make_attachment(9, size=10)


def test_markup_in_party_names_is_escaped(registry: SchemaRegistry) -> None:
    tricky = Party(identifier="azr:000200", name='ABH <Test> & "Söhne" </name>')
    data, _ = make_ozg_application(reader=tricky, author=AUTHOR, seed=1)

    root = parse(data)
    assert root.findtext("nachrichtenkopf.g2g/leser/name") == tricky.name
    registry.validate(OZG_ANTRAG_130101, root)


def test_identifier_without_praefix_is_refused() -> None:
    with pytest.raises(ValueError, match="praefix:kennung"):
        make_ozg_application(reader=Party(identifier="000100"), author=AUTHOR, seed=1)


def test_identifier_splits_on_the_first_colon(registry: SchemaRegistry) -> None:
    data, _ = make_ozg_application(reader=Party(identifier="azr:000100:x"), author=AUTHOR, seed=1)

    assert parse(data).findtext("nachrichtenkopf.g2g/leser/behoerdenkennung/kennung/code") == "000100:x"
    with pytest.raises(SchemaViolation, match="element 'code': value does not match the pattern"):
        registry.validate(OZG_ANTRAG_130101, parse(data))  # ':' is not allowed in a kennung


@pytest.mark.parametrize(
    ("xpath", "attribute", "value", "expected"),
    [
        ("aufenthaltszweck", "listVersionID", "1", "attribute 'listVersionID': value differs"),
        ("antragsgrund/code", None, "08", "element 'code': value not in the enumeration"),
        ("nachrichtenkopf.g2g/identifikation.nachricht/nachrichtenUUID", None, "kein-uuid",
         "element 'nachrichtenUUID': value does not match the pattern"),
        ("antragsteller/geburtsdatum", None, "31.12.1990", "value not valid for its datatype"),
        (".", "version", "26.05", "attribute 'version': value differs"),
    ],
)
def test_mutated_samples_are_rejected(
    registry: SchemaRegistry, xpath: str, attribute: str | None, value: str, expected: str
) -> None:
    data, _ = make_ozg_application(reader=READER, author=AUTHOR, seed=4)
    root = parse(data)
    target = root.find(xpath)
    if attribute is None:
        target.text = value
    else:
        target.set(attribute, value)

    with pytest.raises(SchemaViolation, match=expected) as info:
        registry.validate(OZG_ANTRAG_130101, root)
    assert f"'{value}'" not in str(info.value)


def _genericode(name: str) -> tuple[str, str, list[tuple[str, str]]]:
    path = standards_path(f"xauslaender-2611/codelists/{name}")
    root = etree.parse(str(path), HARDENED).getroot()
    rows = [
        (row.findtext("Value[@ColumnRef='Schluessel']/SimpleValue"),
         row.findtext("Value[@ColumnRef='Wert']/SimpleValue"))
        for row in root.iter("Row")
    ]
    return root.findtext("Identification/CanonicalUri"), root.findtext("Identification/Version"), rows


def _schema_codes(type_name: str) -> tuple[str | None, str | None, list[str]]:
    root = etree.parse(str(builtin_schema(OZG_ANTRAG_130101))).getroot()
    ctype = root.find(f"{XS}complexType[@name='{type_name}']")
    attrs = {a.get("name"): a.get("fixed") for a in ctype.iter(f"{XS}attribute")}
    codes = [e.get("value") for e in ctype.iter(f"{XS}enumeration")]
    return attrs["listURI"], attrs["listVersionID"], codes


@pytest.mark.parametrize(
    ("file_name", "type_name", "sample_list", "sample_codes"),
    [
        ("Art.des.Aufenthaltszwecks_2.xml", "Code.Aufenthaltszweck", AUFENTHALTSZWECK_LIST,
         AUFENTHALTSZWECKE),
        ("OZG Antragsgrund_4.xml", "Code.OZGAntragsgrund", ANTRAGSGRUND_LIST, ANTRAGSGRUENDE),
    ],
)
def test_schema_and_samples_use_the_official_code_lists(
    file_name: str, type_name: str, sample_list: tuple[str, str],
    sample_codes: tuple[tuple[str, str], ...],
) -> None:
    list_uri, version, rows = _genericode(file_name)

    assert _schema_codes(type_name) == (list_uri, version, [code for code, _ in rows])
    assert sample_list == (list_uri, version)
    assert list(sample_codes) == rows
