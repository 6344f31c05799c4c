"""Detached XML-DSig over the raw octets of every content part.

The parts travel unchanged (byte-identical at the receiver); the signature is one extra, last
attachment holding a ``ds:Signature`` document. Format, fixed so a verifier can be strict:

* one ``ds:Reference`` per part, in content order (message first, then attachments), with
  ``URI="cid:part-<index>"`` (``cid:part-0`` is the message). The index makes the reference
  unambiguous even when attachments share a filename; content type and filename are not signed;
* no ``ds:Transforms``: the digest (SHA-256) is taken over the part's raw bytes;
* ``SignedInfo`` canonicalised with exclusive C14N, signed with RSA PKCS#1 v1.5 + SHA-256
  (ECDSA keys sign with ecdsa-sha256/384/512; verification also accepts RSA-PSS);
* ``ds:KeyInfo/ds:X509Data/ds:X509Certificate`` carries the signer certificate (exactly one).

Verification requires exactly the expected references (no extra, none missing, in order), so
signature wrapping and part reordering fail. SHA-1 and unknown algorithms are refused.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from hub.errors import SignatureInvalid, UnsupportedAlgorithm, XmlRejected
from transport.content import Content, ContentPart
from transport.security.keys import SigningIdentity
from transport.security.xml import XmlLimits, parse_xml, serialize

__all__ = [
    "DS_NS",
    "EXC_C14N",
    "PART_URI_PREFIX",
    "RSA_SHA256",
    "SHA256",
    "SIGNATURE_CONTENT_TYPE",
    "SIGNATURE_DESCRIPTION",
    "SIGNATURE_FILENAME",
    "VerifiedContent",
    "part_uri",
    "sign_content",
    "verify_content",
]

SIGNATURE_FILENAME = "signature.xml"
SIGNATURE_DESCRIPTION = "XML-DSig detached signature"
SIGNATURE_CONTENT_TYPE = "application/xml"
PART_URI_PREFIX = "cid:part-"

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
EXC_C14N_COMMENTS = EXC_C14N + "WithComments"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"

_MORE = "http://www.w3.org/2001/04/xmldsig-more#"
_MORE07 = "http://www.w3.org/2007/05/xmldsig-more#"
_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    SHA256: hashes.SHA256,
    _MORE + "sha384": hashes.SHA384,
    "http://www.w3.org/2001/04/xmlenc#sha512": hashes.SHA512,
}
_HASHLIB = {
    hashes.SHA256: hashlib.sha256,
    hashes.SHA384: hashlib.sha384,
    hashes.SHA512: hashlib.sha512,
}
# URI -> (key family, padding kind, hash)
_SIG_METHODS: dict[str, tuple[str, str, type[hashes.HashAlgorithm]]] = {
    RSA_SHA256: ("rsa", "pkcs1", hashes.SHA256),
    _MORE + "rsa-sha384": ("rsa", "pkcs1", hashes.SHA384),
    _MORE + "rsa-sha512": ("rsa", "pkcs1", hashes.SHA512),
    _MORE07 + "sha256-rsa-MGF1": ("rsa", "pss", hashes.SHA256),
    _MORE07 + "sha384-rsa-MGF1": ("rsa", "pss", hashes.SHA384),
    _MORE07 + "sha512-rsa-MGF1": ("rsa", "pss", hashes.SHA512),
    _MORE + "ecdsa-sha256": ("ec", "", hashes.SHA256),
    _MORE + "ecdsa-sha384": ("ec", "", hashes.SHA384),
    _MORE + "ecdsa-sha512": ("ec", "", hashes.SHA512),
}
_C14N_METHODS = {EXC_C14N: False, EXC_C14N_COMMENTS: True}
_EC_SIGN = {256: _MORE + "ecdsa-sha256", 384: _MORE + "ecdsa-sha384", 521: _MORE + "ecdsa-sha512"}

# A signature document is small: one reference per part plus a certificate.
_SIGNATURE_LIMITS = XmlLimits(
    max_bytes=2 * 1024 * 1024, max_depth=16, max_attribute_length=4096, max_text_length=64 * 1024
)


def _ds(name: str) -> str:
    return f"{{{DS_NS}}}{name}"


def part_uri(index: int) -> str:
    """Reference URI of the part at ``index`` in ``Content.parts`` (0 = the message)."""
    return f"{PART_URI_PREFIX}{index}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class VerifiedContent:
    """Content whose signature verified (signature attachment removed) and who signed it."""

    content: Content
    signer: x509.Certificate


# --------------------------------------------------------------------------------- signing


def _sign_bytes(key: object, method: str, data: bytes) -> bytes:
    algo = _SIG_METHODS[method][2]()
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), algo)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise UnsupportedAlgorithm(f"key type {type(key).__name__} not supported for signing")
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(algo)))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _signature_method_for(key: object) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return RSA_SHA256
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size in _EC_SIGN:
        return _EC_SIGN[key.curve.key_size]
    raise UnsupportedAlgorithm(f"key type {type(key).__name__} not supported for signing")


def sign_content(content: Content, identity: SigningIdentity) -> Content:
    """Return ``content`` plus one last attachment: a detached signature over all its parts."""
    method = _signature_method_for(identity.private_key)
    sig = etree.Element(_ds("Signature"), nsmap={"ds": DS_NS})
    signed_info = etree.SubElement(sig, _ds("SignedInfo"))
    etree.SubElement(signed_info, _ds("CanonicalizationMethod"), Algorithm=EXC_C14N)
    etree.SubElement(signed_info, _ds("SignatureMethod"), Algorithm=method)
    for index, part in enumerate(content.parts):
        ref = etree.SubElement(signed_info, _ds("Reference"), URI=part_uri(index))
        etree.SubElement(ref, _ds("DigestMethod"), Algorithm=SHA256)
        etree.SubElement(ref, _ds("DigestValue")).text = _b64(hashlib.sha256(part.data).digest())
    c14n = etree.tostring(signed_info, method="c14n", exclusive=True, with_comments=False)
    value = _sign_bytes(identity.private_key, method, c14n)
    etree.SubElement(sig, _ds("SignatureValue")).text = _b64(value)
    x509_data = etree.SubElement(etree.SubElement(sig, _ds("KeyInfo")), _ds("X509Data"))
    cert_der = identity.certificate.public_bytes(Encoding.DER)
    etree.SubElement(x509_data, _ds("X509Certificate")).text = _b64(cert_der)
    signature_part = ContentPart(
        data=serialize(sig),
        content_type=SIGNATURE_CONTENT_TYPE,
        filename=SIGNATURE_FILENAME,
        description=SIGNATURE_DESCRIPTION,
    )
    return Content(message=content.message, attachments=(*content.attachments, signature_part))


# ------------------------------------------------------------------------------ verification


def _children(el: etree._Element) -> list[etree._Element]:
    """Element children only (comments and processing instructions are not content here)."""
    return [c for c in el if isinstance(c.tag, str)]


def _expect(el: etree._Element, name: str, where: str) -> None:
    if el.tag != _ds(name):
        raise SignatureInvalid(f"expected ds:{name} in {where}, found {etree.QName(el).localname}")


def _algorithm(el: etree._Element, where: str) -> str:
    uri = el.get("Algorithm")
    if not uri:
        raise SignatureInvalid(f"{where} without Algorithm")
    return uri


def _b64decode(text: str | None, where: str) -> bytes:
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureInvalid(f"{where} is not valid base64") from None


def _canonical_signed_info(signed_info: etree._Element, c14n: etree._Element) -> bytes:
    uri = _algorithm(c14n, "CanonicalizationMethod")
    if uri not in _C14N_METHODS:
        raise UnsupportedAlgorithm(f"canonicalization {uri} not supported")
    prefixes = None
    kids = _children(c14n)
    if kids:
        if len(kids) != 1 or etree.QName(kids[0]).localname != "InclusiveNamespaces":
            raise SignatureInvalid("unexpected content in CanonicalizationMethod")
        prefixes = (kids[0].get("PrefixList") or "").split() or None
    return etree.tostring(
        signed_info,
        method="c14n",
        exclusive=True,
        with_comments=_C14N_METHODS[uri],
        inclusive_ns_prefixes=prefixes,
    )


def _parse_references(
    refs: list[etree._Element], parts: Sequence[ContentPart]
) -> list[tuple[type[hashes.HashAlgorithm], bytes]]:
    """Exactly one untransformed reference per part, in order: (digest algorithm, value)."""
    if len(refs) != len(parts):
        raise SignatureInvalid(f"signature has {len(refs)} references for {len(parts)} parts")
    result = []
    for index, ref in enumerate(refs):
        _expect(ref, "Reference", "SignedInfo")
        uri = ref.get("URI")
        if uri != part_uri(index):
            raise SignatureInvalid(f"reference {index} has URI {uri!r}, expected {part_uri(index)}")
        kids = _children(ref)
        if any(k.tag == _ds("Transforms") for k in kids):
            raise SignatureInvalid(f"reference {index} has transforms (not allowed)")
        if len(kids) != 2:
            raise SignatureInvalid(f"reference {index} is malformed")
        _expect(kids[0], "DigestMethod", f"reference {index}")
        _expect(kids[1], "DigestValue", f"reference {index}")
        digest_uri = _algorithm(kids[0], f"DigestMethod of reference {index}")
        algo = _DIGESTS.get(digest_uri)
        if algo is None:
            raise UnsupportedAlgorithm(f"digest {digest_uri} not supported (reference {index})")
        result.append((algo, _b64decode(kids[1].text, f"DigestValue of reference {index}")))
    return result


def _check_digests(
    expected: list[tuple[type[hashes.HashAlgorithm], bytes]], parts: Sequence[ContentPart]
) -> None:
    for index, ((algo, value), part) in enumerate(zip(expected, parts)):
        if not hmac.compare_digest(value, _HASHLIB[algo](part.data).digest()):
            raise SignatureInvalid(
                f"digest mismatch for reference {index} ({part_uri(index)}, {part.size} bytes)"
            )


def _verify_value(cert: x509.Certificate, method: str, value: bytes, data: bytes) -> None:
    family, kind, algo = _SIG_METHODS[method]
    key = cert.public_key()
    try:
        if family == "rsa" and isinstance(key, rsa.RSAPublicKey):
            pad = (
                padding.PKCS1v15()
                if kind == "pkcs1"
                else padding.PSS(mgf=padding.MGF1(algo()), salt_length=algo.digest_size)
            )
            key.verify(value, data, pad, algo())
        elif family == "ec" and isinstance(key, ec.EllipticCurvePublicKey):
            size = (key.curve.key_size + 7) // 8
            if len(value) != 2 * size:
                raise InvalidSignature
            r, s = int.from_bytes(value[:size], "big"), int.from_bytes(value[size:], "big")
            key.verify(encode_dss_signature(r, s), data, ec.ECDSA(algo()))
        else:
            raise SignatureInvalid(f"signature method {method} does not match the signer key")
    except InvalidSignature:
        raise SignatureInvalid("SignatureValue does not verify") from None


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()[:16]


def _valid_at(cert: x509.Certificate, at: _dt.datetime) -> bool:
    return cert.not_valid_before_utc <= at <= cert.not_valid_after_utc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _check_trust(
    signer: x509.Certificate, trusted: Sequence[x509.Certificate], at: _dt.datetime
) -> None:
    """Signer must be a trusted certificate itself or directly issued by a trusted CA."""
    if not _valid_at(signer, at):
        raise SignatureInvalid(
            f"signer certificate {_fingerprint(signer)} not valid at {at:%Y-%m-%d}"
        )
    try:
        usage = signer.extensions.get_extension_for_class(x509.KeyUsage).value
        if not (usage.digital_signature or usage.content_commitment):
            raise SignatureInvalid(f"signer certificate {_fingerprint(signer)} may not sign")
    except x509.ExtensionNotFound:
        pass
    if any(signer == anchor for anchor in trusted):
        return
    for anchor in trusted:
        if anchor.subject != signer.issuer or not _is_ca(anchor) or not _valid_at(anchor, at):
            continue
        try:
            signer.verify_directly_issued_by(anchor)
            return
        except (InvalidSignature, ValueError, TypeError):
            continue
    raise SignatureInvalid(f"signer not trusted (certificate {_fingerprint(signer)})")


def _signer_certificate(key_info: etree._Element) -> x509.Certificate:
    certs = key_info.findall(f"{_ds('X509Data')}/{_ds('X509Certificate')}")
    if len(certs) != 1:
        raise SignatureInvalid(f"expected exactly one X509Certificate, found {len(certs)}")
    try:
        return x509.load_der_x509_certificate(_b64decode(certs[0].text, "X509Certificate"))
    except ValueError:
        raise SignatureInvalid("X509Certificate is not a valid certificate") from None


def _split_signature(content: Content) -> tuple[ContentPart, tuple[ContentPart, ...]]:
    last = content.attachments[-1] if content.attachments else None
    if (
        last is None
        or last.filename != SIGNATURE_FILENAME
        or last.description != SIGNATURE_DESCRIPTION
    ):
        raise SignatureInvalid("content is not signed")
    return last, content.attachments[:-1]


def verify_content(
    content: Content,
    trusted: Sequence[x509.Certificate],
    *,
    at: _dt.datetime | None = None,
) -> VerifiedContent:
    """Verify the detached signature; return the content without it and the signer certificate.

    ``at`` is the time the signer certificate must be valid at (default: now).
    """
    sig_part, attachments = _split_signature(content)
    unsigned = Content(message=content.message, attachments=attachments)
    try:
        root = parse_xml(sig_part.data, _SIGNATURE_LIMITS)
    except XmlRejected as exc:
        raise SignatureInvalid(f"signature document rejected: {exc}") from None
    if root.tag != _ds("Signature"):
        raise SignatureInvalid(f"signature root is {etree.QName(root).localname}, not ds:Signature")
    kids = _children(root)
    if len(kids) != 3:
        raise SignatureInvalid(f"ds:Signature has {len(kids)} children, expected 3")
    signed_info, value_el, key_info = kids
    _expect(signed_info, "SignedInfo", "Signature")
    _expect(value_el, "SignatureValue", "Signature")
    _expect(key_info, "KeyInfo", "Signature")
    si_kids = _children(signed_info)
    if len(si_kids) < 3:
        raise SignatureInvalid("SignedInfo has no references")
    _expect(si_kids[0], "CanonicalizationMethod", "SignedInfo")
    _expect(si_kids[1], "SignatureMethod", "SignedInfo")
    method = _algorithm(si_kids[1], "SignatureMethod")
    if method not in _SIG_METHODS:
        raise UnsupportedAlgorithm(f"signature method {method} not supported")
    if _children(si_kids[1]):
        raise SignatureInvalid("unexpected parameters in SignatureMethod")
    canonical = _canonical_signed_info(signed_info, si_kids[0])
    digests = _parse_references(si_kids[2:], unsigned.parts)
    signer = _signer_certificate(key_info)
    _check_trust(signer, trusted, at or _dt.datetime.now(_dt.timezone.utc))
    _verify_value(signer, method, _b64decode(value_el.text, "SignatureValue"), canonical)
    _check_digests(digests, unsigned.parts)
    return VerifiedContent(content=unsigned, signer=signer)
