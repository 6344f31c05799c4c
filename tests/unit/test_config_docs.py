"""docs/configuration.md documents every key of the config model (a new key without a line in the
doc fails here), and docs/xta.md every option of the xta2 profile."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from adapters.xta2 import Xta2Options
from hub.config import HubConfig

ROOT = Path(__file__).resolve().parents[2]
INTERNAL = {"source"}  # set by the loader, not by operators


def _keys(model: type[BaseModel]) -> set[str]:
    """Every key a config file can contain, nested sections included."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        keys.add(field.alias or name)
        for inner in _models(field.annotation):
            keys |= _keys(inner)
    return keys


def _models(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models(arg)]


def _documented(doc: str) -> set[str]:
    """Keys the doc names in backticks: `key`, a section `[broker]` / `[[authorities]]` /
    `[adapters.<name>]`, or a path like `readers."<id>".key`."""
    keys = set(re.findall(r"`([a-z0-9_]+)`", doc))
    keys |= set(re.findall(r"`\[{1,2}([a-z0-9_]+)[.\]]", doc))
    for parent, child in re.findall(r"`([a-z0-9_]+)\.\"<id>\"\.([a-z0-9_]+)`", doc):
        keys |= {parent, child}
    return keys


def test_configuration_md_documents_every_key() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = _keys(HubConfig) - INTERNAL - _documented(doc)
    assert not missing, f"docs/configuration.md does not document: {sorted(missing)}"


def test_xta_md_documents_every_profile_option() -> None:
    doc = (ROOT / "docs" / "xta.md").read_text(encoding="utf-8")
    missing = set(Xta2Options.model_fields) - _documented(doc)
    assert not missing, f"docs/xta.md does not document: {sorted(missing)}"


def test_every_profile_key_is_documented() -> None:
    """The profiles' own keys of [adapters.<name>] and [[authorities]]: xta2 in configuration.md,
    fit-connect in fit-connect.md (its configuration table and the authorities example)."""
    from adapters.fitconnect import FitConnectAddressing, FitConnectSettings
    from adapters.xta2 import Xta2Addressing, Xta2Settings

    configuration = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    fit_connect = (ROOT / "docs" / "fit-connect.md").read_text(encoding="utf-8")
    for model, doc, name in ((Xta2Settings, configuration, "configuration.md"),
                             (Xta2Addressing, configuration, "configuration.md"),
                             (FitConnectSettings, fit_connect, "fit-connect.md"),
                             (FitConnectAddressing, fit_connect, "fit-connect.md")):
        missing = _keys(model) - _documented(doc)
        assert not missing, f"docs/{name} does not document {model.__name__}: {sorted(missing)}"
