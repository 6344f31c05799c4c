"""The throwaway PKI (reused when valid, flawed keys on request) and the command line."""

from __future__ import annotations

import base64
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding

from transport.fitconnect.simulator import cli
from transport.fitconnect.simulator.pki import SimulatorPki
from transport.fitconnect.simulator.settings import DestinationSpec

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fc-pki")


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        issuer.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),  # type: ignore[call-arg, union-attr, arg-type]
                                   cert.signature_hash_algorithm)
    except Exception:  # noqa: BLE001
        return False
    return True


def test_files_are_reused_and_regenerated_when_broken(pki_dir: Path) -> None:
    spec = DestinationSpec()
    first = SimulatorPki(pki_dir).destination(spec)
    again = SimulatorPki(pki_dir).destination(spec)
    assert again.encryption.kid == first.encryption.kid and again.signature.kid == first.signature.kid
    cert_file = first.signature.key_path.with_name("signature.cert.pem")
    cert_file.write_bytes(Path(pki_dir / "trust-anchor.pem").read_bytes())  # not the key's certificate
    renewed = SimulatorPki(pki_dir).destination(spec)
    assert renewed.signature.kid != first.signature.kid and renewed.encryption.kid == first.encryption.kid


def test_good_keys_chain_to_the_trust_anchor(pki_dir: Path) -> None:
    pki = SimulatorPki(pki_dir)
    keys = pki.destination(DestinationSpec())
    jwk = keys.encryption_jwk()
    assert jwk["alg"] == "RSA-OAEP-256" and jwk["key_ops"] == ["wrapKey"] and len(jwk["n"]) >= 683
    uuid.UUID(jwk["kid"])
    leaf, anchor = (x509.load_der_x509_certificate(base64.b64decode(c)) for c in jwk["x5c"])
    assert anchor == x509.load_pem_x509_certificate(pki.trust_anchor.read_bytes()) and _issued_by(leaf, anchor)
    assert keys.signature_jwk()["alg"] == "PS512" and keys.signature_jwk()["key_ops"] == ["verify"]


@pytest.mark.parametrize("flaw", ["short", "alg", "no_x5c", "untrusted"])
def test_flawed_keys_are_flawed_as_named(pki_dir: Path, flaw: str) -> None:
    pki = SimulatorPki(pki_dir)
    jwk = pki.destination(DestinationSpec(key_flaw=flaw)).encryption_jwk()  # type: ignore[arg-type]
    anchor = x509.load_pem_x509_certificate(pki.trust_anchor.read_bytes())
    checks = {"short": len(jwk["n"]) < 683, "alg": jwk["alg"] != "RSA-OAEP-256", "no_x5c": "x5c" not in jwk,
              "untrusted": "x5c" in jwk and not _issued_by(
                  x509.load_der_x509_certificate(base64.b64decode(jwk["x5c"][0])), anchor)}
    assert [k for k, broken in checks.items() if broken] == [flaw]


def test_cli_builds_settings_from_flags(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    dest = str(uuid.uuid4())
    args = cli.parser().parse_args(["--state-dir", str(tmp_path), "--destination", f"{dest}=inactive",
                                    "--service", "urn:de:fim:leika:leistung:99000000000001", "--client-secret-file",
                                    str(secret), "--auto-accept", "--rate-429", "0.5", "--outage", "5:30:drop"])
    settings = cli.build_settings(args)
    assert settings.client_secret == "s3cret" and settings.auto_accept
    assert settings.destinations[0].id == dest and settings.destinations[0].status == "inactive"
    assert settings.destinations[0].services[0].identifier.endswith("99000000000001")
    assert settings.faults.rate_429 == 0.5 and settings.faults.outage is not None and settings.faults.outage.mode == "drop"
    assert cli.main(["--state-dir", str(tmp_path), "--destination", "not-a-uuid"]) == 2


def test_cli_serves_until_sigterm(pki_dir: Path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "transport.fitconnect.simulator.cli", "--port", "0",
                                "--state-dir", str(pki_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("fit-connect simulator listening on http://127.0.0.1:")
        import requests

        assert requests.get(line.split()[-1] + "/v1/info", timeout=10).status_code == 200
        process.terminate()
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
