"""XML-Enc 1.1 (AES-256-GCM + RSA-OAEP/MGF1-SHA256): round trip, tampering, schema, refusals."""

from __future__ import annotations

import base64
import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from lxml import etree

from hub.errors import DecryptionFailed, UnsupportedAlgorithm
from transport.security.encryption import (
    AES256_CBC,
    AES256_GCM,
    DS_NS,
    MGF1_SHA256,
    RSA_1_5,
    RSA_OAEP,
    RSA_OAEP_MGF1P,
    SHA256,
    TRIPLEDES_CBC,
    TYPE_ELEMENT,
    XENC11_NS,
    XENC_NS,
    decrypt_xml,
    encrypt_xml,
)
from transport.security.xml import parse_xml, serialize

if TYPE_CHECKING:  # conftest is not importable at run time (tests/unit is not a package)
    from conftest import Pki

X = f"{{{XENC_NS}}}"
DS = f"{{{DS_NS}}}"
X11 = f"{{{XENC11_NS}}}"
PLAINTEXT = (
    b'<ContentContainer xmlns="urn:test"><Message>GEHEIM-Antrag-4711</Message></ContentContainer>'
)


def content_cipher(el: etree._Element) -> etree._Element:
    return el.find(f"{X}CipherData/{X}CipherValue")


def key_method(el: etree._Element) -> etree._Element:
    return el.find(f"{DS}KeyInfo/{X}EncryptedKey/{X}EncryptionMethod")


def test_round_trip(tpki: Pki) -> None:
    enc = encrypt_xml(PLAINTEXT, tpki.reader.certificate)
    assert decrypt_xml(enc, tpki.reader.private_key) == PLAINTEXT


def test_round_trip_2mb_through_wire_bytes(tpki: Pki) -> None:
    plaintext = os.urandom(2 * 1024 * 1024)
    wire = serialize(encrypt_xml(plaintext, tpki.reader.certificate))
    decrypted = decrypt_xml(parse_xml(wire), tpki.reader.private_key)
    assert decrypted == plaintext


def test_empty_plaintext(tpki: Pki) -> None:
    enc = encrypt_xml(b"", tpki.reader.certificate)
    assert decrypt_xml(enc, tpki.reader.private_key) == b""


def test_structure_and_algorithms(tpki: Pki) -> None:
    enc = encrypt_xml(PLAINTEXT, tpki.reader.certificate)
    assert enc.tag == f"{X}EncryptedData"
    assert enc.get("Type") == TYPE_ELEMENT
    assert enc.find(f"{X}EncryptionMethod").get("Algorithm") == AES256_GCM
    method = key_method(enc)
    assert method.get("Algorithm") == RSA_OAEP
    assert method.find(f"{DS}DigestMethod").get("Algorithm") == SHA256
    assert method.find(f"{X11}MGF").get("Algorithm") == MGF1_SHA256
    enc_key = enc.find(f"{DS}KeyInfo/{X}EncryptedKey")
    cert_b64 = enc_key.findtext(f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate")
    assert x509.load_der_x509_certificate(base64.b64decode(cert_b64)) == tpki.reader.certificate
    raw = base64.b64decode(content_cipher(enc).text)
    assert len(raw) == 12 + len(PLAINTEXT) + 16  # IV || ciphertext || tag
    wrapped = base64.b64decode(enc_key.findtext(f"{X}CipherData/{X}CipherValue"))
    assert len(wrapped) == 256  # RSA-2048
    assert b"GEHEIM" not in serialize(enc)


def test_fresh_key_and_iv_each_time(tpki: Pki) -> None:
    a = encrypt_xml(PLAINTEXT, tpki.reader.certificate)
    b = encrypt_xml(PLAINTEXT, tpki.reader.certificate)
    assert content_cipher(a).text[:16] != content_cipher(b).text[:16]


def test_validates_against_official_xenc_schema(tpki: Pki, standards: Path, tmp_path: Path) -> None:
    """xenc-schema.xsd (XTA 2 v3) plus the official xenc11 schema for the MGF in the xs:any."""
    xta = standards / "xta2-v3/schema"
    wrapper = tmp_path / "wrapper.xsd"
    wrapper.write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:test:w">'
        f'<xs:import namespace="{DS_NS}" schemaLocation="'
        f'{(xta / "xmldsig-core-schema.xsd").as_uri()}"/>'
        f'<xs:import namespace="{XENC_NS}" schemaLocation="{(xta / "xenc-schema.xsd").as_uri()}"/>'
        f'<xs:import namespace="{XENC11_NS}" schemaLocation="'
        f'{(standards / "osci12/schema/extern/xenc-schema-11.xsd").as_uri()}"/>'
        "</xs:schema>"
    )
    enc = parse_xml(serialize(encrypt_xml(PLAINTEXT, tpki.reader.certificate)))
    schema = etree.XMLSchema(etree.parse(str(wrapper)))
    assert schema.validate(enc), schema.error_log

    # Against xenc-schema.xsd alone, the only complaint is the strict wildcard not knowing MGF.
    xenc_only = etree.XMLSchema(etree.parse(str(xta / "xenc-schema.xsd")))
    assert not xenc_only.validate(enc)
    errors = [e.message for e in xenc_only.error_log]  # type: ignore[attr-defined]  # lxml-stubs 0.5.1: _ErrorLog declared empty
    assert errors and all("{http://www.w3.org/2009/xmlenc11#}MGF" in m for m in errors), errors


def test_wrong_key_fails(tpki: Pki) -> None:
    enc = encrypt_xml(PLAINTEXT, tpki.reader.certificate)
    with pytest.raises(DecryptionFailed) as info:
        decrypt_xml(enc, tpki.other.private_key)
    assert "GEHEIM" not in str(info.value)


def test_wrong_key_without_certificate_hint_fails(tpki: Pki) -> None:
    enc = encrypt_xml(PLAINTEXT, tpki.reader.certificate)
    key_info = enc.find(f"{DS}KeyInfo/{X}EncryptedKey/{DS}KeyInfo")
    key_info.getparent().remove(key_info)
    with pytest.raises(DecryptionFailed, match="cannot unwrap"):
        decrypt_xml(enc, tpki.other.private_key)
    assert decrypt_xml(enc, tpki.reader.private_key) == PLAINTEXT


@pytest.mark.parametrize("offset", [0, 12, -1], ids=["iv", "ciphertext", "tag"])
def test_tampered_ciphertext_fails(tpki: Pki, offset: int) -> None:
    enc = encrypt_xml(PLAINTEXT, tpki.reader.certificate)
    raw = bytearray(base64.b64decode(content_cipher(enc).text))
    raw[offset] ^= 0x01
    content_cipher(enc).text = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(DecryptionFailed, match="wrong key or tampered") as info:
        decrypt_xml(enc, tpki.reader.private_key)
    assert "GEHEIM" not in str(info.value)


def test_truncated_ciphertext_fails(tpki: Pki) -> None:
    enc = encrypt_xml(PLAINTEXT, tpki.reader.certificate)
    content_cipher(enc).text = base64.b64encode(b"\x00" * 20).decode()
    with pytest.raises(DecryptionFailed, match="shorter than IV and tag"):
        decrypt_xml(enc, tpki.reader.private_key)


def test_tampered_wrapped_key_fails(tpki: Pki) -> None:
    enc = encrypt_xml(PLAINTEXT, tpki.reader.certificate)
    value = enc.find(f"{DS}KeyInfo/{X}EncryptedKey/{X}CipherData/{X}CipherValue")
    raw = bytearray(base64.b64decode(value.text))
    raw[5] ^= 0x01
    value.text = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(DecryptionFailed, match="cannot unwrap"):
        decrypt_xml(enc, tpki.reader.private_key)


def test_not_encrypted_data_fails(tpki: Pki) -> None:
    with pytest.raises(DecryptionFailed, match="expected xenc:EncryptedData"):
        decrypt_xml(etree.fromstring(b"<a/>"), tpki.reader.private_key)


@pytest.mark.parametrize(
    "uri", [AES256_CBC, XENC_NS + "aes128-cbc", TRIPLEDES_CBC, "urn:x:unknown"]
)
def test_deprecated_content_algorithm_refused(tpki: Pki, uri: str) -> None:
    enc = encrypt_xml(PLAINTEXT, tpki.reader.certificate)
    enc.find(f"{X}EncryptionMethod").set("Algorithm", uri)
    with pytest.raises(UnsupportedAlgorithm) as info:
        decrypt_xml(enc, tpki.reader.private_key)
    assert uri in str(info.value)


@pytest.mark.parametrize(
    ("change", "uri"),
    [
        ("method", RSA_1_5),
        ("method", RSA_OAEP_MGF1P),
        ("digest", "http://www.w3.org/2000/09/xmldsig#sha1"),
        ("mgf", XENC11_NS + "mgf1sha1"),
        ("drop-mgf", XENC11_NS + "mgf1sha1"),  # absent MGF means MGF1-SHA1
        ("drop-digest", "http://www.w3.org/2000/09/xmldsig#sha1"),  # absent digest means SHA-1
    ],
)
def test_deprecated_key_transport_refused(tpki: Pki, change: str, uri: str) -> None:
    enc = encrypt_xml(PLAINTEXT, tpki.reader.certificate)
    method = key_method(enc)
    if change == "method":
        method.set("Algorithm", uri)
    elif change == "digest":
        method.find(f"{DS}DigestMethod").set("Algorithm", uri)
    elif change == "mgf":
        method.find(f"{X11}MGF").set("Algorithm", uri)
    elif change == "drop-mgf":
        method.remove(method.find(f"{X11}MGF"))
    else:
        method.remove(method.find(f"{DS}DigestMethod"))
    with pytest.raises(UnsupportedAlgorithm) as info:
        decrypt_xml(enc, tpki.reader.private_key)
    assert uri in str(info.value)


def _legacy_cbc_element(tpki: Pki, key_transport: str) -> etree._Element:
    """What an old sender produced: AES-256-CBC content, RSA-OAEP-MGF1P or RSA 1.5 key."""
    key, iv = os.urandom(32), os.urandom(16)
    pad = 16 - len(PLAINTEXT) % 16
    padded = PLAINTEXT + os.urandom(pad - 1) + bytes([pad])
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = iv + encryptor.update(padded) + encryptor.finalize()
    public = tpki.reader.certificate.public_key()
    if key_transport == RSA_1_5:
        wrapped = public.encrypt(key, padding.PKCS1v15())
    else:
        oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
        wrapped = public.encrypt(key, oaep)
    enc = etree.Element(f"{X}EncryptedData", nsmap={"xenc": XENC_NS, "ds": DS_NS})
    etree.SubElement(enc, f"{X}EncryptionMethod", Algorithm=AES256_CBC)
    enc_key = etree.SubElement(etree.SubElement(enc, f"{DS}KeyInfo"), f"{X}EncryptedKey")
    etree.SubElement(enc_key, f"{X}EncryptionMethod", Algorithm=key_transport)
    etree.SubElement(etree.SubElement(enc_key, f"{X}CipherData"), f"{X}CipherValue").text = (
        base64.encodebytes(wrapped).decode()  # line-wrapped base64, as Java libraries write it
    )
    etree.SubElement(etree.SubElement(enc, f"{X}CipherData"), f"{X}CipherValue").text = (
        base64.encodebytes(ciphertext).decode()
    )
    return enc


def test_legacy_cbc_refused_by_default_and_allowed_on_request(tpki: Pki) -> None:
    enc = _legacy_cbc_element(tpki, RSA_OAEP_MGF1P)
    with pytest.raises(UnsupportedAlgorithm, match=AES256_CBC):
        decrypt_xml(enc, tpki.reader.private_key)
    key = tpki.reader.private_key
    decrypted = decrypt_xml(enc, key, allow_legacy=True)
    assert decrypted == PLAINTEXT


def test_rsa_1_5_refused_even_with_legacy(tpki: Pki) -> None:
    enc = _legacy_cbc_element(tpki, RSA_1_5)
    with pytest.raises(UnsupportedAlgorithm, match=RSA_1_5):
        decrypt_xml(enc, tpki.reader.private_key, allow_legacy=True)


def test_ec_recipient_refused(tpki: Pki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ec")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(UnsupportedAlgorithm, match="RSA"):
        encrypt_xml(PLAINTEXT, cert)
