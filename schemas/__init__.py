"""The project's own schemas (shipped as package data) and the schema registry.

``schemas`` imports nothing from the project except ``hub.errors``. Shipped XSDs are located with
``builtin_schema`` (importlib.resources), so they are found the same way from a source checkout
and from an installed wheel.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from hub.errors import ConfigError

OZG_ANTRAG_130101 = "OZG.Antrag.130101"
XAUSLAENDER_NAMESPACE = "http://www.osci.de/xauslaender2611"

# Message type -> shipped schema file (relative to this package). Read-only.
BUILTIN_SCHEMAS: Mapping[str, str] = MappingProxyType(
    {OZG_ANTRAG_130101: "xauslaender/ozg-antrag-130101.xsd"}
)


def builtin_schema(name: str) -> Path:
    """Path of a shipped schema, by message type (``OZG.Antrag.130101``) or relative file name."""
    relative = BUILTIN_SCHEMAS.get(name, name)
    if relative.startswith("/") or ".." in relative.split("/"):
        raise ConfigError(f"shipped schema name {name!r} must stay inside the schemas package")
    resource = files(__name__).joinpath(*relative.split("/"))
    path = Path(str(resource))
    if not path.is_file():
        raise ConfigError(f"no shipped schema {name!r} (looked for {path})")
    return path


class _Registry(Protocol):
    """What ``register_builtin_schemas`` needs (``SchemaRegistry`` fits; no lxml import here)."""

    def register(self, message_type: str, schema_path: Path) -> None: ...


def register_builtin_schemas(registry: _Registry) -> None:
    """Register every shipped schema with ``registry`` under its message type."""
    for message_type in BUILTIN_SCHEMAS:
        registry.register(message_type, builtin_schema(message_type))

