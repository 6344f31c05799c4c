"""KeyStore: load once, PEM and PKCS#12, passwords from env or file, reload on change."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

import hub.keystore
import transport.security.keys
from hub.errors import ConfigError, KeyStoreError
from hub.keystore import KeyStore, PasswordSource
from transport.security.keys import SigningIdentity

if TYPE_CHECKING:  # conftest is not importable at run time
    from conftest import Pki

SECRET = "Pa55-w0rd-do-not-log"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write_p12(tpki: Pki, name: str, path: Path, password: str = SECRET) -> Path:
    identity = getattr(tpki, name)
    path.write_bytes(pkcs12.serialize_key_and_certificates(
        b"test", identity.private_key, identity.certificate, None,
        serialization.BestAvailableEncryption(password.encode())))
    path.chmod(0o600)
    return path


def copy_pair(tpki: Pki, name: str, directory: Path) -> tuple[Path, Path]:
    key, cert = directory / "id.key.pem", directory / "id.cert.pem"
    replace(tpki.paths[name][0], key)
    replace(tpki.paths[name][1], cert)
    return key, cert


def replace(src: Path, dst: Path) -> None:
    """Atomic replacement, as a rotation tool does; bump mtime so the change is visible at once."""
    tmp = dst.with_suffix(".tmp")
    shutil.copyfile(src, tmp)
    tmp.chmod(0o600)
    os.replace(tmp, dst)
    st = os.stat(dst)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_each_key_is_loaded_once(tpki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = transport.security.keys.load_signing_identity

    def counting_load(*args: Any) -> SigningIdentity:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(hub.keystore, "load_signing_identity", counting_load)
    keys = KeyStore()
    first = keys.signing_identity(*tpki.paths["portal"])
    for _ in range(100):
        assert keys.signing_identity(*tpki.paths["portal"]) is first
    assert len(calls) == 1
    assert keys.certificate(tpki.paths["reader"][1]) is keys.certificate(tpki.paths["reader"][1])


def test_pkcs12_with_password_from_environment(tpki: Pki, tmp_path: Path) -> None:
    p12 = write_p12(tpki, "portal", tmp_path / "portal.p12")
    keys = KeyStore(environ={"PORTAL_P12_PIN": SECRET})
    identity = keys.signing_identity(p12, None, "PORTAL_P12_PIN")
    assert identity.certificate == tpki.portal.certificate
    with pytest.raises(ConfigError, match="MISSING_PIN is not set"):
        KeyStore(environ={}).signing_identity(p12, None, "MISSING_PIN")


def test_pkcs12_with_password_from_file(tpki: Pki, tmp_path: Path) -> None:
    p12 = write_p12(tpki, "reader", tmp_path / "reader.p12")
    pin = tmp_path / "reader.pin"
    pin.write_text(SECRET + "\n")  # a trailing newline is not part of the password
    pin.chmod(0o600)
    keys = KeyStore(environ={})
    assert keys.signing_identity(p12, None, password_file=pin).certificate == tpki.reader.certificate
    assert keys.private_key(p12, password_file=pin).public_key().public_numbers() == (
        tpki.reader.private_key.public_key().public_numbers())
    with pytest.raises(ConfigError, match="cannot read key password file"):
        KeyStore().private_key(p12, password_file=tmp_path / "absent.pin")
    with pytest.raises(ConfigError, match="not both"):
        PasswordSource(env="X", file=pin)


def test_wrong_password_names_file_never_password(tpki: Pki, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    p12 = write_p12(tpki, "portal", tmp_path / "portal.p12")
    with pytest.raises(KeyStoreError) as info:
        KeyStore(environ={"PIN": "wrong-" + SECRET}).signing_identity(p12, None, "PIN")
    assert "portal.p12" in str(info.value)
    assert SECRET not in str(info.value) and SECRET not in caplog.text


def test_reload_after_change_at_most_every_interval(tpki: Pki, tmp_path: Path) -> None:
    clock = Clock()
    key, cert = copy_pair(tpki, "portal", tmp_path)
    keys = KeyStore(check_interval=30, clock=clock)
    handle = keys.identity_handle(key, cert)
    assert handle.get().certificate == tpki.portal.certificate
    replace(tpki.paths["other"][0], key)
    replace(tpki.paths["other"][1], cert)
    clock.now += 29
    assert handle.get().certificate == tpki.portal.certificate  # not checked yet: no stat at all
    clock.now += 1
    assert handle.get().certificate == tpki.other.certificate
    assert keys.signing_identity(key, cert).certificate == tpki.other.certificate
    assert handle.reloads == 1


def test_half_done_rotation_keeps_the_previous_identity(tpki: Pki, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    key, cert = copy_pair(tpki, "portal", tmp_path)
    keys = KeyStore(check_interval=1, clock=clock)
    handle = keys.identity_handle(key, cert)
    replace(tpki.paths["other"][0], key)  # new key, old certificate: they do not match
    clock.now += 1
    assert handle.get().certificate == tpki.portal.certificate
    assert handle.failures == 1 and "matches the private key" in (handle.last_error or "")
    assert "cannot be reloaded (keeping the previous one)" in caplog.text
    replace(tpki.paths["other"][1], cert)  # rotation completes
    clock.now += 1
    assert handle.get().certificate == tpki.other.certificate
    assert handle.last_error is None


def test_garbage_file_keeps_previous_certificate(tpki: Pki, tmp_path: Path) -> None:
    clock = Clock()
    cert = tmp_path / "reader.pem"
    replace(tpki.paths["reader"][1], cert)
    keys = KeyStore(check_interval=5, clock=clock)
    assert keys.certificate(cert) == tpki.reader.certificate
    cert.write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage")
    clock.now += 5
    assert keys.certificate(cert) == tpki.reader.certificate
    os.remove(cert)  # removed during a rotation: still the previous one
    clock.now += 5
    assert keys.certificate(cert) == tpki.reader.certificate


def test_refresh_checks_now(tpki: Pki, tmp_path: Path) -> None:
    cert = tmp_path / "reader.pem"
    replace(tpki.paths["reader"][1], cert)
    keys = KeyStore(check_interval=3600)
    keys.certificate(cert)
    replace(tpki.paths["other"][1], cert)
    assert keys.refresh() == [f"certificate file {cert}"]
    assert keys.certificate(cert) == tpki.other.certificate


def test_password_file_change_triggers_reload(tpki: Pki, tmp_path: Path) -> None:
    clock = Clock()
    p12 = write_p12(tpki, "portal", tmp_path / "id.p12")
    pin = tmp_path / "id.pin"
    pin.write_text(SECRET)
    keys = KeyStore(check_interval=1, clock=clock)
    handle = keys.identity_handle(p12, None, password_file=pin)
    write_p12(tpki, "other", tmp_path / "new.p12", password="new-" + SECRET)
    os.replace(tmp_path / "new.p12", p12)
    clock.now += 1
    assert handle.get().certificate == tpki.portal.certificate  # old PIN does not open the new file
    pin.write_text("new-" + SECRET)
    os.utime(pin, ns=(0, os.stat(pin).st_mtime_ns + 1_000_000_000))
    clock.now += 1
    assert handle.get().certificate == tpki.other.certificate


def test_world_readable_private_key_is_warned(tpki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key, cert = copy_pair(tpki, "portal", tmp_path)
    key.chmod(0o644)
    KeyStore().signing_identity(key, cert)
    assert "readable by other users" in caplog.text
