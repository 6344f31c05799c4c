"""The directory routes by adapter; what an authority's addressing is, the adapter says: here the
xta2 profile's ``addressing`` (the reader party and its encryption certificate through a key-store
handle), resolved as a worker does at start-up."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from adapters.base import Adapter
from hub.config import HubConfig, parse_config
from hub.directory import Directory
from hub.errors import DirectoryError
from hub.keystore import KeyStore
from hub.runtime import build_adapter


def _config(pki, cert: Path) -> HubConfig:
    key, signer = pki["portal"]
    adapter = {"endpoint": "http://127.0.0.1:1/x", "signing_key": str(key), "signing_cert": str(signer),
               "author": {"identifier": "alp:1"}}
    return parse_config({
        "adapters": {"a": adapter, "b": dict(adapter)},
        "authorities": [{"id": "azr:000100", "name": "ABH 1", "adapter": "a", "certificate": str(cert)},
                        {"id": "azr:000300", "name": "ABH 3", "adapter": "b", "certificate": str(cert)}],
    }, base=Path("/"), environ={})


def _adapter(config: HubConfig, keys: KeyStore, name: str = "a") -> Adapter:
    """The xta2 adapter as a worker builds it (never connects here: addressing makes no call)."""
    return build_adapter(name, config.adapter(name), keys, Path("/"))


def test_lookup_per_adapter_and_unknown(pki, tmp_path: Path) -> None:
    cert = tmp_path / "reader.pem"
    shutil.copy(pki["azr-000100"][1], cert)
    config = _config(pki, cert)
    adapter = _adapter(config, KeyStore())
    try:
        d = Directory.from_config(config, adapter="a", resolve=adapter.addressing)
    finally:
        adapter.close()
    assert len(d) == 1
    a = d.lookup("azr:000100")
    assert (a.adapter, a.addressing.party.identifier, a.addressing.party.name) == ("a", "azr:000100", "ABH 1")
    with pytest.raises(DirectoryError, match="azr:000300"):
        d.lookup("azr:000300")


def test_renewed_reader_certificate_is_picked_up_without_restart(pki, tmp_path: Path) -> None:
    cert = tmp_path / "reader.pem"
    shutil.copy(pki["azr-000100"][1], cert)
    config = _config(pki, cert)
    adapter = _adapter(config, KeyStore(check_interval=0))
    try:
        d = Directory.from_config(config, adapter="a", resolve=adapter.addressing)
    finally:
        adapter.close()
    before = d.lookup("azr:000100").addressing.certificate
    shutil.copy(pki["azr-000200"][1], cert)  # the authority renewed its certificate
    os.utime(cert, (1, 1))  # make sure the change is visible even within one mtime tick
    after = d.lookup("azr:000100").addressing.certificate
    assert before.serial_number != after.serial_number
    assert "azr-000200" in after.subject.rfc4514_string()
