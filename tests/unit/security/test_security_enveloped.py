"""Enveloped XML-DSig: round trip, only-what-was-signed, wrapping, tampering, algorithm choice."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from lxml import etree

from hub.errors import HubError, SignatureInvalid, UnsupportedAlgorithm
from transport.content import Content, ContentPart
from transport.security.dsig import ECDSA_SHA256, RSA_PSS_SHA256, RSA_PSS_SHA512
from transport.security.encryption import TYPE_ELEMENT, decrypt_xml, encrypt_xml
from transport.security.signature import (
    DS_NS,
    VerifiedElement,
    sign_content,
    sign_enveloped,
    verify_content,
    verify_enveloped,
)
from transport.security.xml import parse_xml, serialize

if TYPE_CHECKING:  # conftest is not importable at run time
    from conftest import Pki

DS = f"{{{DS_NS}}}"
DOC = (b'<?xml version="1.0" encoding="UTF-8"?>\n<x:antrag xmlns:x="urn:x" xmlns:unused="urn:u">\n'
       b'  <x:name lang="de">M\xc3\xbcller</x:name>\n  <x:betrag>100</x:betrag>\n</x:antrag>')


def c14n(el: etree._Element) -> bytes:
    return etree.tostring(el, method="c14n", exclusive=True)


def signed_bytes(tpki: Pki, **kwargs: object) -> bytes:
    return serialize(sign_enveloped(parse_xml(DOC), tpki.portal, **kwargs))  # type: ignore[arg-type]


def resign(data: bytes, tpki: Pki, mutate: Callable[[etree._Element], None]) -> bytes:
    """Mutate the signature and compute a valid SignatureValue: only the structure is wrong."""
    root = parse_xml(data)
    sig = root.find(f"{DS}Signature")
    mutate(sig)
    signed_info = sig.find(f"{DS}SignedInfo")
    value = tpki.portal.private_key.sign(
        etree.tostring(signed_info, method="c14n", exclusive=True), padding.PKCS1v15(), hashes.SHA256())
    sig.find(f"{DS}SignatureValue").text = base64.b64encode(value).decode()
    return serialize(root)


def test_round_trip_returns_only_what_was_signed(tpki: Pki) -> None:
    original = parse_xml(DOC)
    signed = sign_enveloped(original, tpki.portal)
    assert original.find(f"{DS}Signature") is None  # the caller's tree is untouched
    assert signed[-1].tag == f"{DS}Signature"
    result = verify_enveloped(serialize(signed), [tpki.ca])
    assert isinstance(result, VerifiedElement)
    assert result.signer == tpki.portal.certificate
    assert result.element.find(f"{DS}Signature") is None
    assert c14n(result.element) == c14n(original)
    # also from an element (the document element of a parsed tree)
    assert c14n(verify_enveloped(parse_xml(serialize(signed)), [tpki.ca]).element) == c14n(original)


def test_signature_shape(tpki: Pki) -> None:
    sig = parse_xml(signed_bytes(tpki)).find(f"{DS}Signature")
    [ref] = sig.findall(f"{DS}SignedInfo/{DS}Reference")
    assert ref.get("URI") == ""
    assert [t.get("Algorithm") for t in ref.iter(f"{DS}Transform")] == [
        DS_NS + "enveloped-signature", "http://www.w3.org/2001/10/xml-exc-c14n#"]


@pytest.mark.parametrize("method", [RSA_PSS_SHA256, RSA_PSS_SHA512])
def test_rsa_pss_selectable(tpki: Pki, method: str) -> None:
    data = signed_bytes(tpki, method=method)
    assert parse_xml(data).find(f"{DS}Signature/{DS}SignedInfo/{DS}SignatureMethod").get("Algorithm") == method
    assert verify_enveloped(data, [tpki.ca]).signer == tpki.portal.certificate
    content = Content(ContentPart(DOC, "application/xml"))
    assert verify_content(sign_content(content, tpki.portal, method=method), [tpki.ca]).content == content


def test_method_must_fit_the_key(tpki: Pki) -> None:
    with pytest.raises(UnsupportedAlgorithm, match="does not fit"):
        sign_enveloped(parse_xml(DOC), tpki.portal, method=ECDSA_SHA256)
    with pytest.raises(UnsupportedAlgorithm, match="not supported"):
        sign_enveloped(parse_xml(DOC), tpki.portal, method="http://www.w3.org/2000/09/xmldsig#rsa-sha1")


def test_every_single_byte_change_in_signed_content_is_rejected(tpki: Pki) -> None:
    data = serialize(sign_enveloped(parse_xml(DOC.replace(b' xmlns:unused="urn:u"', b"")), tpki.portal))
    start, end = data.index(b"<x:antrag"), data.index(b"<ds:Signature")
    for pos in range(start, end):
        tampered = bytearray(data)
        tampered[pos] ^= 0x01
        with pytest.raises(HubError):  # SignatureInvalid, or XmlRejected when no longer well-formed
            verify_enveloped(bytes(tampered), [tpki.ca])


def test_every_single_byte_change_in_a_detached_part_is_rejected(tpki: Pki) -> None:
    content = Content(ContentPart(DOC, "application/xml"), (ContentPart(bytes(range(200)), "application/pdf"),))
    signed = sign_content(content, tpki.portal)
    for index, part in enumerate(signed.parts[:-1]):
        for pos in range(part.size):
            data = bytearray(part.data)
            data[pos] ^= 0x80
            parts = list(signed.parts)
            parts[index] = ContentPart(bytes(data), part.content_type)
            with pytest.raises(SignatureInvalid, match=f"digest mismatch for reference {index}"):
                verify_content(Content(parts[0], tuple(parts[1:])), [tpki.ca])


def test_unused_namespace_declarations_are_not_signed_and_not_returned(tpki: Pki) -> None:
    """Exclusive C14N leaves out unused declarations, so they are not part of the result either."""
    data = signed_bytes(tpki).replace(b'xmlns:unused="urn:u"', b'xmlns:unused="urn:evil"')
    assert b"urn:evil" not in etree.tostring(verify_enveloped(data, [tpki.ca]).element)


def test_untrusted_signer(tpki: Pki, rogue_pki: Pki) -> None:
    with pytest.raises(SignatureInvalid, match="signer not trusted"):
        verify_enveloped(signed_bytes(tpki), [rogue_pki.ca])


def test_wrapped_in_a_new_document_element(tpki: Pki) -> None:
    evil = etree.Element("{urn:x}antrag")
    etree.SubElement(evil, "{urn:x}betrag").text = "1000000"
    etree.SubElement(evil, "hidden").append(parse_xml(signed_bytes(tpki)))
    with pytest.raises(SignatureInvalid, match="has 0 ds:Signature children"):
        verify_enveloped(serialize(evil), [tpki.ca])


def test_signed_subtree_is_not_verifiable_on_its_own(tpki: Pki) -> None:
    outer = etree.Element("outer")
    outer.append(parse_xml(signed_bytes(tpki)))
    with pytest.raises(SignatureInvalid, match="on the document element"):
        verify_enveloped(outer[0], [tpki.ca])


def test_second_signature_refused(tpki: Pki) -> None:
    root = parse_xml(signed_bytes(tpki))
    root.append(parse_xml(serialize(root.find(f"{DS}Signature"))))
    with pytest.raises(SignatureInvalid, match="has 2 ds:Signature children"):
        verify_enveloped(serialize(root), [tpki.ca])


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda sig: sig.find(f"{DS}SignedInfo/{DS}Reference").set("URI", "#id"), "reference URI is '#id'"),
    (lambda sig: sig.find(f"{DS}SignedInfo").append(
        parse_xml(serialize(sig.find(f"{DS}SignedInfo/{DS}Reference")))), "has 2 references"),
    (lambda sig: sig.find(f"{DS}SignedInfo/{DS}Reference/{DS}Transforms").remove(
        sig.find(f"{DS}SignedInfo/{DS}Reference/{DS}Transforms")[0]), "transforms .* not allowed"),
    (lambda sig: sig.find(f"{DS}SignedInfo/{DS}Reference/{DS}Transforms")[1].set(
        "Algorithm", "http://www.w3.org/TR/1999/REC-xpath-19991116"), "transforms .* not allowed"),
    (lambda sig: sig.find(f"{DS}SignedInfo/{DS}Reference/{DS}DigestMethod").set(
        "Algorithm", DS_NS + "sha1"), "digest http://www.w3.org/2000/09/xmldsig#sha1 not supported"),
])
def test_structural_changes_refused(tpki: Pki, mutate: Callable[[etree._Element], None], message: str) -> None:
    with pytest.raises((SignatureInvalid, UnsupportedAlgorithm), match=message):
        verify_enveloped(resign(signed_bytes(tpki), tpki, mutate), [tpki.ca])


def test_object_wrapping_refused(tpki: Pki) -> None:
    def add_object(sig: etree._Element) -> None:
        etree.SubElement(sig, f"{DS}Object").append(etree.Element("{urn:x}antrag"))

    with pytest.raises(SignatureInvalid, match="4 children, expected 3"):
        verify_enveloped(resign(signed_bytes(tpki), tpki, add_object), [tpki.ca])


def test_comments_are_not_signed_content(tpki: Pki) -> None:
    data = signed_bytes(tpki).replace(b"<x:betrag>", b"<!-- note --><x:betrag>")
    assert b"note" not in etree.tostring(verify_enveloped(data, [tpki.ca]).element)


# --------------------------------------------------------------- Type=Element plaintext shape


def test_element_plaintext_drops_utf8_xml_declaration(tpki: Pki) -> None:
    enc = encrypt_xml(DOC, tpki.reader.certificate)
    assert enc.get("Type") == TYPE_ELEMENT
    plain = decrypt_xml(enc, tpki.reader.private_key)
    assert plain == DOC[DOC.index(b"<x:antrag"):]
    binary = b'<?xml version="1.0"?>not an element'
    assert decrypt_xml(encrypt_xml(binary, tpki.reader.certificate, type_uri=None),
                       tpki.reader.private_key) == binary
