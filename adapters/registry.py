"""Finding the adapter class for a profile name: built-ins plus the ``hub.adapters`` entry points,
so a vendor profile can ship as its own package. The same for the optional reply-mailbox capability
of a profile (``mailbox_class``; entry points ``hub.mailboxes``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from adapters.base import Adapter, ReplyMailbox
from hub.errors import ConfigError

BUILTIN_PROFILES = {"xta2": "adapters.xta2:Xta2Adapter"}
BUILTIN_MAILBOXES = {"xta2": "adapters.xta2_mailbox:Xta2Mailbox"}


class PartySettings(Protocol):
    """An account (``[mailboxes.<portal>].account``): identifier ``praefix:kennung``, name, category."""

    @property
    def identifier(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def category(self) -> str | None: ...


class MailboxSettings(Protocol):
    """What a mailbox profile reads from its ``[mailboxes.<portal>]`` section (``hub.config.MailboxConfig``
    fits; described here so that adapters need not import the hub's config)."""

    @property
    def endpoint(self) -> str: ...
    @property
    def timeout(self) -> float: ...
    @property
    def account(self) -> PartySettings: ...
    @property
    def decryption_key(self) -> Path: ...
    @property
    def decryption_key_password_env(self) -> str | None: ...
    @property
    def trusted_signers(self) -> tuple[Path, ...]: ...
    @property
    def options(self) -> Mapping[str, Any]: ...


class Loaded(Protocol):
    """A cached key or certificate list whose ``get()`` returns the current value (a KeyStore handle)."""

    def get(self) -> Any: ...


class KeySource(Protocol):
    """Where a mailbox loads its key and trusted certificates once (``hub.keystore.KeyStore`` fits)."""

    def private_key_handle(self, path: Path, password_env: str | None = None) -> Loaded: ...
    def certificates_handle(self, path: Path, password_env: str | None = None) -> Loaded: ...


class MailboxFactory(Protocol):
    """A mailbox class: builds the ``ReplyMailbox`` of one portal from its configuration section."""

    def from_config(self, portal: str, mailbox: MailboxSettings, keys: KeySource,
                    base_dir: Path | None = None) -> ReplyMailbox: ...


def _load(profile: str, group: str, builtins: Mapping[str, str], what: str) -> Any:
    targets = dict(builtins)
    if ":" in profile:
        targets[profile] = profile
    for ep in entry_points(group=group):
        targets.setdefault(ep.name, ep.value)
    if profile not in targets:
        raise ConfigError(f"unknown {what} profile '{profile}' (known: {', '.join(sorted(targets))})")
    module_name, _, attr = targets[profile].partition(":")
    try:
        module = __import__(module_name, fromlist=[attr])
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{what} profile '{profile}' cannot be loaded: {exc}") from None


def profile_class(profile: str) -> Callable[..., Adapter]:
    """Return the adapter class registered for ``profile`` or raise ConfigError listing the known ones.

    ``profile`` may also be an import path ``package.module:Class`` for a local profile that is not
    packaged (e.g. a vendor variant under test)."""
    factory: Callable[..., Adapter] = _load(profile, "hub.adapters", BUILTIN_PROFILES, "adapter")
    return factory


def mailbox_class(profile: str) -> MailboxFactory:
    """The reply-mailbox class of ``profile`` (``[mailboxes.<portal>].profile``), or ConfigError when
    the profile has none; ``package.module:Class`` works as for ``profile_class``."""
    factory: MailboxFactory = _load(profile, "hub.mailboxes", BUILTIN_MAILBOXES, "mailbox")
    return factory
