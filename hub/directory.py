"""The directory of authorities: DVDV Behördenkennung -> adapter, reader identity, reader certificate.

It is the single source for the broker bindings (``hub.topology``) and for the worker's lookup of
the reader, so routing and addressing cannot disagree. Reader certificates are read through the
key store's handles: a renewed certificate file is picked up without a restart.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from cryptography import x509

from hub.config import HubConfig
from hub.errors import DirectoryError
from hub.keystore import KeyStore
from transport.xta.metadata import Party


@dataclass(frozen=True)
class Authority:
    """One receiving authority (e.g. an Ausländerbehörde) and how to reach it."""

    id: str
    name: str
    adapter: str
    reader: Party
    certificate: x509.Certificate


class Directory:
    """Authorities by Behördenkennung; certificates loaded at start-up, reloaded when renewed."""

    def __init__(self, authorities: dict[str, Authority], handles: dict[str, Any] | None = None) -> None:
        self._by_id = dict(authorities)
        self._handles = dict(handles or {})

    @classmethod
    def from_config(cls, config: HubConfig, keys: KeyStore, *, adapter: str | None = None) -> Directory:
        """Load the directory; with ``adapter`` only that adapter's authorities (a worker needs no more)."""
        entries: dict[str, Authority] = {}
        handles: dict[str, Any] = {}
        for a in config.authorities:
            if adapter is not None and a.adapter != adapter:
                continue
            handles[a.id] = keys.certificates_handle(a.certificate)
            entries[a.id] = Authority(
                id=a.id,
                name=a.name,
                adapter=a.adapter,
                reader=Party(identifier=a.id, name=a.reader_name or a.name, category=a.reader_category),
                certificate=handles[a.id].get()[0],
            )
        return cls(entries, handles)

    def lookup(self, destination: str) -> Authority:
        try:
            authority = self._by_id[destination]
        except KeyError:
            raise DirectoryError(f"destination '{destination}' is not in the directory") from None
        handle = self._handles.get(destination)
        if handle is not None:
            current = handle.get()[0]
            if current is not authority.certificate:
                authority = self._by_id[destination] = replace(authority, certificate=current)
        return authority

    def __iter__(self) -> Iterator[Authority]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)
