"""Finding the adapter class for a profile name: built-ins plus the ``hub.adapters`` entry points,
so a vendor profile can ship as its own package. The same for the optional reply-mailbox capability
of a profile (``mailbox_class``; entry points ``hub.mailboxes``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from adapters.base import Adapter, ReplyMailbox
from adapters.settings import parse_settings
from hub.errors import ConfigError

BUILTIN_PROFILES = {"xta2": "adapters.xta2:Xta2Adapter", "fit-connect": "adapters.fitconnect:FitConnectAdapter"}
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


def profile_class(profile: str) -> type[Adapter]:
    """Return the adapter class registered for ``profile`` or raise ConfigError listing the known ones.

    ``profile`` may also be an import path ``package.module:Class`` for a local profile that is not
    packaged (e.g. a vendor variant under test)."""
    factory: type[Adapter] = _load(profile, "hub.adapters", BUILTIN_PROFILES, "adapter")
    for attribute in ("from_config", "settings_model", "addressing_model"):
        if not hasattr(factory, attribute):
            raise ConfigError(f"adapter profile '{profile}' is not an adapter profile: it has no {attribute} "
                              "(adapters/base.py Adapter)")
    return factory


def check_sections(adapters: Mapping[str, tuple[str, Mapping[str, Any], bool]],
                   authorities: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    """Validate every adapter's own keys and every authority's addressing by their profile's models;
    ``adapters``: name -> (profile, section, whether ``author`` is set); ``authorities``: (adapter
    name, addressing) in config order. Raises ``ConfigError`` naming the first bad key
    (``adapters.<name>.<key>``, ``authorities[<i>].<key>``). A profile that names the sender on the
    wire declares ``requires_sender = True`` (a class attribute): then ``author`` is required."""
    classes: dict[str, type[Adapter]] = {}
    for name, (profile, section, has_author) in adapters.items():
        try:
            classes[name] = profile_class(profile)
        except ConfigError as exc:
            raise ConfigError(f"invalid configuration: adapters.{name}.profile: {exc}") from None
        if getattr(classes[name], "requires_sender", False) and not has_author:
            raise ConfigError(f"invalid configuration: adapters.{name}.author: Field required "
                              f"(profile {profile} names the sender of every message)")
        parse_settings(classes[name].settings_model, section, f"adapters.{name}")
    for index, (adapter, addressing) in enumerate(authorities):
        parse_settings(classes[adapter].addressing_model, addressing, f"authorities[{index}]")


def mailbox_class(profile: str) -> MailboxFactory:
    """The reply-mailbox class of ``profile`` (``[mailboxes.<portal>].profile``), or ConfigError when
    the profile has none; ``package.module:Class`` works as for ``profile_class``."""
    factory: MailboxFactory = _load(profile, "hub.mailboxes", BUILTIN_MAILBOXES, "mailbox")
    return factory
