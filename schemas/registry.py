"""Which schema validates which message type, compiled once and validated with lxml (libxml2).

lxml is the hot-path validator: it is 40-100x faster than xmlschema. Compiling a schema set costs
milliseconds to seconds, so each is compiled once and kept.

Threads: libxml2 allows one compiled schema to be used by several threads (lxml makes a fresh
validation context per call and releases the GIL while validating), but an lxml ``XMLSchema``
object has ONE ``error_log`` that every call clears and refills. Shared between worker threads, a
failed validation can come back with another thread's errors or none at all (measured here: 8
threads, shared schema, "invalid but empty log" and "valid but errors in log" both occur). So
the registry keeps one compiled schema per path *per thread*: compiled lazily, once per thread,
and then reused for every message that thread validates. Worker threads are long-lived, so the
cost is paid once per worker thread; ``preload()`` pays it for the calling thread at start-up and
turns broken schemas into a ``ConfigError`` before any message is consumed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from lxml import etree

from hub.errors import ConfigError, SchemaViolation, UnknownMessageType
from schemas.catalog import Catalog
from schemas.violations import schema_errors, summarize_violations

MAX_REPORTED_ERRORS = 3


def compile_schema(path: Path, catalog: Catalog | None = None) -> etree.XMLSchema:
    """Compile the XSD at ``path`` offline: remote locations only via ``catalog``, else refused.

    Raises ``ConfigError`` naming the file (and the refused URL, if that is the cause).
    """
    resolver = (catalog or Catalog()).resolver()
    # A fresh parser per run: lxml keeps a resolver's exception for the parser's next use.
    parser = etree.XMLParser(
        no_network=True, load_dtd=False,
        resolve_entities="internal",  # type: ignore[arg-type]  # lxml >= 5 takes "internal"; lxml-stubs 0.5.1 say bool
        huge_tree=False,
    )
    parser.resolvers.add(resolver)
    try:
        document = etree.parse(str(path), parser)
        schema = etree.XMLSchema(document)
    except ConfigError:
        raise _refused(path, resolver.refused) from None
    except etree.XMLSchemaParseError as exc:
        if resolver.refused:
            raise _refused(path, resolver.refused) from None
        raise ConfigError(f"schema {path} does not compile: {exc}") from None
    except (OSError, etree.XMLSyntaxError) as exc:
        if resolver.refused:
            raise _refused(path, resolver.refused) from None
        raise ConfigError(f"schema {path} cannot be read: {exc}") from None
    if resolver.refused:
        # libxml2 treats a failed xs:import as a warning: the set compiled, but incompletely.
        raise _refused(path, resolver.refused)
    return schema


def _refused(path: Path, urls: list[str]) -> ConfigError:
    listed = ", ".join(repr(url) for url in dict.fromkeys(urls))
    return ConfigError(
        f"schema {path} refers to {listed}, which the catalog does not map to a local file; "
        "remote schemas are never fetched"
    )


class SchemaRegistry:
    """Message type -> XSD file; validates documents and reports violations without values."""

    def __init__(self, catalog: Catalog | None = None) -> None:
        self._catalog = catalog or Catalog()
        self._lock = threading.Lock()
        self._paths: dict[str, Path] = {}
        self._per_thread = threading.local()  # .schemas: dict[Path, etree.XMLSchema]
        self._compiled = 0

    @property
    def catalog(self) -> Catalog:
        """The catalog used for every compile run."""
        return self._catalog

    @property
    def compiled_count(self) -> int:
        """How many compile runs happened (once per path per thread; see the module docstring)."""
        with self._lock:
            return self._compiled

    def register(self, message_type: str, schema_path: Path) -> None:
        """Record that ``message_type`` is validated by ``schema_path`` (compiled on first use)."""
        path = Path(schema_path).resolve()
        if not path.is_file():
            raise ConfigError(f"schema for message type {message_type!r} not found: {path}")
        with self._lock:
            known = self._paths.get(message_type)
            if known is not None and known != path:
                raise ConfigError(
                    f"message type {message_type!r} is already registered with {known}, not {path}"
                )
            self._paths[message_type] = path

    def registered(self) -> Mapping[str, Path]:
        """A read-only snapshot of message type -> schema file."""
        with self._lock:
            return MappingProxyType(dict(self._paths))

    def schema(self, message_type: str) -> etree.XMLSchema:
        """The compiled schema for ``message_type`` (this thread's instance, compiled once)."""
        with self._lock:
            path = self._paths.get(message_type)
        if path is None:
            raise UnknownMessageType(f"no schema registered for message type {message_type!r}")
        return self._compiled_for(path)

    def validate(self, message_type: str, document: etree._Element | etree._ElementTree) -> None:
        """Raise ``SchemaViolation`` (line, names and kind of up to 3 errors; never values)."""
        schema = self.schema(message_type)
        if schema.validate(document):
            return
        errors = schema_errors(schema.error_log)
        summary = summarize_violations(errors, limit=MAX_REPORTED_ERRORS)
        raise SchemaViolation(f"{message_type} does not match its schema: {summary}")

    def preload(self) -> None:
        """Compile every registered schema now, so a broken one stops start-up (``ConfigError``)."""
        failures: list[str] = []
        for message_type, path in self.registered().items():
            try:
                self._compiled_for(path)
            except ConfigError as exc:
                failures.append(f"{message_type}: {exc}")
        if failures:
            raise ConfigError("; ".join(failures))

    def _compiled_for(self, path: Path) -> etree.XMLSchema:
        cache: dict[Path, etree.XMLSchema] | None = getattr(self._per_thread, "schemas", None)
        if cache is None:
            cache = self._per_thread.schemas = {}
        schema = cache.get(path)
        if schema is None:
            schema = compile_schema(path, self._catalog)
            cache[path] = schema
            with self._lock:
                self._compiled += 1
        return schema
