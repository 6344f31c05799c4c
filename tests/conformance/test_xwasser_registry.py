"""The schema registry against a complete official XÖV set: XWasser 1.0.0, entirely offline.

The set imports four schemas by remote URL; a Catalog maps them to ``xsd/external``. The resolver
refuses every URL the catalog does not map, so if any location were fetched from the network the
"one mapping missing" test below could not fail the way it does. The 15 official samples are then
validated with the registry (lxml/libxml2) and must give exactly the verdicts recorded in
``../shared/standards/README.md`` for libxml2: 13 accepted, 2 rejected.
"""

from __future__ import annotations

import pytest
from lxml import etree

from hub.errors import ConfigError, SchemaViolation
from schemas.catalog import Catalog
from schemas.registry import SchemaRegistry
from tests.standards import standards_path

XWASSER = standards_path("xwasser-1.0.0/xsd/xwasser.xsd", module_level=True).parents[1]

EXTERNAL = XWASSER / "xsd" / "external"
REMOTE_LOCATIONS = {
    "http://xoev.de/schemata/basisnachricht/unqualified/g2g/1_1/xoev-basisnachricht-unqualified-g2g_1.1.xsd":
        EXTERNAL / "xoev-basisnachricht-unqualified-g2g_1.1.xsd",
    "http://xoev.de/schemata/code/1_0/xoev-code.xsd": EXTERNAL / "xoev-code.xsd",
    "https://xoev.de/schemata/din/91379/2022-08/din-norm-91379-datatypes.xsd":
        EXTERNAL / "din-norm-91379-datatypes.xsd",
    "https://www.w3.org/TR/xmldsig-core/xmldsig-core-schema.xsd": EXTERNAL / "xmldsig-core-schema.xsd",
}
ROOT_SCHEMA = XWASSER / "xsd" / "xwasser.xsd"  # includes all nine part schemas

# Per-file verdict with libxml2 (True = accepted). README: 13 accepted, 2 rejected.
EXPECTED_VERDICTS = {
    "administration_receipt.xml": True,
    "administration_receipt_test_result.xml": True,
    "monitoring_plan_builder_test_result.xml": True,
    "monitoring_plan_maximal.xml": False,
    "monitoring_plan_maximal_test_result.xml": True,
    "monitoring_plan_minimal.xml": False,
    "monitoring_plan_minimal_test_result.xml": True,
    "olb_report_minimal.xml": True,
    "olb_report_minimal_test_result.xml": True,
    "olb_report_signature_builder_test_result.xml": True,
    "quality_report_builder_test_result.xml": True,
    "quality_report_maximal.xml": True,
    "quality_report_maximal_test_result.xml": True,
    "quality_report_minimal.xml": True,
    "quality_report_minimal_test_result.xml": True,
}
# What the two rejections report (sanitized: line, names, kind). Observed: BOTH rejected files
# carry both faults: an unexpected element and two code lists with a listVersionID that differs
# from the fixed one.
EXPECTED_REASONS = {
    "monitoring_plan_maximal.xml": (
        "3 errors: line 75: element 'probennahmestelleKategorie': unexpected element; "
        "line 95: element 'artAnlage', attribute 'listVersionID': value differs from the fixed value; "
        "line 112: element 'kategorieProbennahmestelle', attribute 'listVersionID': "
        "value differs from the fixed value"
    ),
    "monitoring_plan_minimal.xml": (
        "3 errors: line 74: element 'probennahmestelleKategorie': unexpected element; "
        "line 101: element 'artAnlage', attribute 'listVersionID': value differs from the fixed value; "
        "line 119: element 'kategorieProbennahmestelle', attribute 'listVersionID': "
        "value differs from the fixed value"
    ),
}
# Payloads are parsed the way the worker parses them: no DTD, no entities, no network.
HARDENED = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True, huge_tree=False)


def message_type(document: etree._ElementTree) -> str:
    return "xwasser." + etree.QName(document.getroot()).localname


@pytest.fixture(scope="module")
def samples() -> dict[str, etree._ElementTree]:
    return {
        path.name: etree.parse(str(path), HARDENED)
        for path in sorted((XWASSER / "samples").glob("*.xml"))
    }


@pytest.fixture(scope="module")
def registry(samples: dict[str, etree._ElementTree]) -> SchemaRegistry:
    reg = SchemaRegistry(Catalog(REMOTE_LOCATIONS))
    for document in samples.values():
        reg.register(message_type(document), ROOT_SCHEMA)
    reg.preload()
    return reg


@pytest.fixture(scope="module")
def verdicts(
    registry: SchemaRegistry, samples: dict[str, etree._ElementTree]
) -> dict[str, str | None]:
    """File name -> None (accepted) or the SchemaViolation message."""
    result: dict[str, str | None] = {}
    for name, document in samples.items():
        try:
            registry.validate(message_type(document), document)
            result[name] = None
        except SchemaViolation as exc:
            result[name] = str(exc)
    return result


def test_the_catalog_maps_every_remote_location_of_the_set() -> None:
    remote = set()
    for xsd in [*(XWASSER / "xsd").glob("*.xsd"), *EXTERNAL.glob("*.xsd")]:
        for node in etree.parse(str(xsd), HARDENED).iter("{http://www.w3.org/2001/XMLSchema}import"):
            location = node.get("schemaLocation", "")
            if location.startswith(("http://", "https://")):
                remote.add(location)

    assert remote == set(REMOTE_LOCATIONS)


@pytest.mark.parametrize("missing", sorted(REMOTE_LOCATIONS))
def test_compiling_without_one_mapping_is_refused_not_fetched(missing: str) -> None:
    partial = Catalog({url: path for url, path in REMOTE_LOCATIONS.items() if url != missing})
    registry = SchemaRegistry(partial)
    registry.register("xwasser", ROOT_SCHEMA)

    with pytest.raises(ConfigError) as info:
        registry.preload()

    message = str(info.value)
    assert missing in message and "never fetched" in message
    assert [url for url in REMOTE_LOCATIONS if url in message] == [missing]


def test_the_whole_set_compiles_once(registry: SchemaRegistry, verdicts: dict[str, str | None]) -> None:
    assert len(registry.registered()) == 2  # administration.quittung.0020, vorgang.transportieren.2010
    assert set(registry.registered().values()) == {ROOT_SCHEMA.resolve()}
    assert registry.compiled_count == 1  # preload compiled it; 15 validations reused it


def test_all_fifteen_samples_are_present(samples: dict[str, etree._ElementTree]) -> None:
    assert sorted(samples) == sorted(EXPECTED_VERDICTS)


def test_per_file_verdicts_match_the_readme(verdicts: dict[str, str | None]) -> None:
    observed = {name: reason is None for name, reason in verdicts.items()}

    assert observed == EXPECTED_VERDICTS
    assert sum(observed.values()) == 13
    assert len(observed) - sum(observed.values()) == 2


@pytest.mark.parametrize("name", sorted(EXPECTED_REASONS))
def test_rejections_name_the_unexpected_element_and_the_list_version(
    verdicts: dict[str, str | None], name: str
) -> None:
    reason = verdicts[name]

    assert reason is not None
    assert "unexpected element" in reason
    assert "element 'probennahmestelleKategorie'" in reason
    assert "attribute 'listVersionID'" in reason
    assert reason.endswith(EXPECTED_REASONS[name])
    # libxml2's own text quotes the values ("The value '1' does not match ..."); ours must not.
    assert "The value" not in reason and "'1'" not in reason and "'2'" not in reason
