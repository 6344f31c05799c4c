"""Benchmark of the message-security layer (a script, not a test).

    .venv/bin/python bench/bench_security.py [--quick]

For a 20 KB and a 2 MB application (message + one attachment, as the XTA adapter sends them), each
row names the function it times. Encryption has two paths, and both are shown: the worker's default
(``mtom = true``: ``transport.xta.e2e.encrypt_container``, streaming AES-GCM, ciphertext as an MTOM
part) and the inline one (``mtom = false``: ``encrypt_xml`` of the serialised ContentContainer,
base64 CipherValue). The adapter rows time ``Xta2Adapter.prepare_container`` itself (size check,
sign, containerise, encrypt: what ``deliver`` does before the HTTP call); the script checks that the
default adapter really took the MTOM/``encrypt_container`` path before it prints. Then the cost of
loading a key (PEM RSA-2048/4096, PKCS#12, and a cached KeyStore lookup). Figures are medians with
[min–max] over >= 5 runs. Target: ``prepare_container`` with default options, 20 KB, under 3 ms median.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cryptography
from cryptography import x509
from cryptography.hazmat.backends.openssl.backend import backend as openssl_backend
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from timing import MIN_RUNS, Spread, interleaved, load_note, sample, timed

from adapters.base import Delivery, MessageKind, Recipient
from adapters.base import Party as NeutralParty
from adapters.xta2 import Xta2Adapter, Xta2Options, xta_reader
from hub.keystore import KeyStore
from transport.content import Content, ContentPart
from transport.security.demopki import make_test_pki
from transport.security.encryption import decrypt_xml, encrypt_xml
from transport.security.keys import SigningIdentity, load_signing_identity
from transport.security.signature import sign_content, verify_content
from transport.security.xml import parse_xml, serialize
from transport.xta.client import XtaEndpoint
from transport.xta.container import OutgoingContainer, build_content_container, container_payload
from transport.xta.e2e import cipher_octets, decrypt_octets_for, encrypt_container
from transport.xta.metadata import Party
from transport.xta.mtom import Attachments, xop_cid

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


DEFAULT_PATH = "prepare_container, default options (sign + encrypt_container, MTOM)"


def _delivery(content: Content, reader: x509.Certificate) -> Delivery:
    recipient = Recipient("azr:000100", "azr:000100", xta_reader(Party("azr:000100"), reader))
    return Delivery(message_id="bench", content=content, sender=NeutralParty("alp:000001"), recipient=recipient,
                    service="xauslaender1211OZGPORTALABH",
                    message_type=MessageKind("OZG.Antrag.130101", "urn:l", "1", "urn:p"),
                    business_scenario="XAUSLAENDER_DATA")


def _adapter(identity: SigningIdentity, options: dict[str, object]) -> Xta2Adapter:
    # never connects: prepare_container makes no call
    return Xta2Adapter("bench", endpoint=XtaEndpoint("http://127.0.0.1:1/xta"), author=Party("alp:000001"),
                       identity=identity, options=options)


def _cipher_value(container: OutgoingContainer) -> tuple[bool, bool]:
    """(encrypted, cipher sent as an MTOM part) of a prepared container."""
    from transport.security.encryption import XENC_NS

    payload = container_payload(container.element)  # EncryptedData's own CipherValue, not the key's
    value = payload.find(f"{{{XENC_NS}}}CipherData/{{{XENC_NS}}}CipherValue")
    return value is not None, value is not None and xop_cid(value) is not None and container.mtom


def _check_paths(default: Xta2Adapter, inline: Xta2Adapter, delivery: Delivery) -> None:
    """Refuse to print a figure under a label the code no longer matches."""
    options = Xta2Options()
    if not (options.sign and options.encrypt and options.mtom):
        raise SystemExit("Xta2Options defaults changed (sign/encrypt/mtom): update the labels of this benchmark")
    with default.prepare_container(delivery) as container:
        if _cipher_value(container) != (True, True):
            raise SystemExit("default prepare_container no longer sends the ciphertext as an MTOM part")
    with inline.prepare_container(delivery) as container:
        if _cipher_value(container) != (True, False):
            raise SystemExit("prepare_container with mtom = false no longer encrypts inline")


def bench_size(size: int, repeat: int, pki: dict[str, tuple[Path, Path]]) -> dict[str, Spread]:
    """Every row named after the function it times; rows run interleaved (one call each per round)."""
    signer = load_signing_identity(*pki["portal"])
    reader = load_signing_identity(*pki["reader"])
    trusted = [load_signing_identity(*pki["portal"]).certificate]
    content = application(size)
    signed = sign_content(content, signer)
    plaintext = serialize(build_content_container(signed))
    inline_wire = serialize(encrypt_xml(plaintext, reader.certificate))
    parts = Attachments()
    mtom_wire = serialize(encrypt_container(signed, reader.certificate, parts))
    [cipher_part] = list(parts)
    mtom_parts = {cipher_part.cid: memoryview(b"".join(bytes(c) for c in cipher_part.chunks()))}
    parts.close()
    delivery = _delivery(content, reader.certificate)
    default = _adapter(signer, {})  # no options: what a worker gets from a config without [options]
    inline = _adapter(signer, {"mtom": False})
    _check_paths(default, inline, delivery)

    def encrypt_default() -> None:
        attachments = Attachments()
        encrypt_container(signed, reader.certificate, attachments)
        attachments.close()

    def decrypt_default() -> bytes:
        encrypted = parse_xml(mtom_wire)
        raw = cipher_octets(encrypted, mtom_parts)
        assert raw is not None
        return decrypt_octets_for(encrypted, raw, reader.private_key)

    def prepare(adapter: Xta2Adapter) -> None:
        with adapter.prepare_container(delivery):
            pass

    rows: dict[str, Callable[[], object]] = {
        "sign_content (detached, all parts)": lambda: sign_content(content, signer),
        "verify_content": lambda: verify_content(signed, trusted),
        "encrypt_container -> MTOM cipher part (default)": encrypt_default,
        "encrypt_xml of serialised container (mtom=false)": lambda: encrypt_xml(plaintext, reader.certificate),
        "parse + decrypt_octets_for, MTOM part (default)": decrypt_default,
        "parse + decrypt_xml, inline (mtom=false)": lambda: decrypt_xml(
            parse_xml(inline_wire), reader.private_key),  # type: ignore[arg-type]
        DEFAULT_PATH: lambda: prepare(default),
        "prepare_container, mtom=false (sign + encrypt_xml inline)": lambda: prepare(inline),
    }
    try:
        return interleaved({name: timed(fn) for name, fn in rows.items()}, repeat, warmup_rounds=3)
    finally:
        default.close()
        inline.close()


def key_files(directory: Path) -> dict[str, tuple[Path, Path | None, bytes | None]]:
    files: dict[str, tuple[Path, Path | None, bytes | None]] = {}
    for bits in (2048, 4096):
        pki = make_test_pki(directory / f"rsa{bits}", ["signer"], key_size=bits)
        key_path, cert_path = pki["signer"]
        files[f"PEM RSA-{bits} (unencrypted)"] = (key_path, cert_path, None)
        identity = load_signing_identity(key_path, cert_path)
        p12 = directory / f"signer{bits}.p12"
        p12.write_bytes(pkcs12.serialize_key_and_certificates(
            b"signer", identity.private_key, identity.certificate, None,
            serialization.BestAvailableEncryption(PIN)))
        files[f"PKCS#12 RSA-{bits} (PIN)"] = (p12, None, PIN)
    return files


def _loader(key: Path, cert: Path | None, pin: bytes | None) -> Callable[[], SigningIdentity]:
    return lambda: load_signing_identity(key, cert, pin)


def bench_key_loading(directory: Path, repeat: int) -> dict[str, Spread]:
    results = {}
    files = key_files(directory)
    for label, (key, cert, pin) in files.items():
        results[f"load_signing_identity, {label}"] = sample(_loader(key, cert, pin), repeat, warmup=1)
    key, cert, _ = files["PEM RSA-2048 (unencrypted)"]
    store = KeyStore(check_interval=30)
    store.signing_identity(key, cert)
    results["KeyStore.signing_identity, cached"] = sample(lambda: store.signing_identity(key, cert), repeat * 50)
    due = KeyStore(check_interval=0)  # every lookup stats the files (worst case of the reload check)
    due.signing_identity(key, cert)
    results["KeyStore.signing_identity + change check"] = sample(
        lambda: due.signing_identity(key, cert), repeat * 50)
    return results


def _cell(spread: Spread) -> str:
    return f"{spread.median * 1000:.3f} [{spread.minimum * 1000:.2f}–{spread.maximum * 1000:.2f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    small_n, large_n, key_n = (30, MIN_RUNS, MIN_RUNS) if args.quick else (300, 30, 15)
    print(f"python {platform.python_version()}, cryptography {cryptography.__version__} "
          f"({openssl_backend.openssl_version_text()}), {platform.machine()}; at start: {load_note()}")
    with tempfile.TemporaryDirectory(prefix="bench-security-") as tmp:
        directory = Path(tmp)
        pki = make_test_pki(directory / "pki", ["portal", "reader"])
        small = bench_size(20 * 1024, small_n, pki)
        large = bench_size(2 * 1024 * 1024, large_n, pki)
        keys = bench_key_loading(directory, key_n)
    width = max(map(len, [*small, *keys]))
    print(f"\n{'operation: median [min–max], ms':<{width}}  {'20 KB (n=' + str(small_n) + ')':>24}  "
          f"{'2 MB (n=' + str(large_n) + ')':>24}")
    for name in small:
        print(f"{name:<{width}}  {_cell(small[name]):>24}  {_cell(large[name]):>24}")
    print(f"\n{'key loading: median [min–max], ms':<{width}}  {'(n=' + str(key_n) + ', lookups n=' + str(key_n * 50) + ')':>24}")
    for name, spread in keys.items():
        print(f"{name:<{width}}  {_cell(spread):>24}")
    print(f"\nat end: {load_note()}")
    step = small[DEFAULT_PATH].median * 1000
    verdict = "OK" if step < TARGET_MS else "MISSED"
    print(f"\ntarget: Xta2Adapter.{DEFAULT_PATH}, 20 KB, < {TARGET_MS} ms median: {step:.3f} ms -> {verdict}")
    return 0 if step < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
