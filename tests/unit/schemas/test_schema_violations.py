"""The violation sanitizer: names and kinds go into headers and logs, applicant values never do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from hub.errors import SchemaViolation
from schemas.registry import SchemaRegistry
from schemas.violations import describe_violation, schema_errors, summarize_violations

MARKER = "ZZGEHEIM-Müller-4711"

XSD = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:test:v"
    xmlns:v="urn:test:v" elementFormDefault="qualified">
  <xs:element name="antrag">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="familienname" minOccurs="0">
          <xs:simpleType><xs:restriction base="xs:string">
            <xs:pattern value="[A-Z][a-z]+"/></xs:restriction></xs:simpleType>
        </xs:element>
        <xs:element name="vornamen" minOccurs="0">
          <xs:simpleType><xs:restriction base="xs:string">
            <xs:maxLength value="5"/></xs:restriction></xs:simpleType>
        </xs:element>
        <xs:element name="code" minOccurs="0">
          <xs:simpleType><xs:restriction base="xs:token">
            <xs:enumeration value="01"/><xs:enumeration value="02"/></xs:restriction></xs:simpleType>
        </xs:element>
        <xs:element name="geburtsdatum" type="xs:date" minOccurs="0"/>
        <xs:element name="groesse" type="xs:int" minOccurs="0"/>
        <xs:element name="standard" type="xs:string" fixed="XAusländer" minOccurs="0"/>
        <xs:element name="ziffer" minOccurs="0">
          <xs:complexType>
            <xs:attribute name="wert" type="xs:int"/>
            <xs:attribute name="listVersionID" type="xs:string" fixed="2"/>
          </xs:complexType>
        </xs:element>
        <xs:element name="person" minOccurs="0" maxOccurs="unbounded">
          <xs:complexType><xs:attribute name="id" type="xs:string"/></xs:complexType>
        </xs:element>
        <xs:element name="verweis" minOccurs="0" maxOccurs="unbounded">
          <xs:complexType><xs:attribute name="ref" type="xs:string"/></xs:complexType>
        </xs:element>
      </xs:sequence>
    </xs:complexType>
    <xs:key name="personKey"><xs:selector xpath="v:person"/><xs:field xpath="@id"/></xs:key>
    <xs:keyref name="verweisRef" refer="v:personKey">
      <xs:selector xpath="v:verweis"/><xs:field xpath="@ref"/>
    </xs:keyref>
  </xs:element>
</xs:schema>"""

# One invalid fragment per kind of libxml2 message that quotes the instance value (length facets
# and "text not allowed" do not quote it, so they are not here).
CASES = {
    "pattern": f"<familienname>{MARKER}</familienname>",
    "enumeration": f"<code>{MARKER}</code>",
    "date": f"<geburtsdatum>{MARKER}</geburtsdatum>",
    "int": f"<groesse>{MARKER}</groesse>",
    "fixed_element": f"<standard>{MARKER}</standard>",
    "attribute_type": f'<ziffer wert="{MARKER}"/>',
    "fixed_attribute": f'<ziffer listVersionID="{MARKER}"/>',
    "duplicate_key": f'<person id="{MARKER}"/><person id="{MARKER}"/>',
    "keyref": f'<person id="a"/><verweis ref="{MARKER}"/>',
}


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.fromstring(XSD.encode()))


def _errors(schema: etree.XMLSchema, fragment: str) -> list[etree._LogEntry]:
    document = etree.fromstring(f'<antrag xmlns="urn:test:v">{fragment}</antrag>'.encode())
    assert not schema.validate(document)
    return list(schema_errors(schema.error_log))


@pytest.mark.parametrize("case", sorted(CASES))
def test_libxml2_quotes_the_value_and_the_description_does_not(
    schema: etree.XMLSchema, case: str
) -> None:
    errors = _errors(schema, CASES[case])

    assert any(MARKER in e.message for e in errors), "libxml2 no longer quotes it: test is moot"
    for entry in errors:
        described = describe_violation(entry)
        assert MARKER not in described
        assert "4711" not in described and "Müller" not in described
        assert described.startswith(f"line {entry.line}: element '")
    assert MARKER not in summarize_violations(errors)


def test_description_keeps_names_and_kind(schema: etree.XMLSchema) -> None:
    (entry,) = _errors(schema, f'<ziffer listVersionID="{MARKER}"/>')

    assert describe_violation(entry) == (
        f"line {entry.line}: element 'ziffer', attribute 'listVersionID': "
        "value differs from the fixed value"
    )


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        ("<unbekannt/>", "element 'unbekannt': unexpected element"),
        ("<familienname>Abc</familienname>", None),
        ("<vornamen>Tooooolong</vornamen>", "element 'vornamen': value too long"),
        ("<code>03</code>", "element 'code': value not in the enumeration"),
        ('<ziffer wert="x"/>', "element 'ziffer', attribute 'wert': value not valid for its datatype"),
        ('<ziffer fremd="x"/>', "element 'ziffer', attribute 'fremd': attribute not allowed"),
        ('<person id="a"/><verweis ref="b"/>', "identity constraint (key/keyref/unique) violated"),
    ],
)
def test_kinds(schema: etree.XMLSchema, fragment: str, expected: str | None) -> None:
    document = etree.fromstring(f'<antrag xmlns="urn:test:v">{fragment}</antrag>'.encode())
    if expected is None:
        assert schema.validate(document)
        return
    assert not schema.validate(document)
    assert expected in summarize_violations(schema_errors(schema.error_log))


def test_missing_child_and_required_attribute() -> None:
    schema = etree.XMLSchema(etree.fromstring(b"""
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:element name="r"><xs:complexType>
    <xs:sequence><xs:element name="pflicht" type="xs:string"/></xs:sequence>
    <xs:attribute name="version" type="xs:string" use="required"/>
  </xs:complexType></xs:element>
</xs:schema>"""))

    assert not schema.validate(etree.fromstring(b"<r/>"))
    summary = summarize_violations(schema_errors(schema.error_log))

    assert "element 'r', attribute 'version': required attribute missing" in summary
    assert "element 'r': missing child element" in summary


@dataclass
class FakeEntry:
    line: int
    message: str
    type_name: str


def test_unknown_codes_fall_back_to_the_code_name_never_the_text() -> None:
    entry = FakeEntry(7, f"Element 'x': something new about '{MARKER}'.", "SCHEMAV_SOMETHING_NEW")

    assert describe_violation(entry) == "line 7: element 'x': something_new"


def test_messages_without_the_element_prefix_keep_only_line_and_kind() -> None:
    entry = FakeEntry(3, f"'{MARKER}' is wrong", "SCHEMAV_CVC_PATTERN_VALID")

    assert describe_violation(entry) == "line 3: value does not match the pattern"


def test_summary_counts_and_limits() -> None:
    entries = [FakeEntry(n, "Element 'e': x", "SCHEMAV_CVC_AU") for n in range(1, 6)]

    assert summarize_violations(entries[:1]) == (
        "1 error: line 1: element 'e': value differs from the fixed value"
    )
    summary = summarize_violations(entries, limit=3)
    assert summary.startswith("5 errors: line 1:")
    assert "line 4" not in summary
    assert summary.endswith("; and 2 more")
    assert summarize_violations([]) == "0 errors"


def test_registry_schema_violation_carries_no_value(tmp_path: Path) -> None:
    path = tmp_path / "v.xsd"
    path.write_text(XSD)
    registry = SchemaRegistry()
    registry.register("Test.V", path)
    fragment = "".join(CASES[c] for c in ("pattern", "enumeration", "date", "int", "fixed_element"))
    document = etree.fromstring(f'<antrag xmlns="urn:test:v">{fragment}</antrag>'.encode())

    with pytest.raises(SchemaViolation) as info:
        registry.validate("Test.V", document)

    assert MARKER not in str(info.value)
    assert "5 errors" in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None
