"""Detached XML-DSig over content parts: round trip, tampering, wrapping, trust, algorithms."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from lxml import etree

from hub.errors import SignatureInvalid, UnsupportedAlgorithm
from transport.content import Content, ContentPart
from transport.security.keys import SigningIdentity, load_private_key
from transport.security.signature import (
    DS_NS,
    EXC_C14N,
    RSA_SHA256,
    SHA256,
    SIGNATURE_DESCRIPTION,
    SIGNATURE_FILENAME,
    VerifiedContent,
    part_uri,
    sign_content,
    verify_content,
)

if TYPE_CHECKING:  # conftest is not importable at run time (tests/unit is not a package)
    from conftest import Pki

DS = f"{{{DS_NS}}}"
MESSAGE = (
    b'<?xml version="1.0" encoding="UTF-8"?><antrag xmlns="urn:test">'
    + b"x" * 20_000
    + b"</antrag>"
)


def make_content() -> Content:
    return Content(
        message=ContentPart(MESSAGE, "application/xml", "antrag.xml"),
        attachments=(
            ContentPart(b"%PDF-1.7 first", "application/pdf", "scan.pdf", "Pass"),
            ContentPart(b"%PDF-1.7 second", "application/pdf", "scan.pdf", "Foto"),
        ),
    )


def sig_root(content: Content) -> etree._Element:
    return etree.fromstring(bytes(content.attachments[-1].data))


def with_signature(content: Content, root: etree._Element) -> Content:
    last = content.attachments[-1]
    new_last = ContentPart(etree.tostring(root), last.content_type, last.filename, last.description)
    return Content(content.message, (*content.attachments[:-1], new_last))


def resign(
    content: Content, identity: SigningIdentity, mutate: Callable[[etree._Element], None]
) -> Content:
    """Mutate SignedInfo and compute a *valid* SignatureValue, so only the structure is wrong."""
    root = sig_root(content)
    signed_info = root.find(f"{DS}SignedInfo")
    mutate(signed_info)
    c14n = etree.tostring(signed_info, method="c14n", exclusive=True)
    key = identity.private_key
    assert isinstance(key, rsa.RSAPrivateKey)
    value = key.sign(c14n, padding.PKCS1v15(), hashes.SHA256())
    root.find(f"{DS}SignatureValue").text = base64.b64encode(value).decode()
    return with_signature(content, root)


def resign_portal(tpki: Pki, mutate: Callable[[etree._Element], None]) -> Content:
    return resign(sign_content(make_content(), tpki.portal), tpki.portal, mutate)


def test_round_trip(tpki: Pki) -> None:
    content = make_content()
    signed = sign_content(content, tpki.portal)
    assert signed.message == content.message
    assert signed.attachments[:-1] == content.attachments
    sig = signed.attachments[-1]
    assert (sig.filename, sig.description, sig.content_type) == (
        SIGNATURE_FILENAME,
        SIGNATURE_DESCRIPTION,
        "application/xml",
    )
    result = verify_content(signed, [tpki.ca])
    assert isinstance(result, VerifiedContent)
    assert result.content == content
    assert result.signer == tpki.portal.certificate


def test_signature_document_shape(tpki: Pki) -> None:
    root = sig_root(sign_content(make_content(), tpki.portal))
    signed_info = root.find(f"{DS}SignedInfo")
    assert signed_info.find(f"{DS}CanonicalizationMethod").get("Algorithm") == EXC_C14N
    assert signed_info.find(f"{DS}SignatureMethod").get("Algorithm") == RSA_SHA256
    refs = signed_info.findall(f"{DS}Reference")
    assert [r.get("URI") for r in refs] == ["cid:part-0", "cid:part-1", "cid:part-2"]
    for ref, part in zip(refs, make_content().parts):
        assert ref.find(f"{DS}Transforms") is None
        assert ref.find(f"{DS}DigestMethod").get("Algorithm") == SHA256
        digest = base64.b64decode(ref.findtext(f"{DS}DigestValue"))
        assert digest == hashlib.sha256(part.data).digest()
    cert_b64 = root.findtext(f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate")
    assert x509.load_der_x509_certificate(base64.b64decode(cert_b64)) == tpki.portal.certificate


def test_signature_validates_against_xmldsig_schema(tpki: Pki, standards: Path) -> None:
    schema = etree.XMLSchema(etree.parse(str(standards / "xta2-v3/schema/xmldsig-core-schema.xsd")))
    root = sig_root(sign_content(make_content(), tpki.portal))
    assert schema.validate(root), schema.error_log


def test_message_only_content(tpki: Pki) -> None:
    content = Content(ContentPart(b"<a/>", "text/xml"))
    assert verify_content(sign_content(content, tpki.portal), [tpki.ca]).content == content


@pytest.mark.parametrize("index", [0, 1, 2])
def test_single_byte_tamper_fails(tpki: Pki, index: int) -> None:
    signed = sign_content(make_content(), tpki.portal)
    parts = list(signed.parts)
    data = bytearray(parts[index].data)
    data[len(data) // 2] ^= 0x01
    parts[index] = ContentPart(bytes(data), parts[index].content_type, parts[index].filename)
    tampered = Content(parts[0], tuple(parts[1:]))
    with pytest.raises(SignatureInvalid, match=f"digest mismatch for reference {index}"):
        verify_content(tampered, [tpki.ca])


def test_swapping_attachments_with_same_filename_fails(tpki: Pki) -> None:
    signed = sign_content(make_content(), tpki.portal)
    a1, a2, sig = signed.attachments
    with pytest.raises(SignatureInvalid, match="digest mismatch for reference 1"):
        verify_content(Content(signed.message, (a2, a1, sig)), [tpki.ca])


def test_reordered_references_fail(tpki: Pki) -> None:
    def swap(si: etree._Element) -> None:
        refs = si.findall(f"{DS}Reference")
        refs[1].addnext(refs[0])

    with pytest.raises(SignatureInvalid, match="reference 0 has URI 'cid:part-1'"):
        verify_content(resign_portal(tpki, swap), [tpki.ca])


def test_renumbered_references_fail(tpki: Pki) -> None:
    """Reference order kept, but URIs swapped so each digest points at the other attachment."""

    def renumber(si: etree._Element) -> None:
        refs = si.findall(f"{DS}Reference")
        refs[1].set("URI", part_uri(2))
        refs[2].set("URI", part_uri(1))

    with pytest.raises(SignatureInvalid, match="reference 1 has URI"):
        verify_content(resign_portal(tpki, renumber), [tpki.ca])


def test_removed_reference_fails(tpki: Pki) -> None:
    def drop(si: etree._Element) -> None:
        si.remove(si.findall(f"{DS}Reference")[-1])

    with pytest.raises(SignatureInvalid, match="2 references for 3 parts"):
        verify_content(resign_portal(tpki, drop), [tpki.ca])


def test_added_reference_fails(tpki: Pki) -> None:
    def add(si: etree._Element) -> None:
        extra = etree.fromstring(etree.tostring(si.findall(f"{DS}Reference")[-1]))
        extra.set("URI", part_uri(3))
        si.append(extra)

    with pytest.raises(SignatureInvalid, match="4 references for 3 parts"):
        verify_content(resign_portal(tpki, add), [tpki.ca])


def test_added_attachment_fails(tpki: Pki) -> None:
    signed = sign_content(make_content(), tpki.portal)
    extra = ContentPart(b"injected", "text/plain", "evil.txt")
    injected = Content(signed.message, (*signed.attachments[:-1], extra, signed.attachments[-1]))
    with pytest.raises(SignatureInvalid, match="3 references for 4 parts"):
        verify_content(injected, [tpki.ca])


def test_removed_attachment_fails(tpki: Pki) -> None:
    signed = sign_content(make_content(), tpki.portal)
    with pytest.raises(SignatureInvalid, match="3 references for 2 parts"):
        verify_content(Content(signed.message, signed.attachments[1:]), [tpki.ca])


def test_transforms_refused(tpki: Pki) -> None:
    def add_transform(si: etree._Element) -> None:
        ref = si.find(f"{DS}Reference")
        transforms = etree.Element(f"{DS}Transforms")
        etree.SubElement(transforms, f"{DS}Transform", Algorithm=EXC_C14N)
        ref.insert(0, transforms)

    with pytest.raises(SignatureInvalid, match="reference 0 has transforms"):
        verify_content(resign_portal(tpki, add_transform), [tpki.ca])


def test_wrapping_with_extra_object_fails(tpki: Pki) -> None:
    signed = sign_content(make_content(), tpki.portal)
    root = sig_root(signed)
    obj = etree.SubElement(root, f"{DS}Object")
    obj.append(etree.fromstring(etree.tostring(root.find(f"{DS}SignedInfo"))))
    with pytest.raises(SignatureInvalid, match="4 children"):
        verify_content(with_signature(signed, root), [tpki.ca])


def test_tampered_signed_info_fails(tpki: Pki) -> None:
    signed = sign_content(make_content(), tpki.portal)
    root = sig_root(signed)
    digest = root.find(f"{DS}SignedInfo/{DS}Reference/{DS}DigestValue")
    digest.text = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    with pytest.raises(SignatureInvalid, match="SignatureValue does not verify"):
        verify_content(with_signature(signed, root), [tpki.ca])


def test_tampered_signature_value_fails(tpki: Pki) -> None:
    signed = sign_content(make_content(), tpki.portal)
    root = sig_root(signed)
    value = bytearray(base64.b64decode(root.findtext(f"{DS}SignatureValue")))
    value[10] ^= 0xFF
    root.find(f"{DS}SignatureValue").text = base64.b64encode(bytes(value)).decode()
    with pytest.raises(SignatureInvalid, match="SignatureValue does not verify"):
        verify_content(with_signature(signed, root), [tpki.ca])


def test_swapped_certificate_fails(tpki: Pki) -> None:
    """A trusted certificate that did not make the signature must not verify it."""
    signed = sign_content(make_content(), tpki.portal)
    other = sign_content(make_content(), tpki.other)
    root = sig_root(signed)
    path = f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate"
    root.find(path).text = sig_root(other).findtext(path)
    with pytest.raises(SignatureInvalid, match="SignatureValue does not verify"):
        verify_content(with_signature(signed, root), [tpki.ca])


def test_untrusted_signer_fails(tpki: Pki, rogue_pki: Pki) -> None:
    signed = sign_content(make_content(), rogue_pki.portal)  # same CN, different CA
    with pytest.raises(SignatureInvalid, match="signer not trusted"):
        verify_content(signed, [tpki.ca])
    with pytest.raises(SignatureInvalid, match="signer not trusted"):
        verify_content(signed, [tpki.portal.certificate, tpki.other.certificate])
    with pytest.raises(SignatureInvalid, match="signer not trusted"):
        verify_content(signed, [])


def test_signer_trusted_directly(tpki: Pki) -> None:
    signed = sign_content(make_content(), tpki.portal)
    assert verify_content(signed, [tpki.other.certificate, tpki.portal.certificate]).signer == (
        tpki.portal.certificate
    )


def test_signer_issued_by_trusted_ca_passes(tpki: Pki, rogue_pki: Pki) -> None:
    signed = sign_content(make_content(), tpki.other)
    result = verify_content(signed, [rogue_pki.ca, tpki.ca])
    assert result.signer == tpki.other.certificate


def test_non_ca_issuer_is_not_a_trust_anchor(tpki: Pki) -> None:
    """A leaf certificate in ``trusted`` does not vouch for certificates it did not issue."""
    signed = sign_content(make_content(), tpki.other)
    with pytest.raises(SignatureInvalid, match="signer not trusted"):
        verify_content(signed, [tpki.portal.certificate])


def test_expired_signer_fails(tpki: Pki) -> None:
    signed = sign_content(make_content(), tpki.portal)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=800)
    with pytest.raises(SignatureInvalid, match="not valid at"):
        verify_content(signed, [tpki.ca], at=later)


def test_missing_signature_fails(tpki: Pki) -> None:
    with pytest.raises(SignatureInvalid, match="content is not signed"):
        verify_content(make_content(), [tpki.ca])
    with pytest.raises(SignatureInvalid, match="content is not signed"):
        verify_content(Content(ContentPart(b"<a/>", "text/xml")), [tpki.ca])


def test_signature_not_last_fails(tpki: Pki) -> None:
    signed = sign_content(make_content(), tpki.portal)
    moved = Content(signed.message, (signed.attachments[-1], *signed.attachments[:-1]))
    with pytest.raises(SignatureInvalid, match="content is not signed"):
        verify_content(moved, [tpki.ca])


def test_signature_with_doctype_rejected(tpki: Pki) -> None:
    signed = sign_content(make_content(), tpki.portal)
    last = signed.attachments[-1]
    doctype = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    data = doctype + etree.tostring(sig_root(signed))
    evil = ContentPart(data, last.content_type, last.filename, last.description)
    bad = Content(signed.message, (*signed.attachments[:-1], evil))
    with pytest.raises(SignatureInvalid, match="DOCTYPE not allowed"):
        verify_content(bad, [tpki.ca])


@pytest.mark.parametrize(
    ("where", "uri"),
    [
        ("digest", "http://www.w3.org/2000/09/xmldsig#sha1"),
        ("method", "http://www.w3.org/2000/09/xmldsig#rsa-sha1"),
        ("method", "http://www.w3.org/2000/09/xmldsig#hmac-sha1"),
        ("c14n", "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"),
        ("digest", "urn:unknown:digest"),
    ],
)
def test_weak_or_unknown_algorithms_refused(tpki: Pki, where: str, uri: str) -> None:
    def set_algorithm(si: etree._Element) -> None:
        target = {
            "digest": f"{DS}Reference/{DS}DigestMethod",
            "method": f"{DS}SignatureMethod",
            "c14n": f"{DS}CanonicalizationMethod",
        }[where]
        si.find(target).set("Algorithm", uri)

    signed = resign_portal(tpki, set_algorithm)
    with pytest.raises(UnsupportedAlgorithm) as info:
        verify_content(signed, [tpki.ca])
    assert uri in str(info.value)


def _ec_identity(tpki: Pki) -> SigningIdentity:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ec-signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(tpki.ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(load_private_key(tpki.paths["ca"][0]), hashes.SHA256())
    )
    return SigningIdentity(private_key=key, certificate=cert)


def test_ecdsa_round_trip(tpki: Pki) -> None:
    identity = _ec_identity(tpki)
    signed = sign_content(make_content(), identity)
    method = sig_root(signed).find(f"{DS}SignedInfo/{DS}SignatureMethod").get("Algorithm")
    assert method == "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
    assert verify_content(signed, [tpki.ca]).signer == identity.certificate
