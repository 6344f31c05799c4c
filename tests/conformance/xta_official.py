"""The official XTA 2 v3 schema set (read in place from ../shared/standards), compiled once for
validating what the hub and the simulator put on the wire."""

from __future__ import annotations

from pathlib import Path

import xmlschema

from transport.xta.ns import OSCI, OSCIMETA, SOAP12, WSA, XTA


def official_xta_schema(schema_dir: Path, folder: Path) -> xmlschema.XMLSchema:
    """One schema holding the official SOAP 1.2 envelope, WS-Addressing, OSCI 2 transport,
    MessageMetaData, XTA global elements and exceptions; local files only."""
    def uri(name: str) -> str:
        return (schema_dir / name).as_uri()

    wrapper = folder / "all.xsd"
    wrapper.write_text(f"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"
        targetNamespace="{XTA}" elementFormDefault="qualified">
      <xs:import namespace="{SOAP12}" schemaLocation="{uri('.xsd')}"/>
      <xs:import namespace="{WSA}" schemaLocation="{uri('ws-addr.xsd')}"/>
      <xs:import namespace="{OSCIMETA}" schemaLocation="{uri('OSCI_MessageMetaData_V2.02.xsd')}"/>
      <xs:import namespace="{OSCI}" schemaLocation="{uri('OSCI2_02.xsd')}"/>
      <xs:include schemaLocation="{uri('XTA-Webservice-Globale-Elemente.xsd')}"/>
      <xs:include schemaLocation="{uri('XTA-Webservice-Exceptions.xsd')}"/>
    </xs:schema>""")
    return xmlschema.XMLSchema(str(wrapper), allow="local")
