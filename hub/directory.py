"""The directory of authorities: Behördenkennung -> adapter and the adapter's addressing.

It is the single source for the broker bindings (``hub.topology``) and for the worker's lookup of
the recipient, so routing and addressing cannot disagree. What an authority's addressing is (an
XTA reader identity with its encryption certificate, a FIT-Connect destination id) only its
adapter knows: a worker's directory holds what ``Adapter.addressing`` made of the entry's own keys
at start-up (validated then: a bad entry stops the start, naming the key).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hub.config import HubConfig
from hub.errors import ConfigError, DirectoryError

# (authority id, name, the entry's adapter-specific keys) -> the adapter's addressing
Resolve = Callable[[str, str, Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Authority:
    """One receiving authority (e.g. an Ausländerbehörde) and how its adapter reaches it."""

    id: str
    name: str
    adapter: str
    addressing: Any  # the adapter's (``resolve``), or the entry's keys as written


class Directory:
    """Authorities by Behördenkennung."""

    def __init__(self, authorities: Mapping[str, Authority]) -> None:
        self._by_id = dict(authorities)

    @classmethod
    def from_config(cls, config: HubConfig, *, adapter: str | None = None, resolve: Resolve | None = None) -> Directory:
        """The directory; with ``adapter`` only that adapter's authorities (a worker needs no more),
        each entry's addressing made by ``resolve`` (the adapter's ``addressing``), else kept as written."""
        entries: dict[str, Authority] = {}
        for index, a in enumerate(config.authorities):
            if adapter is not None and a.adapter != adapter:
                continue
            addressing: Any = a.addressing
            if resolve is not None:
                try:
                    addressing = resolve(a.id, a.name, a.addressing)
                except ConfigError as exc:  # name the entry by its place as well as by its id
                    raise ConfigError(f"{exc} (authorities[{index}])") from None
            entries[a.id] = Authority(id=a.id, name=a.name, adapter=a.adapter, addressing=addressing)
        return cls(entries)

    def lookup(self, destination: str) -> Authority:
        try:
            return self._by_id[destination]
        except KeyError:
            raise DirectoryError(f"destination '{destination}' is not in the directory") from None

    def __iter__(self) -> Iterator[Authority]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)
