from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hub.config import parse_config
from hub.directory import Directory
from hub.errors import DirectoryError
from hub.keystore import KeyStore


def _config(cert: Path):
    return parse_config({
        "adapters": {"a": {"endpoint": "http://127.0.0.1:1/x", "signing_key": "k", "author": {"identifier": "alp:1"}},
                     "b": {"endpoint": "http://127.0.0.1:1/x", "signing_key": "k", "author": {"identifier": "alp:1"}}},
        "authorities": [{"id": "azr:000100", "name": "ABH 1", "adapter": "a", "certificate": str(cert)},
                        {"id": "azr:000300", "name": "ABH 3", "adapter": "b", "certificate": str(cert)}],
    }, base=Path("/"), environ={})


def test_lookup_per_adapter_and_unknown(pki, tmp_path: Path) -> None:
    cert = tmp_path / "reader.pem"
    shutil.copy(pki["azr-000100"][1], cert)
    d = Directory.from_config(_config(cert), KeyStore(), adapter="a")
    assert len(d) == 1
    a = d.lookup("azr:000100")
    assert (a.adapter, a.reader.identifier, a.reader.name) == ("a", "azr:000100", "ABH 1")
    with pytest.raises(DirectoryError, match="azr:000300"):
        d.lookup("azr:000300")


def test_renewed_reader_certificate_is_picked_up_without_restart(pki, tmp_path: Path) -> None:
    cert = tmp_path / "reader.pem"
    shutil.copy(pki["azr-000100"][1], cert)
    d = Directory.from_config(_config(cert), KeyStore(check_interval=0))
    before = d.lookup("azr:000100").certificate
    shutil.copy(pki["azr-000200"][1], cert)  # the authority renewed its certificate
    os.utime(cert, (1, 1))  # make sure the change is visible even within one mtime tick
    after = d.lookup("azr:000100").certificate
    assert before.serial_number != after.serial_number
    assert "azr-000200" in after.subject.rfc4514_string()
