"""XML Encryption 1.1 for the reader: AES-256-GCM content, RSA-OAEP (SHA-256, MGF1-SHA-256) key.

Produces the shape the OSCI reference library emits: ``xenc:EncryptedData`` with the content key
in ``ds:KeyInfo/xenc:EncryptedKey`` (recipient certificate in its own ``ds:KeyInfo``) and
``CipherValue = base64(IV(12) || ciphertext || tag(16))`` as XML-Enc 1.1 specifies for GCM.

Decryption refuses deprecated algorithms (CBC modes, 3DES, RSA PKCS#1 v1.5, SHA-1 in OAEP) with
``UnsupportedAlgorithm`` naming the URI. ``allow_legacy=True`` lets AES-CBC and SHA-1 OAEP
through for old senders; RSA PKCS#1 v1.5 (padding oracle) and 3DES stay refused. Every failure
to decrypt is a ``DecryptionFailed`` without details about the plaintext.
"""

from __future__ import annotations

import binascii
import functools
import os
import re

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from lxml import etree

from hub.errors import DecryptionFailed, UnsupportedAlgorithm

__all__ = [
    "AES128_GCM",
    "AES256_CBC",
    "AES256_GCM",
    "DS_NS",
    "MGF1_SHA256",
    "RSA_1_5",
    "RSA_OAEP",
    "RSA_OAEP_MGF1P",
    "SHA256",
    "TRIPLEDES_CBC",
    "TYPE_CONTENT",
    "TYPE_ELEMENT",
    "XENC11_NS",
    "XENC_NS",
    "content_algorithm",
    "content_key_length",
    "decrypt_octets",
    "decrypt_xml",
    "encrypt_xml",
    "unwrap_content_key",
]

XENC_NS = "http://www.w3.org/2001/04/xmlenc#"
XENC11_NS = "http://www.w3.org/2009/xmlenc11#"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"

TYPE_ELEMENT = XENC_NS + "Element"
TYPE_CONTENT = XENC_NS + "Content"

AES128_GCM = XENC11_NS + "aes128-gcm"
AES192_GCM = XENC11_NS + "aes192-gcm"
AES256_GCM = XENC11_NS + "aes256-gcm"
AES128_CBC = XENC_NS + "aes128-cbc"
AES192_CBC = XENC_NS + "aes192-cbc"
AES256_CBC = XENC_NS + "aes256-cbc"
TRIPLEDES_CBC = XENC_NS + "tripledes-cbc"

RSA_OAEP = XENC11_NS + "rsa-oaep"
RSA_OAEP_MGF1P = XENC_NS + "rsa-oaep-mgf1p"
RSA_1_5 = XENC_NS + "rsa-1_5"

SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
SHA256 = XENC_NS + "sha256"
SHA384 = "http://www.w3.org/2001/04/xmldsig-more#sha384"
SHA512 = XENC_NS + "sha512"
MGF1_SHA1 = XENC11_NS + "mgf1sha1"
MGF1_SHA256 = XENC11_NS + "mgf1sha256"

_GCM_IV = 12
_GCM_TAG = 16
_KEY_BYTES = {AES128_GCM: 16, AES192_GCM: 24, AES256_GCM: 32}
_LEGACY_CBC_KEY_BYTES = {AES128_CBC: 16, AES192_CBC: 24, AES256_CBC: 32}
_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    SHA256: hashes.SHA256,
    SHA384: hashes.SHA384,
    SHA512: hashes.SHA512,
}
_MGFS: dict[str, type[hashes.HashAlgorithm]] = {
    MGF1_SHA256: hashes.SHA256,
    XENC11_NS + "mgf1sha384": hashes.SHA384,
    XENC11_NS + "mgf1sha512": hashes.SHA512,
}
_ALWAYS_REFUSED = frozenset({RSA_1_5, TRIPLEDES_CBC})


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


# -------------------------------------------------------------------------------- encrypt


@functools.lru_cache(maxsize=64)
def recipient_x509(cert: x509.Certificate) -> tuple[str, str, str]:
    """(issuer name RFC 4514, serial number, DER in base64) of a recipient certificate, computed once
    per certificate: a reader receives many applications under the same one."""
    return cert.issuer.rfc4514_string(), str(cert.serial_number), _b64(cert.public_bytes(serialization.Encoding.DER))


def _x509_data(parent: etree._Element, cert: x509.Certificate) -> None:
    issuer, serial_number, der_b64 = recipient_x509(cert)
    data = etree.SubElement(parent, _q(DS_NS, "X509Data"))
    serial = etree.SubElement(data, _q(DS_NS, "X509IssuerSerial"))
    etree.SubElement(serial, _q(DS_NS, "X509IssuerName")).text = issuer
    etree.SubElement(serial, _q(DS_NS, "X509SerialNumber")).text = serial_number
    etree.SubElement(data, _q(DS_NS, "X509Certificate")).text = der_b64


_XML_DECL = re.compile(rb"^(?:\xef\xbb\xbf)?<\?xml\s[^>]*\?>[ \t\r\n]*")
_DECL_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def _element_octets(plaintext: bytes) -> bytes:
    """Type=Element plaintext is the element itself: drop a leading UTF-8 XML declaration.

    Decrypters replace the EncryptedData node with the plaintext; a declaration in the middle of
    a document is not well-formed (xmlsec1 fails with "XML declaration allowed only at the start").
    """
    match = _XML_DECL.match(plaintext)
    if not match:
        return plaintext
    encoding = _DECL_ENCODING.search(match.group(0))
    if encoding and encoding.group(1).lower() not in (b"utf-8", b"utf8"):
        return plaintext  # not ours to re-encode; callers serialise as UTF-8
    return plaintext[match.end():]


def encrypt_xml(
    plaintext: bytes, recipient: x509.Certificate, *, type_uri: str | None = TYPE_ELEMENT
) -> etree._Element:
    """Encrypt ``plaintext`` (a serialized element by default) for the recipient certificate.

    With ``Type=Element`` a leading UTF-8 XML declaration is not encrypted (see ``_element_octets``).
    """
    if type_uri == TYPE_ELEMENT:
        plaintext = _element_octets(plaintext)
    public_key = recipient.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise UnsupportedAlgorithm(
            f"recipient key type {type(public_key).__name__} not supported (RSA-OAEP needs RSA)"
        )
    key = AESGCM.generate_key(bit_length=256)
    iv = os.urandom(_GCM_IV)
    sealed = AESGCM(key).encrypt(iv, plaintext, None)  # ciphertext || tag
    wrapped = public_key.encrypt(
        key,
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    )

    nsmap = {"xenc": XENC_NS, "ds": DS_NS, "xenc11": XENC11_NS}
    enc = etree.Element(_q(XENC_NS, "EncryptedData"), nsmap=nsmap)
    if type_uri:
        enc.set("Type", type_uri)
    etree.SubElement(enc, _q(XENC_NS, "EncryptionMethod"), Algorithm=AES256_GCM)
    key_info = etree.SubElement(enc, _q(DS_NS, "KeyInfo"))
    enc_key = etree.SubElement(key_info, _q(XENC_NS, "EncryptedKey"))
    method = etree.SubElement(enc_key, _q(XENC_NS, "EncryptionMethod"), Algorithm=RSA_OAEP)
    # Order as in the XML-Enc 1.1 example and the OSCI reference library: MGF, then DigestMethod.
    etree.SubElement(method, _q(XENC11_NS, "MGF"), Algorithm=MGF1_SHA256)
    etree.SubElement(method, _q(DS_NS, "DigestMethod"), Algorithm=SHA256)
    _x509_data(etree.SubElement(enc_key, _q(DS_NS, "KeyInfo")), recipient)
    key_cipher = etree.SubElement(enc_key, _q(XENC_NS, "CipherData"))
    etree.SubElement(key_cipher, _q(XENC_NS, "CipherValue")).text = _b64(wrapped)
    cipher_data = etree.SubElement(enc, _q(XENC_NS, "CipherData"))
    # ASCII bytes go into lxml without a str round trip (matters for ~55 MB of base64);
    # lxml takes bytes for .text, lxml-stubs 0.5.1 declare str only.
    etree.SubElement(cipher_data, _q(XENC_NS, "CipherValue")).text = binascii.b2a_base64(  # type: ignore[assignment]
        iv + sealed, newline=False
    )
    return enc


# -------------------------------------------------------------------------------- decrypt


def _child(parent: etree._Element, ns: str, name: str) -> etree._Element | None:
    return parent.find(_q(ns, name))


def _algorithm(method: etree._Element | None, where: str) -> str:
    uri = method.get("Algorithm") if method is not None else None
    if not uri:
        raise DecryptionFailed(f"{where} has no EncryptionMethod")
    return uri


def _content_algorithm(enc: etree._Element, allow_legacy: bool) -> str:
    uri = _algorithm(_child(enc, XENC_NS, "EncryptionMethod"), "EncryptedData")
    if uri in _KEY_BYTES:
        return uri
    if uri in _LEGACY_CBC_KEY_BYTES and allow_legacy:
        return uri
    if uri in _LEGACY_CBC_KEY_BYTES or uri in _ALWAYS_REFUSED:
        raise UnsupportedAlgorithm(f"content encryption {uri} refused (deprecated)")
    raise UnsupportedAlgorithm(f"content encryption {uri} not supported")


def _oaep_padding(method: etree._Element, allow_legacy: bool) -> padding.OAEP:
    """RSA-OAEP parameters from an EncryptedKey's EncryptionMethod (SHA-1 only if legacy)."""
    uri = _algorithm(method, "EncryptedKey")
    if uri in _ALWAYS_REFUSED:
        raise UnsupportedAlgorithm(f"key transport {uri} refused (deprecated)")
    if uri == RSA_OAEP_MGF1P and not allow_legacy:
        raise UnsupportedAlgorithm(f"key transport {uri} refused (deprecated)")
    if uri not in (RSA_OAEP, RSA_OAEP_MGF1P):
        raise UnsupportedAlgorithm(f"key transport {uri} not supported")
    digest_el = _child(method, DS_NS, "DigestMethod")
    digest_uri = digest_el.get("Algorithm", SHA1) if digest_el is not None else SHA1
    mgf_el = _child(method, XENC11_NS, "MGF")
    mgf_uri = MGF1_SHA1 if uri == RSA_OAEP_MGF1P else (
        mgf_el.get("Algorithm", MGF1_SHA1) if mgf_el is not None else MGF1_SHA1
    )
    legacy = {SHA1: hashes.SHA1, MGF1_SHA1: hashes.SHA1} if allow_legacy else {}
    digest = _DIGESTS.get(digest_uri) or legacy.get(digest_uri)
    mgf = _MGFS.get(mgf_uri) or legacy.get(mgf_uri)
    if digest is None:
        raise _oaep_refused("digest", digest_uri)
    if mgf is None:
        raise _oaep_refused("MGF", mgf_uri)
    params = _child(method, XENC_NS, "OAEPparams")
    label = _b64decode(params.text) if params is not None else None
    return padding.OAEP(mgf=padding.MGF1(mgf()), algorithm=digest(), label=label or None)


def _oaep_refused(name: str, value: str) -> UnsupportedAlgorithm:
    verdict = "refused (deprecated)" if value in (SHA1, MGF1_SHA1) else "not supported"
    return UnsupportedAlgorithm(f"RSA-OAEP {name} {value} {verdict}")


def _b64decode(text: str | None) -> bytes:
    try:
        return binascii.a2b_base64(text or "")  # skips whitespace and line breaks
    except (binascii.Error, ValueError):
        raise DecryptionFailed("CipherValue is not valid base64") from None


def _cipher_value(parent: etree._Element, where: str) -> bytes:
    cipher_data = _child(parent, XENC_NS, "CipherData")
    value = _child(cipher_data, XENC_NS, "CipherValue") if cipher_data is not None else None
    if value is None:
        raise DecryptionFailed(f"{where} has no CipherValue (CipherReference is unsupported)")
    return _b64decode(value.text)


def _addressed_to(enc_key: etree._Element, key: rsa.RSAPrivateKey) -> bool | None:
    """True/False when the EncryptedKey names a certificate, None when it does not say."""
    path = "/".join(_q(DS_NS, n) for n in ("KeyInfo", "X509Data", "X509Certificate"))
    cert_el = enc_key.find(path)
    if cert_el is None:
        return None
    try:
        cert = x509.load_der_x509_certificate(_b64decode(cert_el.text))
    except (ValueError, DecryptionFailed):
        return None
    public = cert.public_key()
    return isinstance(public, rsa.RSAPublicKey) and (
        public.public_numbers() == key.public_key().public_numbers()
    )


def _unwrap_key(
    enc: etree._Element, key: rsa.RSAPrivateKey, key_len: int, allow_legacy: bool
) -> bytes:
    key_info = _child(enc, DS_NS, "KeyInfo")
    candidates = key_info.findall(_q(XENC_NS, "EncryptedKey")) if key_info is not None else []
    if not candidates:
        raise DecryptionFailed("no EncryptedKey in EncryptedData/KeyInfo")
    addressed = [(c, _addressed_to(c, key)) for c in candidates]
    ordered = [c for c, a in addressed if a] + [c for c, a in addressed if a is None]
    if not ordered:
        raise DecryptionFailed("content is not encrypted for this key")
    for enc_key in ordered:
        method = _child(enc_key, XENC_NS, "EncryptionMethod")
        if method is None:
            raise DecryptionFailed("EncryptedKey has no EncryptionMethod")
        oaep = _oaep_padding(method, allow_legacy)
        try:
            content_key = key.decrypt(_cipher_value(enc_key, "EncryptedKey"), oaep)
        except ValueError:
            continue
        if len(content_key) == key_len:
            return content_key
    raise DecryptionFailed("cannot unwrap the content key (wrong key or tampered EncryptedKey)")


def _decrypt_cbc(content_key: bytes, raw: bytes | memoryview) -> bytes:
    """Legacy AES-CBC with XML-Enc padding (last byte = pad length, other pad bytes arbitrary)."""
    if len(raw) < 32 or len(raw) % 16:
        raise DecryptionFailed("ciphertext length invalid")
    decryptor = Cipher(algorithms.AES(content_key), modes.CBC(raw[:16])).decryptor()
    padded = decryptor.update(raw[16:]) + decryptor.finalize()
    pad = padded[-1]
    if not 1 <= pad <= 16:
        raise DecryptionFailed("decryption failed (wrong key or tampered ciphertext)")
    return padded[:-pad]


def content_key_length(algorithm: str) -> int:
    """Key length in bytes of a content-encryption URI accepted by ``content_algorithm``."""
    return _KEY_BYTES.get(algorithm) or _LEGACY_CBC_KEY_BYTES[algorithm]


def content_algorithm(encrypted: etree._Element, *, allow_legacy: bool = False) -> str:
    """The content-encryption URI of an ``xenc:EncryptedData``, refusing deprecated ones."""
    return _content_algorithm(encrypted, allow_legacy)


def unwrap_content_key(
    encrypted: etree._Element, private_key: object, *, allow_legacy: bool = False
) -> bytes:
    """The content key from ``EncryptedData/KeyInfo/EncryptedKey`` for the reader's RSA key
    (any other key is refused here, so callers may pass what a key file held)."""
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise UnsupportedAlgorithm(
            f"private key type {type(private_key).__name__} not supported (RSA-OAEP needs RSA)"
        )
    key_len = content_key_length(_content_algorithm(encrypted, allow_legacy))
    return _unwrap_key(encrypted, private_key, key_len, allow_legacy)


def decrypt_octets(algorithm: str, content_key: bytes, raw: bytes | memoryview) -> bytes:
    """Decrypt ``raw`` (IV || ciphertext [|| tag]) with the content key; any failure is generic."""
    if algorithm in _LEGACY_CBC_KEY_BYTES:
        return _decrypt_cbc(content_key, raw)
    if len(raw) < _GCM_IV + _GCM_TAG:
        raise DecryptionFailed("ciphertext shorter than IV and tag")
    view = memoryview(raw)
    try:
        return AESGCM(content_key).decrypt(view[:_GCM_IV], view[_GCM_IV:], None)
    except (InvalidTag, ValueError):  # never echo anything about the data
        raise DecryptionFailed("decryption failed (wrong key or tampered ciphertext)") from None


def decrypt_xml(
    encrypted: etree._Element, private_key: rsa.RSAPrivateKey, *, allow_legacy: bool = False
) -> bytes:
    """Decrypt an ``xenc:EncryptedData`` element with the reader's RSA private key."""
    if encrypted.tag != _q(XENC_NS, "EncryptedData"):
        found = etree.QName(encrypted).localname
        raise DecryptionFailed(f"expected xenc:EncryptedData, found {found}")
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise UnsupportedAlgorithm(
            f"private key type {type(private_key).__name__} not supported (RSA-OAEP needs RSA)"
        )
    algorithm = _content_algorithm(encrypted, allow_legacy)
    content_key = _unwrap_key(encrypted, private_key, content_key_length(algorithm), allow_legacy)
    return decrypt_octets(algorithm, content_key, _cipher_value(encrypted, "EncryptedData"))
