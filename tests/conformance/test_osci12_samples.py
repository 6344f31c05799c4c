"""OSCI 1.2 sample messages (Governikus Java library): signatures verify, encrypted parts decrypt.

The samples are read in place from ../shared/standards/osci12/ (skipped with a reason only when
that folder is absent). Signer trust: the samples' CA ("Governikus CA 8:PN") is not shipped, so
the originator certificate ``alice_signature_4096.cer`` itself is the pinned trust anchor.
"""

from __future__ import annotations

import base64
import binascii
import email
from dataclasses import dataclass
from email import policy
from pathlib import Path
from typing import cast

import pytest
from cryptography import x509
from lxml import etree

from hub.errors import DecryptionFailed, SignatureInvalid
from tests.conftest import standards_dir
from transport.security.keys import (
    SigningIdentity,
    load_certificate,
    load_signing_identity,
)
from transport.security.osci12 import (
    decrypt_osci,
    decrypt_with_mgmt_data,
    verify_osci_signature,
)
from transport.security.xml import parse_xml

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
OSCI = "http://www.osci.de/2002/04/osci"
DS = "http://www.w3.org/2000/09/xmldsig#"
XENC = "http://www.w3.org/2001/04/xmlenc#"
PIN = b"123456"

UNENCRYPTED = {"01": "01_GetMessageId.request.transport-unencrypted.osci.mime",
               "03": "03_StoreDelivery.request.transport-unencrypted.osci.mime"}
ENCRYPTED = {"02": "02_GetMessageId.request.transport-encrypted.osci.mime",
             "04": "04_StoreDelivery.request.transport-encrypted.osci.mime"}
# What the client signature of each request must cover (the rest of what it covers is returned).
CLIENT_REQUIRED = {
    "GetMessageId": ["#body", "#controlblock", "#desiredlanguages", "#nonintermediarycertificates"],
    "StoreDelivery": ["#body", "#controlblock", "#storedelivery", "#MetaData",
                      "#nonintermediarycertificates", "cid:anlage_1.txt"],
}


@dataclass(frozen=True)
class Osci:
    root: etree._Element
    attachments: dict[str, bytes]


@dataclass(frozen=True)
class Keys:
    alice: x509.Certificate
    bob: SigningIdentity
    manager: SigningIdentity


@pytest.fixture(scope="module")
def osci12() -> Path:
    return standards_dir("osci12")


@pytest.fixture(scope="module")
def keys(osci12: Path) -> Keys:
    certs = osci12 / "test-certs"
    return Keys(
        alice=load_certificate(certs / "alice_signature_4096.cer"),
        bob=load_signing_identity(certs / "bob_cipher_4096.p12", password=PIN),
        manager=load_signing_identity(certs / "osci_manager_cipher_4096.p12", password=PIN),
    )


def read_mime(data: bytes) -> Osci:
    """Split an OSCI MIME message: the SOAP part (hardened parse) and the attachments by cid."""
    msg = email.message_from_bytes(data, policy=policy.compat32)
    assert msg.get_content_type() == "multipart/related"
    parts = [p for p in msg.walk() if not p.is_multipart()]
    # get_payload(decode=True) of a part that is not multipart is its bytes
    by_cid = {p["Content-ID"].strip().strip("<>"): cast(bytes, p.get_payload(decode=True)) for p in parts}
    root = parse_xml(by_cid.pop("osci@message"))
    return Osci(root=root, attachments=by_cid)


def load(osci12: Path, name: str) -> Osci:
    return read_mime((osci12 / "samples" / name).read_bytes())


def transport_decrypt(message: Osci, key: SigningIdentity) -> Osci:
    [enc] = message.root.findall(f"{{{SOAP}}}Body/{{{XENC}}}EncryptedData")
    return read_mime(decrypt_osci(enc, key.private_key, attachments=message.attachments))


def request_kind(message: Osci) -> str:
    header = message.root.find(f"{{{SOAP}}}Header")
    return "StoreDelivery" if header.find(f"{{{OSCI}}}storeDelivery") is not None else "GetMessageId"


def client_signature(message: Osci) -> etree._Element:
    return message.root.find(f"{{{SOAP}}}Header/{{{OSCI}}}ClientSignature/{{{DS}}}Signature")


def check_client_signature(message: Osci, keys: Keys) -> None:
    kind = request_kind(message)
    verified = verify_osci_signature(client_signature(message), [keys.alice],
                                     required=CLIENT_REQUIRED[kind], attachments=message.attachments)
    assert verified.signer == keys.alice
    assert verified.signer.subject.rfc4514_string().endswith("CN=Alice Signature 4096")
    body = verified.reference("#body").element
    assert body is message.root.find(f"{{{SOAP}}}Body")  # the verified element is the Body itself


def check_content(message: Osci, keys: Keys) -> None:
    """StoreDelivery: decrypt the ContentContainer for the reader (Bob), its attachment with the
    key inside, and verify the author's content signature over both."""
    [enc] = message.root.findall(f"{{{SOAP}}}Body/{{{OSCI}}}ContentPackage/{{{XENC}}}EncryptedData")
    container = parse_xml(decrypt_osci(enc, keys.bob.private_key))
    assert container.tag == f"{{{OSCI}}}ContentContainer"
    [attachment_enc] = container.findall(f"{{{XENC}}}EncryptedData")
    attachment = decrypt_with_mgmt_data(attachment_enc, attachments=message.attachments)
    assert attachment == b"Platzhalter-Anlage"
    # every content of the container must be covered (Ids are counters that differ per message)
    [text] = container.findall(f"{{{OSCI}}}Content/{{{OSCI}}}Base64Content")
    [linked] = container.findall(f"{{{OSCI}}}Content[@href]")
    required = ["#" + text.get("Id"), "#" + linked.get("Id"), linked.get("href")]
    assert required[2] == "cid:anlage_1.txt"
    verified = verify_osci_signature(
        container.find(f"{{{DS}}}Signature"), [keys.alice], required=required,
        attachments={"anlage_1.txt": attachment},  # the content signature covers the plaintext
        certificate_documents=[message.root],  # RetrievalMethod points into the outer header
    )
    assert verified.signer == keys.alice
    assert verified.reference(required[0]).data == (
        b'<Antrag xmlns="urn:example:placeholder">Platzhalter-Fachnachricht</Antrag>')
    assert verified.reference("cid:anlage_1.txt").data == attachment


# ------------------------------------------------------------------------------- positive


@pytest.mark.parametrize("sample", sorted(UNENCRYPTED))
def test_unencrypted_request_client_signature_verifies(osci12: Path, keys: Keys, sample: str) -> None:
    check_client_signature(load(osci12, UNENCRYPTED[sample]), keys)


@pytest.mark.parametrize("sample", sorted(ENCRYPTED))
def test_transport_encrypted_request_decrypts_and_verifies(osci12: Path, keys: Keys, sample: str) -> None:
    outer = load(osci12, ENCRYPTED[sample])
    assert list(outer.attachments) == ["osci_enc"]
    inner = transport_decrypt(outer, keys.manager)  # intermediary key
    check_client_signature(inner, keys)
    if request_kind(inner) == "StoreDelivery":
        check_content(inner, keys)


def test_store_delivery_content_decrypts_for_reader_and_verifies(osci12: Path, keys: Keys) -> None:
    check_content(load(osci12, UNENCRYPTED["03"]), keys)


# ----------------------------------------------------------- exact reasons where it differs


def test_cipher_reference_declares_base64_but_part_is_binary(osci12: Path) -> None:
    """The library declares a ds:base64 transform on CipherReference cid:osci_enc, but the MIME
    part is raw octets (Content-Transfer-Encoding: binary); applying the transform as declared
    fails, so the hub uses the part's octets as they are (see transport/security/osci12.py)."""
    outer = load(osci12, ENCRYPTED["02"])
    ref = outer.root.find(f".//{{{XENC}}}CipherReference")
    assert ref.get("URI") == "cid:osci_enc"
    assert [t.get("Algorithm") for t in ref.iter(f"{{{DS}}}Transform")] == [DS + "base64"]
    with pytest.raises(binascii.Error):
        base64.b64decode(outer.attachments["osci_enc"], validate=True)


def test_transport_encryption_is_not_for_the_reader(osci12: Path, keys: Keys) -> None:
    outer = load(osci12, ENCRYPTED["04"])
    with pytest.raises(DecryptionFailed, match="not encrypted for this key"):
        transport_decrypt(outer, keys.bob)


def test_content_signature_needs_outer_certificate(osci12: Path, keys: Keys) -> None:
    """Inside the ContentContainer, KeyInfo only points (RetrievalMethod) into the outer header."""
    message = load(osci12, UNENCRYPTED["03"])
    [enc] = message.root.findall(f"{{{SOAP}}}Body/{{{OSCI}}}ContentPackage/{{{XENC}}}EncryptedData")
    container = parse_xml(decrypt_osci(enc, keys.bob.private_key))
    with pytest.raises(SignatureInvalid, match=r"certificate Id 'author0_signature_[0-9a-f]+' not found"):
        verify_osci_signature(container.find(f"{{{DS}}}Signature"), [keys.alice],
                              attachments={"anlage_1.txt": b"Platzhalter-Anlage"})


def test_signer_needs_a_trust_anchor(osci12: Path, keys: Keys) -> None:
    message = load(osci12, UNENCRYPTED["01"])
    with pytest.raises(SignatureInvalid, match="signer not trusted"):
        verify_osci_signature(client_signature(message), [keys.bob.certificate])


@pytest.mark.parametrize("target", ["Body", "ControlBlock"])
def test_tampered_signed_element_fails(osci12: Path, keys: Keys, target: str) -> None:
    message = load(osci12, UNENCRYPTED["01"])
    el = next(e for e in message.root.iter() if isinstance(e.tag, str) and etree.QName(e).localname == target)
    el.set("Tampered", "1")
    with pytest.raises(SignatureInvalid, match=f"digest mismatch for reference '#{el.get('Id')}'"):
        verify_osci_signature(client_signature(message), [keys.alice])


def test_tampered_attachment_fails(osci12: Path, keys: Keys) -> None:
    message = load(osci12, UNENCRYPTED["03"])
    data = bytearray(message.attachments["anlage_1.txt"])
    data[0] ^= 1
    attachments = {**message.attachments, "anlage_1.txt": bytes(data)}
    with pytest.raises(SignatureInvalid, match="digest mismatch for reference 'cid:anlage_1.txt'"):
        verify_osci_signature(client_signature(message), [keys.alice], attachments=attachments)


def test_wrapping_with_duplicate_id_fails(osci12: Path, keys: Keys) -> None:
    """Classic wrapping: the signed Body moves into a header wrapper, an evil Body takes its Id."""
    message = load(osci12, UNENCRYPTED["01"])
    body = message.root.find(f"{{{SOAP}}}Body")
    wrapper = etree.SubElement(message.root.find(f"{{{SOAP}}}Header"), "Wrapper")
    evil = etree.Element(f"{{{SOAP}}}Body", Id="body")
    etree.SubElement(evil, f"{{{OSCI}}}getMessageId").text = "evil"
    body.addprevious(evil)
    wrapper.append(body)
    with pytest.raises(SignatureInvalid, match="reference Id 'body' not unique"):
        verify_osci_signature(client_signature(message), [keys.alice])


def test_required_reference_missing_fails(osci12: Path, keys: Keys) -> None:
    message = load(osci12, UNENCRYPTED["01"])
    with pytest.raises(SignatureInvalid, match="does not cover #storedelivery"):
        verify_osci_signature(client_signature(message), [keys.alice], required=["#body", "#storedelivery"])
