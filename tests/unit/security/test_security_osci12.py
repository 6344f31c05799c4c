"""OSCI 1.2 signature verification and decryption: strictness on synthetic messages.

The real samples are checked in tests/conformance/test_osci12_samples.py; here each rule of the
verifier gets a message built for it (signed the OSCI way: Id references, inclusive C14N).
"""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING

import pytest
from lxml import etree

from hub.errors import DecryptionFailed, SignatureInvalid, UnsupportedAlgorithm
from transport.security import dsig
from transport.security.encryption import XENC_NS, encrypt_xml
from transport.security.keys import SigningIdentity
from transport.security.osci12 import (
    OSCI12_8_NS,
    decrypt_osci,
    decrypt_with_mgmt_data,
    verify_osci_signature,
)
from transport.security.xml import parse_xml, serialize

if TYPE_CHECKING:  # conftest is not importable at run time
    from conftest import Pki

DS = f"{{{dsig.DS_NS}}}"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
ENVELOPE = (f'<soap:Envelope xmlns:soap="{SOAP}" xmlns:osci="http://www.osci.de/2002/04/osci">'
            '<soap:Header><osci:ControlBlock Id="controlblock"><osci:Challenge>abc</osci:Challenge>'
            '</osci:ControlBlock><osci:ClientSignature Id="clientsignature"/>'
            '<osci:Certs><osci:SignatureCertificateOriginator Id="originator_signature"/></osci:Certs>'
            '</soap:Header><soap:Body Id="body"><osci:Content><osci:Base64Content Id="content0">'
            'PEFudHJhZy8+</osci:Base64Content></osci:Content></soap:Body></soap:Envelope>')
REFS = [("#controlblock", dsig.C14N), ("#body", dsig.C14N), ("#content0", dsig.BASE64), ("cid:att", None)]
ATTACHMENTS = {"att": b"attachment octets"}


def osci_signed(identity: SigningIdentity, refs: list[tuple[str, str | None]] = REFS, *,
                key_info: str = "retrieval", doc: bytes | None = None) -> etree._Element:
    """An envelope with an OSCI-style ClientSignature (digests computed like the Java library)."""
    root = parse_xml(doc or ENVELOPE.encode())
    holder = root.find(".//{*}SignatureCertificateOriginator")
    dsig.x509_key_info(holder, identity.certificate)
    holder.append(holder[0][0])  # ds:X509Data directly below the holder, as OSCI has it
    holder.remove(holder[0])
    sig = etree.SubElement(root.find(".//{*}ClientSignature"), f"{DS}Signature")
    signed_info = etree.SubElement(sig, f"{DS}SignedInfo")
    etree.SubElement(signed_info, f"{DS}CanonicalizationMethod", Algorithm=dsig.C14N)
    etree.SubElement(signed_info, f"{DS}SignatureMethod", Algorithm=dsig.RSA_SHA256)
    for uri, transform in refs:
        ref = etree.SubElement(signed_info, f"{DS}Reference", URI=uri)
        if transform:
            etree.SubElement(etree.SubElement(ref, f"{DS}Transforms"), f"{DS}Transform", Algorithm=transform)
        if uri.startswith("cid:"):
            data = ATTACHMENTS.get(uri[4:], b"")
        else:
            found = root.xpath("//*[@Id=$i]", i=uri[1:])
            hits = [h for h in found if isinstance(h, etree._Element)] if isinstance(found, list) else []
            data = b"" if not hits else (base64.b64decode(hits[0].text or "") if transform == dsig.BASE64
                                         else etree.tostring(hits[0], method="c14n"))
        etree.SubElement(ref, f"{DS}DigestMethod", Algorithm=dsig.SHA256)
        etree.SubElement(ref, f"{DS}DigestValue").text = base64.b64encode(hashlib.sha256(data).digest()).decode()
    value = dsig.sign_bytes(identity.private_key, dsig.RSA_SHA256, etree.tostring(signed_info, method="c14n"))
    etree.SubElement(sig, f"{DS}SignatureValue").text = base64.b64encode(value).decode()
    if key_info == "retrieval":
        etree.SubElement(etree.SubElement(sig, f"{DS}KeyInfo"), f"{DS}RetrievalMethod", URI="#originator_signature")
    else:
        dsig.x509_key_info(sig, identity.certificate)
    return sig


def test_round_trip_returns_the_referenced_elements(tpki: Pki) -> None:
    sig = osci_signed(tpki.portal)
    verified = verify_osci_signature(sig, [tpki.ca], required=["#body", "cid:att"], attachments=ATTACHMENTS)
    assert verified.signer == tpki.portal.certificate
    root = sig.getroottree().getroot()
    assert verified.reference("#body").element is root.find(f"{{{SOAP}}}Body")
    assert verified.reference("#content0").data == b"<Antrag/>"
    assert "Antrag" not in repr(verified)  # referenced octets may be personal data: not in a repr


def test_inline_certificate(tpki: Pki) -> None:
    sig = osci_signed(tpki.portal, key_info="inline")
    assert verify_osci_signature(sig, [tpki.ca], attachments=ATTACHMENTS).signer == tpki.portal.certificate


def test_duplicate_id_is_refused(tpki: Pki) -> None:
    sig = osci_signed(tpki.portal)
    root = sig.getroottree().getroot()
    etree.SubElement(root.find(f"{{{SOAP}}}Header"), "Evil", Id="body")
    with pytest.raises(SignatureInvalid, match="reference Id 'body' not unique"):
        verify_osci_signature(sig, [tpki.ca], attachments=ATTACHMENTS)


@pytest.mark.parametrize("uri", ["", "#xpointer(/)", "http://example.org/x", "cid:"])
def test_other_uri_forms_refused(tpki: Pki, uri: str) -> None:
    sig = osci_signed(tpki.portal, [("#body", dsig.C14N), (uri, dsig.C14N)])
    with pytest.raises(SignatureInvalid, match="not allowed"):
        verify_osci_signature(sig, [tpki.ca])


def test_uri_referenced_twice_refused(tpki: Pki) -> None:
    sig = osci_signed(tpki.portal, [("#body", dsig.C14N), ("#body", dsig.EXC_C14N)])
    with pytest.raises(SignatureInvalid, match="more than once"):
        verify_osci_signature(sig, [tpki.ca])


def test_unknown_transform_refused(tpki: Pki) -> None:
    sig = osci_signed(tpki.portal, [("#body", "http://www.w3.org/TR/1999/REC-xslt-19991116")])
    with pytest.raises(UnsupportedAlgorithm, match="REC-xslt-19991116 not supported"):
        verify_osci_signature(sig, [tpki.ca])


def test_base64_transform_on_element_with_children_refused(tpki: Pki) -> None:
    sig = osci_signed(tpki.portal, [("#body", dsig.BASE64)])
    with pytest.raises(SignatureInvalid, match="base64 transform on element '#body' with child elements"):
        verify_osci_signature(sig, [tpki.ca])


def test_cid_with_transform_or_unknown_part_refused(tpki: Pki) -> None:
    with pytest.raises(SignatureInvalid, match="has transforms"):
        verify_osci_signature(osci_signed(tpki.portal, [("cid:att", dsig.C14N)]), [tpki.ca], attachments=ATTACHMENTS)
    with pytest.raises(SignatureInvalid, match="names no MIME part"):
        verify_osci_signature(osci_signed(tpki.portal, [("cid:att", None)]), [tpki.ca])


def test_tampered_reference_and_attachment(tpki: Pki) -> None:
    sig = osci_signed(tpki.portal)
    sig.getroottree().getroot().find(".//{*}Challenge").text = "abd"
    with pytest.raises(SignatureInvalid, match="digest mismatch for reference '#controlblock'"):
        verify_osci_signature(sig, [tpki.ca], attachments=ATTACHMENTS)
    with pytest.raises(SignatureInvalid, match="digest mismatch for reference 'cid:att'"):
        verify_osci_signature(osci_signed(tpki.portal), [tpki.ca], attachments={"att": b"changed"})


def test_untrusted_and_retrieval_rules(tpki: Pki, rogue_pki: Pki) -> None:
    with pytest.raises(SignatureInvalid, match="signer not trusted"):
        verify_osci_signature(osci_signed(tpki.portal), [rogue_pki.ca], attachments=ATTACHMENTS)
    sig = osci_signed(tpki.portal)
    sig.find(f"{DS}KeyInfo/{DS}RetrievalMethod").set("URI", "http://example.org/cert")
    with pytest.raises(SignatureInvalid, match="RetrievalMethod URI .* not allowed"):
        verify_osci_signature(sig, [tpki.ca], attachments=ATTACHMENTS)


# -------------------------------------------------------------------------------- decryption


def _with_cipher_reference(enc: etree._Element, uri: str) -> tuple[etree._Element, bytes]:
    value = enc.find(f"{{{XENC_NS}}}CipherData/{{{XENC_NS}}}CipherValue")
    raw = base64.b64decode(value.text)
    cipher_data = value.getparent()
    cipher_data.remove(value)
    ref = etree.SubElement(cipher_data, f"{{{XENC_NS}}}CipherReference", URI=uri)
    etree.SubElement(etree.SubElement(ref, f"{{{XENC_NS}}}Transforms"), f"{DS}Transform", Algorithm=dsig.BASE64)
    return enc, raw


def test_cipher_reference_to_binary_part(tpki: Pki) -> None:
    enc, raw = _with_cipher_reference(encrypt_xml(b"<a/>", tpki.reader.certificate), "cid:osci_enc")
    assert decrypt_osci(enc, tpki.reader.private_key, attachments={"osci_enc": raw}) == b"<a/>"
    with pytest.raises(DecryptionFailed, match="names no MIME part"):
        decrypt_osci(enc, tpki.reader.private_key, attachments={})


def test_iv_length_other_than_12_refused(tpki: Pki) -> None:
    enc = encrypt_xml(b"<a/>", tpki.reader.certificate)
    etree.SubElement(enc.find(f"{{{XENC_NS}}}EncryptionMethod"), f"{{{OSCI12_8_NS}}}IvLength", Value="16")
    with pytest.raises(UnsupportedAlgorithm, match="IV length '16' not supported"):
        decrypt_osci(enc, tpki.reader.private_key)


def test_mgmt_data_key(tpki: Pki) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key, iv = bytes(range(32)), bytes(12)
    enc = parse_xml(serialize(encrypt_xml(b"x", tpki.reader.certificate, type_uri=None)))
    key_info = enc.find(f"{DS}KeyInfo")
    for child in list(key_info):
        key_info.remove(child)
    etree.SubElement(key_info, f"{DS}MgmtData").text = base64.b64encode(key).decode()
    enc, _raw = _with_cipher_reference(enc, "cid:att")
    sealed = iv + AESGCM(key).encrypt(iv, b"Anlage", None)
    assert decrypt_with_mgmt_data(enc, attachments={"att": sealed}) == b"Anlage"
    with pytest.raises(DecryptionFailed, match="wrong key or tampered"):
        decrypt_with_mgmt_data(enc, attachments={"att": sealed[:-1] + b"\x00"})
    key_info[0].text = base64.b64encode(key[:16]).decode()
    with pytest.raises(DecryptionFailed, match="MgmtData key has 16 bytes"):
        decrypt_with_mgmt_data(enc, attachments={"att": sealed})
