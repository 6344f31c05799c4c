"""The official XTA 2 v3 schema set (read in place from ../shared/standards), compiled once for
validating what the hub and the simulator put on the wire -- by both validators.

xmlschema silently falls back to its own bundled W3C schemas (e.g. XML-Enc 1.1) where a document
uses a namespace the set does not import; libxml2 (lxml) reports the strict ``##other`` wildcard of
``xenc:EncryptionMethod`` instead. So every message is validated by both, and the XML-Enc 1.1 schema
the hub relies on (``xenc11:MGF`` of RSA-OAEP with MGF1-SHA256) is imported explicitly from
``osci12/schema/extern/xenc-schema-11.xsd`` (see ../shared/standards/README.md, last sections).
Offline only: neither validator may fetch a schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import xmlschema
from lxml import etree

from tests.standards import standards_path
from transport.xta.ns import OSCI, OSCIMETA, SOAP12, WSA, XTA

XENC11 = "http://www.w3.org/2009/xmlenc11#"
XENC11_XSD = "osci12/schema/extern/xenc-schema-11.xsd"  # relative to ../shared/standards


def _wrapper(schema_dir: Path, xenc11_xsd: Path | None) -> str:
    """One schema document holding the official SOAP 1.2 envelope, WS-Addressing, OSCI 2 transport,
    MessageMetaData, XTA global elements and exceptions (and XML-Enc 1.1, imported last so that its
    own remote imports of XML-DSig/-Enc are already satisfied by the set's local copies)."""
    def uri(name: str) -> str:
        return (schema_dir / name).as_uri()

    xenc11 = f'<xs:import namespace="{XENC11}" schemaLocation="{xenc11_xsd.as_uri()}"/>' if xenc11_xsd else ""
    return f"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"
        targetNamespace="{XTA}" elementFormDefault="qualified">
      <xs:import namespace="{SOAP12}" schemaLocation="{uri('.xsd')}"/>
      <xs:import namespace="{WSA}" schemaLocation="{uri('ws-addr.xsd')}"/>
      <xs:import namespace="{OSCIMETA}" schemaLocation="{uri('OSCI_MessageMetaData_V2.02.xsd')}"/>
      <xs:import namespace="{OSCI}" schemaLocation="{uri('OSCI2_02.xsd')}"/>
      <xs:include schemaLocation="{uri('XTA-Webservice-Globale-Elemente.xsd')}"/>
      <xs:include schemaLocation="{uri('XTA-Webservice-Exceptions.xsd')}"/>
      {xenc11}
    </xs:schema>"""


class _LocalFilesOnly(etree.Resolver):
    """Refuses every schema location that is not a local file (the set must be complete offline)."""

    # lxml passes a context argument that lxml-stubs 0.5.1 leave out of Resolver.resolve
    def resolve(self, system_url: str, public_id: str, context: object) -> None:  # type: ignore[override]
        if system_url and "://" in system_url and not system_url.startswith("file:"):
            raise OSError(f"schema location {system_url} is not local: the official set must load offline")


def official_xta_lxml_schema(schema_dir: Path, folder: Path, xenc11_xsd: Path | None) -> etree.XMLSchema:
    """The set for libxml2; ``xenc11_xsd=None`` leaves XML-Enc 1.1 out (to show that it is needed)."""
    wrapper = folder / ("all-lxml.xsd" if xenc11_xsd else "all-lxml-without-xenc11.xsd")
    wrapper.write_text(_wrapper(schema_dir, xenc11_xsd))
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(_LocalFilesOnly())
    return etree.XMLSchema(etree.parse(str(wrapper), parser))


def official_xta_schema(schema_dir: Path, folder: Path, xenc11_xsd: Path) -> xmlschema.XMLSchema:
    """The set for xmlschema, with XML-Enc 1.1 imported from the given file (not its bundled copy)."""
    wrapper = folder / "all.xsd"
    wrapper.write_text(_wrapper(schema_dir, xenc11_xsd))
    return xmlschema.XMLSchema(str(wrapper), allow="local")


@dataclass(frozen=True)
class OfficialXtaSchemas:
    """The official set compiled by both validators; a message conforms only if both accept it."""

    xmlschema: xmlschema.XMLSchema
    lxml: etree.XMLSchema

    def errors(self, root: etree._Element) -> list[str]:
        found = [f"xmlschema: {e.path}: {e.reason}" for e in self.xmlschema.iter_errors(root)]
        if not self.lxml.validate(root):
            found += [f"libxml2: line {e.line}: {e.message}" for e in self.lxml.error_log]  # type: ignore[attr-defined]  # lxml-stubs 0.5.1: _ErrorLog declared empty
        return found


def official_xta_schemas(folder: Path) -> OfficialXtaSchemas:
    """Both validators over ../shared/standards/xta2-v3/schema plus XML-Enc 1.1 (skip locally / fail in
    CI when the standards are absent)."""
    schema_dir = standards_path("xta2-v3/schema")
    xenc11_xsd = standards_path(XENC11_XSD)
    return OfficialXtaSchemas(official_xta_schema(schema_dir, folder, xenc11_xsd),
                              official_xta_lxml_schema(schema_dir, folder, xenc11_xsd))
