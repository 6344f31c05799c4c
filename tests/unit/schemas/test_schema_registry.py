"""SchemaRegistry: register, compile once (per thread), validate, and fail early on bad schemas."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from lxml import etree

from hub.errors import ConfigError, MessageError, SchemaViolation, UnknownMessageType
from schemas.catalog import Catalog
from schemas.registry import SchemaRegistry

XSD = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:test:r"
    elementFormDefault="qualified">
  <xs:element name="antrag">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="kennung" maxOccurs="unbounded">
          <xs:simpleType><xs:restriction base="xs:token">
            <xs:pattern value="[0-9]{6}"/></xs:restriction></xs:simpleType>
        </xs:element>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
</xs:schema>"""


def doc(*kennungen: str) -> etree._Element:
    children = "".join(f"<kennung>{k}</kennung>" for k in kennungen)
    return etree.fromstring(f'<antrag xmlns="urn:test:r">{children}</antrag>'.encode())


@pytest.fixture()
def schema_file(tmp_path: Path) -> Path:
    path = tmp_path / "antrag.xsd"
    path.write_text(XSD)
    return path


@pytest.fixture()
def registry(schema_file: Path) -> SchemaRegistry:
    reg = SchemaRegistry()
    reg.register("Test.Antrag", schema_file)
    return reg


def test_register_records_without_compiling(registry: SchemaRegistry, schema_file: Path) -> None:
    assert dict(registry.registered()) == {"Test.Antrag": schema_file.resolve()}
    assert registry.compiled_count == 0


def test_registered_is_a_read_only_snapshot(registry: SchemaRegistry) -> None:
    snapshot = registry.registered()

    with pytest.raises(TypeError):
        snapshot["Other"] = Path("x.xsd")  # type: ignore[index]


def test_register_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.xsd"):
        SchemaRegistry().register("Test.Antrag", tmp_path / "nope.xsd")


def test_conflicting_registration_is_a_config_error(
    registry: SchemaRegistry, schema_file: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.xsd"
    other.write_text(XSD)

    registry.register("Test.Antrag", schema_file)  # same file again: fine
    with pytest.raises(ConfigError, match="already registered"):
        registry.register("Test.Antrag", other)


def test_schema_is_compiled_once_and_reused(registry: SchemaRegistry) -> None:
    first = registry.schema("Test.Antrag")
    second = registry.schema("Test.Antrag")

    assert first is second
    assert registry.compiled_count == 1


def test_message_types_sharing_a_file_share_the_compiled_schema(
    registry: SchemaRegistry, schema_file: Path
) -> None:
    registry.register("Test.Antrag.Kopie", schema_file)

    assert registry.schema("Test.Antrag") is registry.schema("Test.Antrag.Kopie")
    assert registry.compiled_count == 1


def test_each_thread_gets_its_own_compiled_schema_once(registry: SchemaRegistry) -> None:
    mine = registry.schema("Test.Antrag")
    theirs: list[etree.XMLSchema] = []

    def work() -> None:
        theirs.extend([registry.schema("Test.Antrag"), registry.schema("Test.Antrag")])

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()

    assert theirs[0] is theirs[1]
    assert theirs[0] is not mine  # lxml's XMLSchema has one error_log: not shared across threads
    assert registry.compiled_count == 2


def test_valid_document_passes(registry: SchemaRegistry) -> None:
    registry.validate("Test.Antrag", doc("000100"))
    registry.validate("Test.Antrag", etree.ElementTree(doc("000100", "000200")))


def test_violation_names_line_element_and_kind(registry: SchemaRegistry) -> None:
    document = etree.fromstring(b'<antrag xmlns="urn:test:r">\n<kennung>12</kennung>\n</antrag>')

    with pytest.raises(SchemaViolation) as info:
        registry.validate("Test.Antrag", document)

    message = str(info.value)
    assert "Test.Antrag" in message
    assert "1 error:" in message
    assert "line 2: element 'kennung': value does not match the pattern" in message
    assert info.value.reason == "schema_violation"
    assert isinstance(info.value, MessageError) and not info.value.transient
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_violation_reports_three_errors_and_the_total(registry: SchemaRegistry) -> None:
    with pytest.raises(SchemaViolation) as info:
        registry.validate("Test.Antrag", doc("a", "b", "c", "d", "e"))

    message = str(info.value)
    assert "5 errors:" in message
    assert message.count("value does not match the pattern") == 3
    assert message.endswith("and 2 more")


def test_unknown_message_type(registry: SchemaRegistry) -> None:
    with pytest.raises(UnknownMessageType, match="Nicht.Registriert"):
        registry.validate("Nicht.Registriert", doc("000100"))
    with pytest.raises(UnknownMessageType):
        registry.schema("Nicht.Registriert")


def test_preload_compiles_everything(registry: SchemaRegistry) -> None:
    registry.preload()

    assert registry.compiled_count == 1
    registry.validate("Test.Antrag", doc("000100"))
    assert registry.compiled_count == 1


def test_preload_names_a_broken_schema_file(registry: SchemaRegistry, tmp_path: Path) -> None:
    broken = tmp_path / "broken.xsd"
    broken.write_text(XSD.replace('base="xs:token"', 'base="xs:nichtDa"'))
    registry.register("Kaputt", broken)

    with pytest.raises(ConfigError, match=r"Kaputt: schema .*broken\.xsd does not compile"):
        registry.preload()


def test_preload_names_a_schema_file_that_is_not_xml(registry: SchemaRegistry, tmp_path: Path) -> None:
    broken = tmp_path / "notxml.xsd"
    broken.write_text("<xs:schema")
    registry.register("Kaputt", broken)

    with pytest.raises(ConfigError, match=r"notxml\.xsd cannot be read"):
        registry.preload()


def test_preload_refuses_unmapped_remote_imports(tmp_path: Path) -> None:
    remote = tmp_path / "remote.xsd"
    remote.write_text(
        XSD.replace(
            "<xs:element",
            '<xs:import namespace="urn:x" schemaLocation="https://example.invalid/x.xsd"/><xs:element',
            1,
        )
    )
    registry = SchemaRegistry(Catalog())
    registry.register("Remote", remote)

    with pytest.raises(ConfigError, match=r"https://example\.invalid/x\.xsd.*never fetched"):
        registry.preload()


def test_concurrent_validation_reports_each_documents_own_errors(registry: SchemaRegistry) -> None:
    """Worker threads validate at the same time; every verdict and message must be its own."""
    good = doc(*["000100"] * 2000)
    bad = {n: doc(*["000100"] * 2000, *["x"] * n) for n in (1, 2, 4, 5)}
    problems: list[str] = []

    def work(n: int) -> None:
        for _ in range(30):
            try:
                registry.validate("Test.Antrag", good)
            except SchemaViolation as exc:
                problems.append(f"good document rejected: {exc}")
            try:
                registry.validate("Test.Antrag", bad[n])
                problems.append(f"bad document ({n} errors) accepted")
            except SchemaViolation as exc:
                noun = "error" if n == 1 else "errors"
                if f"{n} {noun}:" not in str(exc):
                    problems.append(f"expected {n} errors, got: {exc}")

    threads = [threading.Thread(target=work, args=(n,)) for n in (1, 2, 4, 5) * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert problems == []
    assert registry.compiled_count == len(threads)
