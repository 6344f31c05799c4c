"""Shared fixtures: one throwaway PKI per test session (RSA key generation is slow)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from tests.standards import standards_path
from transport.security.demopki import make_test_pki
from transport.security.keys import (
    SigningIdentity,
    load_certificate,
    load_signing_identity,
)


@pytest.fixture(scope="session")
def standards() -> Path:
    """The official standards sets (../shared/standards): tests/standards.py skips locally, fails in CI."""
    return standards_path("")


@dataclass(frozen=True)
class Pki:
    paths: dict[str, tuple[Path, Path]]
    ca: x509.Certificate
    portal: SigningIdentity
    reader: SigningIdentity
    other: SigningIdentity


def _pki(folder: Path) -> Pki:
    paths = make_test_pki(folder, ["portal", "reader", "other"])
    return Pki(
        paths=paths,
        ca=load_certificate(paths["ca"][1]),
        portal=load_signing_identity(*paths["portal"]),
        reader=load_signing_identity(*paths["reader"]),
        other=load_signing_identity(*paths["other"]),
    )


@pytest.fixture(scope="session")
def tpki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return _pki(tmp_path_factory.mktemp("tpki"))


@pytest.fixture(scope="session")
def rogue_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A second, untrusted CA issuing certificates with the same names."""
    return _pki(tmp_path_factory.mktemp("rogue"))
