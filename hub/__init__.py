"""The xoev-hub: carries XÖV applications from portals to the authorities' Fachverfahren."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("xoev-hub")
except metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
