"""End-to-end encrypted content with MTOM: xenc:EncryptedData whose CipherValue is an XOP part.

With encryption on, the whole xta:ContentContainer is inside ``xenc:EncryptedData``; its only large
node is ``CipherData/CipherValue`` (xs:base64Binary), and that is what MTOM optimises: the CipherValue
holds an ``xop:Include`` of a binary MIME part with the raw octets ``IV || ciphertext || tag``. This is
the MTOM-native choice (XOP applies to any base64Binary element, WSS4J's "store bytes in attachment"
does the same); after XOP resolution the message is the ordinary EncryptedData the XSDs describe, so
every XTA/XML-Enc stack reads it. (OSCI 1.2 instead uses ``xenc:CipherReference URI="cid:..."`` in a
SOAP-with-Attachments message; the simulator accepts that form too, the hub does not send it.)

Memory stays bounded: the plaintext ContentContainer is never built. Its serialisation (``Type=Element``
octets, base64 of each part in 768 KiB slices) is generated piecewise and fed to a streaming
AES-256-GCM encryptor whose output goes to a ``SpooledTemporaryFile`` (RAM up to ``spool_threshold``,
then a private temporary file holding only ciphertext; the content key never leaves memory). The key
transport part (RSA-OAEP, MGF1-SHA256, recipient certificate) has the exact shape of
``transport.security.encryption.encrypt_xml``, whose ``decrypt_xml`` decrypts these messages after XOP
resolution (tested).
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any
from xml.sax.saxutils import quoteattr

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from lxml import etree

from hub.errors import DecryptionFailed, ProtocolError, UnsupportedAlgorithm
from transport.content import Content, ContentPart
from transport.security.encryption import (
    AES256_GCM,
    DS_NS,
    MGF1_SHA256,
    RSA_OAEP,
    SHA256,
    TYPE_ELEMENT,
    XENC11_NS,
    XENC_NS,
)
from transport.xta.mtom import Attachments, part_bytes, xop_cid
from transport.xta.ns import XTA

SPOOL_THRESHOLD = 8 * 1024 * 1024
_B64_SLICE = 768 * 1024  # multiple of 3: slices encode without padding in the middle
_GCM_IV = 12
CIPHER_CONTENT_TYPE = "application/octet-stream"


def _q(ns: str, local: str) -> str:
    return f"{{{ns}}}{local}"


def _part_xml(tag: str, part: ContentPart) -> Iterator[bytes]:
    attrs = [("contentType", part.content_type)]
    if part.filename:
        attrs.append(("filename", part.filename))
    if part.size > 0:
        attrs.append(("size", str(part.size)))
    if part.description:
        attrs.append(("contentDescription", part.description))
    rendered = "".join(f" {name}={quoteattr(value)}" for name, value in attrs)
    yield f"<xta:{tag}{rendered}>".encode()
    data = memoryview(part.data)
    for start in range(0, len(data), _B64_SLICE):
        yield base64.b64encode(data[start:start + _B64_SLICE])
    yield f"</xta:{tag}>".encode("ascii")


def container_octets(content: Content) -> Iterator[bytes]:
    """The serialised xta:ContentContainer (no XML declaration: Type=Element), piece by piece."""
    yield f'<xta:ContentContainer xmlns:xta="{XTA}">'.encode("ascii")
    yield from _part_xml("Message", content.message)
    for attachment in content.attachments:
        yield from _part_xml("Attachment", attachment)
    yield b"</xta:ContentContainer>"


def _key_info(enc: etree._Element, recipient: x509.Certificate, wrapped: bytes) -> None:
    key_info = etree.SubElement(enc, _q(DS_NS, "KeyInfo"))
    enc_key = etree.SubElement(key_info, _q(XENC_NS, "EncryptedKey"))
    method = etree.SubElement(enc_key, _q(XENC_NS, "EncryptionMethod"), Algorithm=RSA_OAEP)
    etree.SubElement(method, _q(XENC11_NS, "MGF"), Algorithm=MGF1_SHA256)
    etree.SubElement(method, _q(DS_NS, "DigestMethod"), Algorithm=SHA256)
    data = etree.SubElement(etree.SubElement(enc_key, _q(DS_NS, "KeyInfo")), _q(DS_NS, "X509Data"))
    serial = etree.SubElement(data, _q(DS_NS, "X509IssuerSerial"))
    etree.SubElement(serial, _q(DS_NS, "X509IssuerName")).text = recipient.issuer.rfc4514_string()
    etree.SubElement(serial, _q(DS_NS, "X509SerialNumber")).text = str(recipient.serial_number)
    etree.SubElement(data, _q(DS_NS, "X509Certificate")).text = base64.b64encode(
        recipient.public_bytes(serialization.Encoding.DER)).decode("ascii")
    cipher = etree.SubElement(enc_key, _q(XENC_NS, "CipherData"))
    etree.SubElement(cipher, _q(XENC_NS, "CipherValue")).text = base64.b64encode(wrapped).decode("ascii")


def encrypt_container(content: Content, recipient: x509.Certificate, attachments: Attachments, *,
                      spool_threshold: int = SPOOL_THRESHOLD) -> etree._Element:
    """xenc:EncryptedData (Type=Element) of ``content``'s ContentContainer for ``recipient``; the
    ciphertext is added to ``attachments`` and referenced from CipherValue by ``xop:Include``."""
    public_key = recipient.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise UnsupportedAlgorithm(
            f"recipient key type {type(public_key).__name__} not supported (RSA-OAEP needs RSA)")
    key = os.urandom(32)
    iv = os.urandom(_GCM_IV)
    encryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    # no `with`: on success the spool is handed to ``attachments``, which closes it
    spool: Any = tempfile.SpooledTemporaryFile(max_size=spool_threshold, prefix="xta-cipher-")  # noqa: SIM115
    try:
        spool.write(iv)
        for chunk in container_octets(content):
            spool.write(encryptor.update(chunk))
        spool.write(encryptor.finalize())
        spool.write(encryptor.tag)
        length = spool.tell()
        wrapped = public_key.encrypt(
            key, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    except BaseException:
        spool.close()
        raise
    enc = etree.Element(_q(XENC_NS, "EncryptedData"), nsmap={"xenc": XENC_NS, "ds": DS_NS, "xenc11": XENC11_NS})
    enc.set("Type", TYPE_ELEMENT)
    etree.SubElement(enc, _q(XENC_NS, "EncryptionMethod"), Algorithm=AES256_GCM)
    _key_info(enc, recipient, wrapped)
    value = etree.SubElement(etree.SubElement(enc, _q(XENC_NS, "CipherData")), _q(XENC_NS, "CipherValue"))
    attachments.include(value, stream=spool, length=length, content_type=CIPHER_CONTENT_TYPE)
    return enc


# ---------------------------------------------------------------------- receiving side


def cipher_octets(encrypted: etree._Element, parts: Mapping[str, memoryview] | None) -> memoryview | None:
    """The raw ``IV || ciphertext || tag`` of an EncryptedData whose CipherValue is an ``xop:Include``
    (or whose CipherReference points at a ``cid:`` part); None when the CipherValue is inline base64."""
    cipher_data = encrypted.find(_q(XENC_NS, "CipherData"))
    if cipher_data is None:
        raise ProtocolError("EncryptedData without CipherData")
    value = cipher_data.find(_q(XENC_NS, "CipherValue"))
    if value is not None:
        cid = xop_cid(value)
        if cid is None:
            return None
    else:
        reference = cipher_data.find(_q(XENC_NS, "CipherReference"))
        uri = reference.get("URI", "") if reference is not None else ""
        if not uri.startswith("cid:"):
            raise ProtocolError("EncryptedData CipherReference must point at a cid: MIME part")
        cid = uri[4:]
    if parts is None:
        raise ProtocolError("encrypted content refers to a MIME part outside an MTOM message")
    return part_bytes(parts, cid)


def decrypt_octets_for(encrypted: etree._Element, raw: memoryview, private_key: Any) -> bytes:
    """Decrypt raw cipher octets with the key transported in ``encrypted`` (reader's private key)."""
    from transport.security.encryption import (
        content_algorithm,
        decrypt_octets,
        unwrap_content_key,
    )

    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise DecryptionFailed("reader key is not an RSA key")
    algorithm = content_algorithm(encrypted)
    return decrypt_octets(algorithm, unwrap_content_key(encrypted, private_key), raw)
