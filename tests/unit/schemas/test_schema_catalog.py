"""Catalog: remote schema locations resolve to local files; everything else remote is refused."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from hub.errors import ConfigError
from schemas.catalog import Catalog, CatalogResolver, is_remote
from schemas.registry import compile_schema
from tests.standards import standards_path

XS = "http://www.w3.org/2001/XMLSchema"


def _xsd(body: str, tns: str = "urn:test:a", extra_ns: str = "") -> str:
    return (
        f'<xs:schema xmlns:xs="{XS}" targetNamespace="{tns}" xmlns:t="{tns}" {extra_ns} '
        f'elementFormDefault="qualified">{body}</xs:schema>'
    )


@pytest.fixture()
def remote_import_set(tmp_path: Path) -> Path:
    """main.xsd imports b.xsd by an absolute http URL, as XÖV schemas do."""
    (tmp_path / "b.xsd").write_text(
        _xsd('<xs:simpleType name="Kennung"><xs:restriction base="xs:token">'
             '<xs:pattern value="[0-9]{6}"/></xs:restriction></xs:simpleType>', "urn:test:b")
    )
    (tmp_path / "main.xsd").write_text(
        _xsd('<xs:import namespace="urn:test:b" schemaLocation="http://example.invalid/lib/b.xsd"/>'
             '<xs:element name="r" type="b:Kennung"/>', extra_ns='xmlns:b="urn:test:b"')
    )
    return tmp_path


def test_exact_mapping_resolves_to_the_local_file(remote_import_set: Path) -> None:
    catalog = Catalog({"http://example.invalid/lib/b.xsd": remote_import_set / "b.xsd"})

    assert catalog.resolve("http://example.invalid/lib/b.xsd") == (remote_import_set / "b.xsd").resolve()
    assert catalog.resolve("http://example.invalid/lib/other.xsd") is None


def test_mapped_import_compiles_and_validates(remote_import_set: Path) -> None:
    catalog = Catalog({"http://example.invalid/lib/b.xsd": remote_import_set / "b.xsd"})

    schema = compile_schema(remote_import_set / "main.xsd", catalog)

    assert schema.validate(etree.fromstring(b'<r xmlns="urn:test:a">000100</r>'))
    assert not schema.validate(etree.fromstring(b'<r xmlns="urn:test:a">x</r>'))


def test_unmapped_http_import_is_refused_naming_the_url(remote_import_set: Path) -> None:
    with pytest.raises(ConfigError, match=r"http://example\.invalid/lib/b\.xsd") as info:
        compile_schema(remote_import_set / "main.xsd", Catalog())

    assert "never fetched" in str(info.value)


@pytest.fixture()
def local_http_server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on 127.0.0.1 that would serve a valid b.xsd, and the paths it was asked."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "b.xsd").write_text(_xsd('<xs:simpleType name="Kennung"><xs:restriction '
                                       'base="xs:token"/></xs:simpleType>', "urn:test:b"))
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(served), **kwargs)  # type: ignore[arg-type]

        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def test_nothing_is_fetched_even_when_the_url_would_answer(
    tmp_path: Path, local_http_server: tuple[str, list[str]]
) -> None:
    base_url, requests = local_http_server
    (tmp_path / "main.xsd").write_text(
        _xsd(f'<xs:import namespace="urn:test:b" schemaLocation="{base_url}/b.xsd"/>'
             '<xs:element name="r" type="b:Kennung"/>', extra_ns='xmlns:b="urn:test:b"')
    )

    with pytest.raises(ConfigError, match="127.0.0.1"):
        compile_schema(tmp_path / "main.xsd", Catalog())

    assert requests == []  # the server was reachable, and was never asked


def test_local_relative_includes_still_work(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "part.xsd").write_text(
        _xsd('<xs:simpleType name="Code"><xs:restriction base="xs:token">'
             '<xs:enumeration value="01"/></xs:restriction></xs:simpleType>')
    )
    (tmp_path / "main.xsd").write_text(
        _xsd('<xs:include schemaLocation="sub/part.xsd"/><xs:element name="r" type="t:Code"/>')
    )

    schema = compile_schema(tmp_path / "main.xsd", Catalog())

    assert schema.validate(etree.fromstring(b'<r xmlns="urn:test:a">01</r>'))


def test_prefix_mapping_covers_a_remote_folder_with_relative_includes(tmp_path: Path) -> None:
    lib = tmp_path / "mirror" / "lib"
    lib.mkdir(parents=True)
    (lib / "c.xsd").write_text(_xsd('<xs:simpleType name="C"><xs:restriction base="xs:token">'
                                    '<xs:length value="3"/></xs:restriction></xs:simpleType>',
                                    "urn:test:b"))
    (lib / "b.xsd").write_text(_xsd('<xs:include schemaLocation="c.xsd"/>', "urn:test:b"))
    (tmp_path / "main.xsd").write_text(
        _xsd('<xs:import namespace="urn:test:b" schemaLocation="https://example.invalid/lib/b.xsd"/>'
             '<xs:element name="r" type="b:C"/>', extra_ns='xmlns:b="urn:test:b"')
    )
    catalog = Catalog(prefixes={"https://example.invalid/": tmp_path / "mirror"})

    schema = compile_schema(tmp_path / "main.xsd", catalog)

    assert schema.validate(etree.fromstring(b'<r xmlns="urn:test:a">abc</r>'))


def test_longest_prefix_wins_and_cannot_escape_its_folder(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.xsd").write_text("<x/>")
    (tmp_path / "b" / "x.xsd").write_text("<x/>")
    (tmp_path / "secret.xsd").write_text("<x/>")
    catalog = Catalog(prefixes={"http://h/": tmp_path / "a", "http://h/deep/": tmp_path / "b"})

    assert catalog.resolve("http://h/x.xsd") == (tmp_path / "a" / "x.xsd").resolve()
    assert catalog.resolve("http://h/deep/x.xsd") == (tmp_path / "b" / "x.xsd").resolve()
    assert catalog.resolve("http://h/../secret.xsd") is None
    assert catalog.resolve("http://h/%2e%2e/secret.xsd") is None
    assert catalog.resolve("http://h/missing.xsd") is None


def test_missing_targets_fail_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a file"):
        Catalog({"http://h/x.xsd": tmp_path / "nope.xsd"})
    with pytest.raises(ConfigError, match="not a folder"):
        Catalog(prefixes={"http://h/": tmp_path / "nope"})


def test_from_oasis_xml_reads_all_entry_kinds_relative_to_the_catalog(tmp_path: Path) -> None:
    folder = tmp_path / "cat"
    (folder / "ext" / "w3c").mkdir(parents=True)
    for name in ("a.xsd", "b.xsd", "w3c/c.xsd", "w3c/d.xsd", "w3c/e.xsd"):
        (folder / "ext" / name).write_text("<x/>")
    (folder / "catalog.xml").write_text(
        """<?xml version="1.0"?>
<!DOCTYPE catalog PUBLIC "-//OASIS//DTD XML Catalogs V1.1//EN"
  "http://www.oasis-open.org/committees/entity/release/1.1/catalog.dtd">
<catalog xmlns="urn:oasis:names:tc:entity:xmlns:xml:catalog">
  <!-- comments are fine -->
  <uri name="http://h/a.xsd" uri="ext/a.xsd"/>
  <system systemId="http://h/b.xsd" uri="ext/b.xsd"/>
  <rewriteURI uriStartString="https://w3c.example/" rewritePrefix="ext/w3c/"/>
  <group xml:base="ext/w3c/">
    <uri name="http://h/e.xsd" uri="e.xsd"/>
  </group>
  <rewriteSystem systemIdStartString="http://sys.example/" rewritePrefix="ext/"/>
  <public publicId="-//X//DTD Y//EN" uri="ignored.dtd"/>
</catalog>
"""
    )

    catalog = Catalog.from_oasis_xml(folder / "catalog.xml")

    ext = (folder / "ext").resolve()
    assert catalog.resolve("http://h/a.xsd") == ext / "a.xsd"
    assert catalog.resolve("http://h/b.xsd") == ext / "b.xsd"
    assert catalog.resolve("https://w3c.example/c.xsd") == ext / "w3c" / "c.xsd"
    assert catalog.resolve("http://h/e.xsd") == ext / "w3c" / "e.xsd"
    assert catalog.resolve("http://sys.example/w3c/d.xsd") == ext / "w3c" / "d.xsd"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('<nextCatalog catalog="other.xml"/>', "not supported"),
        ('<uri name="http://h/a.xsd" uri="https://elsewhere.example/a.xsd"/>', "remote"),
        ('<uri uri="a.xsd"/>', "lacks the name attribute"),
    ],
)
def test_from_oasis_xml_refuses_what_it_cannot_honour(tmp_path: Path, entry: str, message: str) -> None:
    (tmp_path / "a.xsd").write_text("<x/>")
    (tmp_path / "catalog.xml").write_text(
        f'<catalog xmlns="urn:oasis:names:tc:entity:xmlns:xml:catalog">{entry}</catalog>'
    )

    with pytest.raises(ConfigError, match=message):
        Catalog.from_oasis_xml(tmp_path / "catalog.xml")


def test_from_oasis_xml_reads_the_osci12_catalog() -> None:
    catalog_file = standards_path("osci12/schema/catalog.xml")

    catalog = Catalog.from_oasis_xml(catalog_file)

    extern = catalog_file.resolve().parent / "extern"
    assert catalog.resolve("http://www.w3.org/2001/04/xmlenc#") == extern / "xenc-schema.xsd"
    assert len(catalog.exact) == 5


def test_is_remote() -> None:
    assert is_remote("http://x/y.xsd")
    assert is_remote("HTTPS://x/y.xsd")
    assert is_remote("ftp://x/y.xsd")
    assert not is_remote("file:///tmp/y.xsd")
    assert not is_remote("/tmp/y.xsd")
    assert not is_remote("sub/y.xsd")
    assert not is_remote("C:\\schemas\\y.xsd")


def test_resolver_records_what_it_refused() -> None:
    resolver = Catalog().resolver()

    assert isinstance(resolver, CatalogResolver)
    with pytest.raises(ConfigError, match="not in the schema catalog"):
        resolver.resolve("https://example.invalid/x.xsd", None, None)
    assert resolver.refused == ["https://example.invalid/x.xsd"]
    assert resolver.resolve("relative.xsd", None, None) is None
