"""Benchmark of the message-security layer (a script, not a test).

    .venv/bin/python bench/bench_security.py [--quick]

For a 20 KB and a 2 MB application (message + one attachment, as the XTA adapter sends them):
sign, verify, encrypt, decrypt medians, the adapter's whole "sign + containerise + encrypt" step,
and the cost of loading a key (PEM RSA-2048/4096, PKCS#12, and a cached KeyStore lookup), printed
side by side. Target: sign + encrypt of 20 KB under 3 ms median.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cryptography
from cryptography.hazmat.backends.openssl.backend import backend as openssl_backend
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from timing import median_ms

from hub.keystore import KeyStore
from transport.content import Content, ContentPart
from transport.security.encryption import decrypt_xml, encrypt_xml
from transport.security.keys import load_signing_identity
from transport.security.signature import sign_content, verify_content
from transport.security.testpki import make_test_pki
from transport.security.xml import parse_xml, serialize
from transport.xta.container import build_content_container

TARGET_MS = 3.0
PIN = b"bench-pin"


def application(size: int) -> Content:
    """An XML message (~70 % of ``size``) and a binary attachment (the rest)."""
    msg_size = int(size * 0.7)
    head = b'<?xml version="1.0" encoding="UTF-8"?><xau:antrag xmlns:xau="http://www.osci.de/xauslaender2611">'
    tail = b"</xau:antrag>"
    filler = (b"<feld>Erika Mustermann, Musterstrasse 1</feld>" * (msg_size // 46 + 1))[: msg_size - len(head) - len(tail)]
    attachment = os.urandom(size - msg_size)
    return Content(ContentPart(head + filler + tail, "application/xml", "antrag.xml"),
                   (ContentPart(attachment, "application/pdf", "scan.pdf"),))


def bench_size(size: int, repeat: int, pki: dict[str, tuple[Path, Path]]) -> dict[str, float]:
    signer = load_signing_identity(*pki["portal"])
    reader = load_signing_identity(*pki["reader"])
    trusted = [load_signing_identity(*pki["portal"]).certificate]
    content = application(size)
    signed = sign_content(content, signer)
    plaintext = serialize(build_content_container(signed))
    encrypted = encrypt_xml(plaintext, reader.certificate)
    wire = serialize(encrypted)

    def adapter_step() -> bytes:  # what Xta2Adapter.prepare_container does, serialised for the wire
        s = sign_content(content, signer)
        return serialize(encrypt_xml(serialize(build_content_container(s)), reader.certificate))

    return {
        "sign (detached, all parts)": median_ms(lambda: sign_content(content, signer), repeat),
        "verify": median_ms(lambda: verify_content(signed, trusted), repeat),
        "encrypt (container)": median_ms(lambda: encrypt_xml(plaintext, reader.certificate), repeat),
        "decrypt (parsed wire bytes)": median_ms(
            lambda: decrypt_xml(parse_xml(wire), reader.private_key), repeat),  # type: ignore[arg-type]
        "sign + container + encrypt (adapter)": median_ms(adapter_step, repeat),
    }


def key_files(directory: Path) -> dict[str, tuple[Path, Path | None, bytes | None]]:
    files: dict[str, tuple[Path, Path | None, bytes | None]] = {}
    for bits in (2048, 4096):
        pki = make_test_pki(directory / f"rsa{bits}", ["signer"], key_size=bits)
        key_path, cert_path = pki["signer"]
        files[f"PEM RSA-{bits} (unencrypted)"] = (key_path, cert_path, None)
        identity = load_signing_identity(key_path, cert_path)
        p12 = directory / f"signer{bits}.p12"
        p12.write_bytes(pkcs12.serialize_key_and_certificates(
            b"signer", identity.private_key, identity.certificate, None,  # type: ignore[arg-type]
            serialization.BestAvailableEncryption(PIN)))
        files[f"PKCS#12 RSA-{bits} (PIN)"] = (p12, None, PIN)
    return files


def bench_key_loading(directory: Path, repeat: int) -> dict[str, float]:
    results = {}
    for label, (key, cert, pin) in key_files(directory).items():
        results[label] = median_ms(lambda k=key, c=cert, p=pin: load_signing_identity(k, c, p), repeat, warmup=1)
    key, cert, _ = key_files(directory)["PEM RSA-2048 (unencrypted)"]
    store = KeyStore(check_interval=30)
    store.signing_identity(key, cert)
    results["KeyStore cached lookup"] = median_ms(lambda: store.signing_identity(key, cert), repeat * 50)
    due = KeyStore(check_interval=0)  # every lookup stats the files (worst case of the reload check)
    due.signing_identity(key, cert)
    results["KeyStore lookup + change check"] = median_ms(lambda: due.signing_identity(key, cert), repeat * 50)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    small_n, large_n, key_n = (30, 5, 3) if args.quick else (300, 30, 15)
    print(f"python {platform.python_version()}, cryptography {cryptography.__version__} "
          f"({openssl_backend.openssl_version_text()}), {os.cpu_count()} CPUs, {platform.machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-security-") as tmp:
        directory = Path(tmp)
        pki = make_test_pki(directory / "pki", ["portal", "reader"])
        small = bench_size(20 * 1024, small_n, pki)
        large = bench_size(2 * 1024 * 1024, large_n, pki)
        keys = bench_key_loading(directory, key_n)
    width = max(map(len, small))
    print(f"\n{'operation (median, ms)':<{width}}  {'20 KB':>9}  {'2 MB':>9}")
    for name in small:
        print(f"{name:<{width}}  {small[name]:9.3f}  {large[name]:9.3f}")
    print(f"\n{'key loading (median, ms)':<{width}}  {'ms':>9}")
    for name, value in keys.items():
        print(f"{name:<{width}}  {value:9.3f}")
    step = small["sign + container + encrypt (adapter)"]
    verdict = "OK" if step < TARGET_MS else "MISSED"
    print(f"\ntarget: sign + encrypt of 20 KB < {TARGET_MS} ms median: {step:.3f} ms -> {verdict}")
    return 0 if step < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
