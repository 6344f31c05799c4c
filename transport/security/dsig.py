"""XML-DSig building blocks shared by every signature style the hub speaks.

``signature.py`` (the hub's detached and enveloped signatures) and ``osci12.py`` (verification of
OSCI 1.2 signatures) differ in what a reference may point at; everything else lives here once:
algorithm tables (SHA-1 and unknown URIs refused), signing and verifying ``SignatureValue``,
canonicalising ``SignedInfo``, reading the signer certificate and checking it against the trust
anchors. Errors are ``SignatureInvalid`` / ``UnsupportedAlgorithm``; they name elements and
algorithms, never content.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import functools
import hashlib
from collections.abc import Sequence

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

from hub.errors import SignatureInvalid, UnsupportedAlgorithm

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
EXC_C14N_COMMENTS = EXC_C14N + "WithComments"
EXCLUSIVE_ONLY = frozenset({EXC_C14N, EXC_C14N_COMMENTS})
C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
C14N_COMMENTS = C14N + "#WithComments"
ENVELOPED = DS_NS + "enveloped-signature"
BASE64 = DS_NS + "base64"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA384 = "http://www.w3.org/2001/04/xmldsig-more#sha384"
SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"

_MORE = "http://www.w3.org/2001/04/xmldsig-more#"
_MORE07 = "http://www.w3.org/2007/05/xmldsig-more#"
RSA_SHA256 = _MORE + "rsa-sha256"
RSA_SHA384 = _MORE + "rsa-sha384"
RSA_SHA512 = _MORE + "rsa-sha512"
RSA_PSS_SHA256 = _MORE07 + "sha256-rsa-MGF1"
RSA_PSS_SHA384 = _MORE07 + "sha384-rsa-MGF1"
RSA_PSS_SHA512 = _MORE07 + "sha512-rsa-MGF1"
ECDSA_SHA256 = _MORE + "ecdsa-sha256"
ECDSA_SHA384 = _MORE + "ecdsa-sha384"
ECDSA_SHA512 = _MORE + "ecdsa-sha512"

DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    SHA256: hashes.SHA256,
    SHA384: hashes.SHA384,
    SHA512: hashes.SHA512,
}
_HASHLIB = {hashes.SHA256: hashlib.sha256, hashes.SHA384: hashlib.sha384, hashes.SHA512: hashlib.sha512}
# URI -> (key family, padding kind, hash)
SIGNATURE_METHODS: dict[str, tuple[str, str, type[hashes.HashAlgorithm]]] = {
    RSA_SHA256: ("rsa", "pkcs1", hashes.SHA256),
    RSA_SHA384: ("rsa", "pkcs1", hashes.SHA384),
    RSA_SHA512: ("rsa", "pkcs1", hashes.SHA512),
    RSA_PSS_SHA256: ("rsa", "pss", hashes.SHA256),
    RSA_PSS_SHA384: ("rsa", "pss", hashes.SHA384),
    RSA_PSS_SHA512: ("rsa", "pss", hashes.SHA512),
    ECDSA_SHA256: ("ec", "", hashes.SHA256),
    ECDSA_SHA384: ("ec", "", hashes.SHA384),
    ECDSA_SHA512: ("ec", "", hashes.SHA512),
}
# canonicalization URI -> (exclusive, with comments)
C14N_METHODS: dict[str, tuple[bool, bool]] = {
    EXC_C14N: (True, False),
    EXC_C14N_COMMENTS: (True, True),
    C14N: (False, False),
    C14N_COMMENTS: (False, True),
}
_EC_DEFAULT = {256: ECDSA_SHA256, 384: ECDSA_SHA384, 521: ECDSA_SHA512}


def ds(name: str) -> str:
    return f"{{{DS_NS}}}{name}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str | None, where: str) -> bytes:
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureInvalid(f"{where} is not valid base64") from None


def children(el: etree._Element) -> list[etree._Element]:
    """Element children only (comments and processing instructions are not content here)."""
    return [c for c in el if isinstance(c.tag, str)]


def expect(el: etree._Element, name: str, where: str) -> None:
    if el.tag != ds(name):
        raise SignatureInvalid(f"expected ds:{name} in {where}, found {etree.QName(el).localname}")


def algorithm(el: etree._Element, where: str) -> str:
    uri = el.get("Algorithm")
    if not uri:
        raise SignatureInvalid(f"{where} without Algorithm")
    return uri


def digest(uri: str, data: bytes | memoryview, where: str) -> bytes:
    algo = DIGESTS.get(uri)
    if algo is None:
        raise UnsupportedAlgorithm(f"digest {uri} not supported ({where})")
    return _HASHLIB[algo](data).digest()


def canonicalize(el: etree._Element, uri: str, prefixes: Sequence[str] | None = None) -> bytes:
    """C14N octets of ``el`` (with the namespaces it inherits) by canonicalization URI."""
    if uri not in C14N_METHODS:
        raise UnsupportedAlgorithm(f"canonicalization {uri} not supported")
    exclusive, comments = C14N_METHODS[uri]
    try:
        return etree.tostring(
            el,
            method="c14n",
            exclusive=exclusive,
            with_comments=comments,
            inclusive_ns_prefixes=list(prefixes) if (prefixes and exclusive) else None,
        )
    except etree.C14NError:  # libxml2 refuses e.g. relative namespace URIs
        raise SignatureInvalid(f"cannot canonicalize {etree.QName(el).localname} "
                               "(relative namespace URI?)") from None


def inclusive_prefixes(method_el: etree._Element, where: str) -> list[str] | None:
    """``ec:InclusiveNamespaces/@PrefixList`` of an exclusive C14N method or transform."""
    kids = children(method_el)
    if not kids:
        return None
    if len(kids) != 1 or etree.QName(kids[0]).localname != "InclusiveNamespaces":
        raise SignatureInvalid(f"unexpected content in {where}")
    return (kids[0].get("PrefixList") or "").split() or None


def canonical_signed_info(signed_info: etree._Element, c14n_el: etree._Element,
                          allowed: frozenset[str] | None = None) -> bytes:
    uri = algorithm(c14n_el, "CanonicalizationMethod")
    if uri not in (C14N_METHODS if allowed is None else allowed):
        raise UnsupportedAlgorithm(f"canonicalization {uri} not supported")
    return canonicalize(signed_info, uri, inclusive_prefixes(c14n_el, "CanonicalizationMethod"))


def signed_info_header(
    signed_info: etree._Element, allowed_c14n: frozenset[str] | None = None
) -> tuple[bytes, str, list[etree._Element]]:
    """Canonical SignedInfo, signature method URI and the Reference elements (>= 1).

    ``allowed_c14n`` narrows the canonicalization methods accepted for SignedInfo."""
    kids = children(signed_info)
    if len(kids) < 3:
        raise SignatureInvalid("SignedInfo has no references")
    expect(kids[0], "CanonicalizationMethod", "SignedInfo")
    expect(kids[1], "SignatureMethod", "SignedInfo")
    method = algorithm(kids[1], "SignatureMethod")
    if method not in SIGNATURE_METHODS:
        raise UnsupportedAlgorithm(f"signature method {method} not supported")
    if children(kids[1]):
        raise SignatureInvalid("unexpected parameters in SignatureMethod")
    for ref in kids[2:]:
        expect(ref, "Reference", "SignedInfo")
    return canonical_signed_info(signed_info, kids[0], allowed_c14n), method, kids[2:]


# ----------------------------------------------------------------------- signature values


def default_method(key: object) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return RSA_SHA256
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size in _EC_DEFAULT:
        return _EC_DEFAULT[key.curve.key_size]
    raise UnsupportedAlgorithm(f"key type {type(key).__name__} not supported for signing")


def check_method_for_key(method: str | None, key: object) -> str:
    """The signature method to use: ``method`` if it fits the key, else the key's default."""
    if method is None:
        return default_method(key)
    if method not in SIGNATURE_METHODS:
        raise UnsupportedAlgorithm(f"signature method {method} not supported")
    family = SIGNATURE_METHODS[method][0]
    fits = (family == "rsa" and isinstance(key, rsa.RSAPrivateKey)) or (
        family == "ec" and isinstance(key, ec.EllipticCurvePrivateKey)
    )
    if not fits:
        raise UnsupportedAlgorithm(f"signature method {method} does not fit a {type(key).__name__}")
    return method


def sign_bytes(key: object, method: str, data: bytes) -> bytes:
    _family, kind, algo_cls = SIGNATURE_METHODS[method]
    algo = algo_cls()
    if isinstance(key, rsa.RSAPrivateKey):
        if kind == "pss":
            pss = padding.PSS(mgf=padding.MGF1(algo_cls()), salt_length=algo.digest_size)
            return key.sign(data, pss, algo)
        return key.sign(data, padding.PKCS1v15(), algo)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise UnsupportedAlgorithm(f"key type {type(key).__name__} not supported for signing")
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(algo)))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def verify_value(cert: x509.Certificate, method: str, value: bytes, data: bytes) -> None:
    family, kind, algo = SIGNATURE_METHODS[method]
    key = cert.public_key()
    try:
        if family == "rsa" and isinstance(key, rsa.RSAPublicKey):
            digest = algo()
            pad = (
                padding.PKCS1v15()
                if kind == "pkcs1"
                else padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
            )
            key.verify(value, data, pad, digest)
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


# ----------------------------------------------------------------------------- certificates


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()[:16]


def _valid_at(cert: x509.Certificate, at: _dt.datetime) -> bool:
    return cert.not_valid_before_utc <= at <= cert.not_valid_after_utc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def check_trust(
    signer: x509.Certificate, trusted: Sequence[x509.Certificate], at: _dt.datetime | None = None
) -> None:
    """Signer must be a trusted certificate itself or directly issued by a trusted CA."""
    at = at or _dt.datetime.now(_dt.UTC)
    if not _valid_at(signer, at):
        raise SignatureInvalid(f"signer certificate {fingerprint(signer)} not valid at {at:%Y-%m-%d}")
    try:
        usage = signer.extensions.get_extension_for_class(x509.KeyUsage).value
        if not (usage.digital_signature or usage.content_commitment):
            raise SignatureInvalid(f"signer certificate {fingerprint(signer)} may not sign")
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
    raise SignatureInvalid(f"signer not trusted (certificate {fingerprint(signer)})")


def certificate_in(holder: etree._Element, where: str) -> x509.Certificate:
    """The one ``ds:X509Data/ds:X509Certificate`` below ``holder`` (KeyInfo, a cert holder or
    the ``ds:X509Data`` itself)."""
    path = ds("X509Certificate")
    if holder.tag != ds("X509Data"):
        path = f"{ds('X509Data')}/{path}"
    certs = holder.findall(path)
    if len(certs) != 1:
        raise SignatureInvalid(f"expected exactly one X509Certificate in {where}, found {len(certs)}")
    try:
        return x509.load_der_x509_certificate(b64decode(certs[0].text, "X509Certificate"))
    except ValueError:
        raise SignatureInvalid("X509Certificate is not a valid certificate") from None


@functools.lru_cache(maxsize=64)
def certificate_b64(cert: x509.Certificate) -> str:
    """The certificate's DER in base64, computed once per certificate (a signer signs with the same
    one for every application; a renewed one is another key of the cache)."""
    return b64(cert.public_bytes(Encoding.DER))


def x509_key_info(parent: etree._Element, cert: x509.Certificate) -> None:
    """Append ``ds:KeyInfo/ds:X509Data/ds:X509Certificate`` for ``cert`` to ``parent``."""
    x509_data = etree.SubElement(etree.SubElement(parent, ds("KeyInfo")), ds("X509Data"))
    etree.SubElement(x509_data, ds("X509Certificate")).text = certificate_b64(cert)


def signature_parts(signature: etree._Element) -> tuple[etree._Element, etree._Element, etree._Element]:
    """SignedInfo, SignatureValue, KeyInfo of a ds:Signature that has exactly these three children
    (no ds:Object: nothing unsigned may ride along)."""
    kids = children(signature)
    if len(kids) != 3:
        raise SignatureInvalid(f"ds:Signature has {len(kids)} children, expected 3")
    signed_info, value_el, key_info = kids
    expect(signed_info, "SignedInfo", "Signature")
    expect(value_el, "SignatureValue", "Signature")
    expect(key_info, "KeyInfo", "Signature")
    return signed_info, value_el, key_info
