"""Finding the adapter class for a profile name: built-ins plus the ``hub.adapters`` entry points,
so a vendor profile can ship as its own package."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from adapters.base import Adapter
from hub.errors import ConfigError

BUILTIN_PROFILES = {"xta2": "adapters.xta2:Xta2Adapter"}


def profile_class(profile: str) -> Callable[..., Adapter]:
    """Return the adapter class registered for ``profile`` or raise ConfigError listing the known ones.

    ``profile`` may also be an import path ``package.module:Class`` for a local profile that is not
    packaged (e.g. a vendor variant under test)."""
    targets = dict(BUILTIN_PROFILES)
    if ":" in profile:
        targets[profile] = profile
    for ep in entry_points(group="hub.adapters"):
        targets.setdefault(ep.name, ep.value)
    if profile not in targets:
        raise ConfigError(f"unknown adapter profile '{profile}' (known: {', '.join(sorted(targets))})")
    module_name, _, attr = targets[profile].partition(":")
    try:
        module = __import__(module_name, fromlist=[attr])
        factory: Callable[..., Adapter] = getattr(module, attr)
        return factory
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"adapter profile '{profile}' cannot be loaded: {exc}") from None
