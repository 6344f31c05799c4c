"""Map remote schema locations to local files, so no schema is ever fetched from the network.

XÖV schema sets import their base libraries by absolute ``http(s)://`` schemaLocation. A
``Catalog`` says which local file stands for each such URL (exact entries) or for each URL
prefix (rewrite entries, like OASIS ``rewriteURI``). ``CatalogResolver`` plugs the catalog into
lxml: mapped URLs load the local file, relative includes/imports load as usual, and any other URL
with a scheme (http, https, ftp, ...) is refused and recorded, so the caller can fail with a
``ConfigError`` that names the URL instead of silently going online.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit
from urllib.request import url2pathname

from lxml import etree

from hub.errors import ConfigError

OASIS_CATALOG_NS = "urn:oasis:names:tc:entity:xmlns:xml:catalog"

# Catalog entries this module understands; anything else that could change resolution is refused
# at load time rather than ignored (a silently ignored entry means a schema goes missing later).
_EXACT_ENTRIES = {"uri": ("name", "uri"), "system": ("systemId", "uri")}
_PREFIX_ENTRIES = {
    "rewriteURI": ("uriStartString", "rewritePrefix"),
    "rewriteSystem": ("systemIdStartString", "rewritePrefix"),
}
_IGNORED_ENTRIES = {"catalog", "group", "public", "rewritePublic"}  # public ids concern DTDs only

# "scheme:" with at least two letters; a single letter is a Windows drive ("C:\\...").
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")


def is_remote(url: str) -> bool:
    """True for any URL with a scheme other than ``file:``: those are never loaded as-is."""
    match = _SCHEME.match(url)
    return match is not None and match.group(1).lower() != "file"


class Catalog:
    """Immutable map from remote schema URLs (exact or by prefix) to local files.

    ``mapping`` maps exact URL strings to files; ``prefixes`` maps URL prefixes to directories (the
    rest of the URL is taken as a relative path below the directory; the longest prefix wins and
    ``..`` cannot escape the directory). Targets are checked at construction, so a broken catalog
    fails at start-up, not on the first message.
    """

    def __init__(
        self,
        mapping: Mapping[str, Path] | None = None,
        *,
        prefixes: Mapping[str, Path] | None = None,
    ) -> None:
        exact: dict[str, Path] = {}
        for url, target in (mapping or {}).items():
            path = Path(target).resolve()
            if not path.is_file():
                raise ConfigError(f"catalog maps {url!r} to {path}, which is not a file")
            exact[url] = path
        rewrites: dict[str, Path] = {}
        for prefix, target in (prefixes or {}).items():
            if not prefix:
                raise ConfigError("catalog prefix mapping with an empty URL prefix")
            path = Path(target).resolve()
            if not path.is_dir():
                raise ConfigError(f"catalog maps prefix {prefix!r} to {path}, which is not a folder")
            rewrites[prefix] = path
        self._exact: Mapping[str, Path] = MappingProxyType(exact)
        self._prefixes: Mapping[str, Path] = MappingProxyType(rewrites)
        # Longest prefix first, as OASIS rewrite entries prescribe.
        self._prefix_order = tuple(sorted(rewrites, key=len, reverse=True))

    @classmethod
    def from_oasis_xml(cls, path: Path | str) -> Catalog:
        """Read an OASIS XML catalog (uri, system, rewriteURI, rewriteSystem; xml:base honoured).

        Relative targets resolve against the catalog file (or the nearest ``xml:base``); targets
        that are themselves remote are refused, because following them would mean a download.
        """
        catalog_path = Path(path).resolve()
        parser = etree.XMLParser(
            no_network=True, load_dtd=False, resolve_entities=False, huge_tree=False
        )
        try:
            root = etree.parse(str(catalog_path), parser).getroot()
        except (OSError, etree.XMLSyntaxError) as exc:
            raise ConfigError(f"cannot read XML catalog {catalog_path}: {exc}") from exc
        if etree.QName(root).localname != "catalog":
            raise ConfigError(f"{catalog_path} is not an OASIS XML catalog (root is not <catalog>)")
        exact: dict[str, Path] = {}
        prefixes: dict[str, Path] = {}
        for element in root.iter(etree.Element):
            qname = etree.QName(element)
            if qname.namespace not in (None, OASIS_CATALOG_NS):
                continue  # foreign extension elements are allowed by the catalog spec
            name = qname.localname
            if name in _IGNORED_ENTRIES:
                continue
            if name in _EXACT_ENTRIES:
                key_attr, target_attr = _EXACT_ENTRIES[name]
                target = _local_target(element, target_attr, catalog_path)
                exact.setdefault(_required(element, key_attr, catalog_path), target)
            elif name in _PREFIX_ENTRIES:
                key_attr, target_attr = _PREFIX_ENTRIES[name]
                target = _local_target(element, target_attr, catalog_path)
                prefixes.setdefault(_required(element, key_attr, catalog_path), target)
            else:
                raise ConfigError(
                    f"XML catalog {catalog_path}: entry <{name}> (line {element.sourceline}) "
                    "is not supported; use uri, system, rewriteURI or rewriteSystem"
                )
        return cls(exact, prefixes=prefixes)

    @property
    def exact(self) -> Mapping[str, Path]:
        """The exact URL entries (read-only view)."""
        return self._exact

    @property
    def prefixes(self) -> Mapping[str, Path]:
        """The URL-prefix entries (read-only view)."""
        return self._prefixes

    def resolve(self, url: str) -> Path | None:
        """The local file standing for ``url``, or None when the catalog does not cover it."""
        hit = self._exact.get(url)
        if hit is not None:
            return hit
        for prefix in self._prefix_order:
            if url.startswith(prefix):
                return _below(self._prefixes[prefix], url[len(prefix) :])
        return None

    def resolver(self) -> CatalogResolver:
        """A fresh lxml resolver for one parse/compile run (it records what it refused)."""
        return CatalogResolver(self)

    def __repr__(self) -> str:
        return f"Catalog({len(self._exact)} URLs, {len(self._prefixes)} prefixes)"


class CatalogResolver(etree.Resolver):
    """lxml resolver: catalog hits load locally, other remote URLs are refused and recorded.

    lxml does not raise a resolver's exception from ``etree.XMLSchema(...)``; it reports a generic
    "failed to parse the XML resource" and keeps the exception for the parser's next use. So the
    refusal is recorded in ``refused`` and the compiling code turns it into a ``ConfigError``; use
    one resolver (and one parser) per compile run.
    """

    def __init__(self, catalog: Catalog) -> None:
        super().__init__()
        self.catalog = catalog
        self.refused: list[str] = []

    # lxml passes a context argument that lxml-stubs 0.5.1 leave out of Resolver.resolve
    def resolve(self, system_url: str | None, public_id: str | None, context: Any) -> Any:  # type: ignore[override]
        """Map ``system_url`` to a local file; refuse any other URL with a network scheme."""
        if not system_url:
            return None
        local = self.catalog.resolve(system_url)
        if local is not None:
            return self.resolve_filename(str(local), context)  # type: ignore[attr-defined]  # not in lxml-stubs 0.5.1
        if is_remote(system_url):
            self.refused.append(system_url)
            raise ConfigError(
                f"refusing to fetch {system_url!r}: not in the schema catalog "
                "(map it to a local file; the hub never loads schemas from the network)"
            )
        return None  # a local path or file: URL (relative includes): libxml2 loads it as usual


def _required(element: etree._Element, attribute: str, catalog_path: Path) -> str:
    value = element.get(attribute)
    if not value:
        raise ConfigError(
            f"XML catalog {catalog_path}: <{etree.QName(element).localname}> "
            f"(line {element.sourceline}) lacks the {attribute} attribute"
        )
    return value


def _local_target(element: etree._Element, attribute: str, catalog_path: Path) -> Path:
    """Resolve a catalog target against xml:base / the catalog file; refuse remote targets."""
    target = _required(element, attribute, catalog_path)
    base = element.base or str(catalog_path)
    if is_remote(target):
        raise ConfigError(f"XML catalog {catalog_path}: target {target!r} is remote")
    if not is_remote(base) and not base.lower().startswith("file:"):
        if target.lower().startswith("file:"):
            return Path(url2pathname(urlsplit(target).path))
        base_dir = Path(base) if base.endswith(("/", "\\")) else Path(base).parent
        return (base_dir / unquote(target)).resolve()
    joined = urljoin(base, target)
    if is_remote(joined):
        raise ConfigError(f"XML catalog {catalog_path}: target {target!r} resolves to {joined!r}")
    return Path(url2pathname(urlsplit(joined).path)).resolve()


def _below(directory: Path, relative_url: str) -> Path | None:
    """``directory/relative_url`` if that file exists and stays inside ``directory``."""
    relative = unquote(urlsplit(relative_url).path).lstrip("/")
    candidate = (directory / relative).resolve()
    if not candidate.is_relative_to(directory) or not candidate.is_file():
        return None
    return candidate
