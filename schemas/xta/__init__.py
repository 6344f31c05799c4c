"""The hub's own XTA 2 Version 3 (XTA-Webservice 2.1.1) WSDL and XSD subset, shipped as package data.

Only local files: the WSDL imports its XSDs by relative location, and the XSDs import stand-ins for
the W3C schemas they need, so nothing resolves to the network.
"""

from __future__ import annotations

from pathlib import Path

SCHEMA_DIR: Path = Path(__file__).resolve().parent
WSDL_PATH: Path = SCHEMA_DIR / "xta.wsdl"
WEBSERVICE_XSD: Path = SCHEMA_DIR / "xta-webservice.xsd"
MESSAGE_METADATA_XSD: Path = SCHEMA_DIR / "osci-messagemetadata.xsd"
OSCI_TRANSPORT_XSD: Path = SCHEMA_DIR / "osci-transport.xsd"
