"""MTOM/XOP packaging and parsing, and end-to-end encryption with the ciphertext as an XOP part."""

from __future__ import annotations

import base64
import io
import tracemalloc
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from xta_testdata import content

from hub.errors import DecryptionFailed, ProtocolError
from transport.content import Content, ContentPart
from transport.security.demopki import make_test_pki
from transport.security.encryption import decrypt_xml
from transport.security.keys import load_certificate, load_private_key
from transport.xta import mtom
from transport.xta.container import build_content_container, parse_content_container
from transport.xta.e2e import (
    cipher_octets,
    container_octets,
    decrypt_octets_for,
    encrypt_container,
)
from transport.xta.ns import XENC, XOP, XTA


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    return make_test_pki(tmp_path_factory.mktemp("pki"), ["reader", "intruder"])


def _roundtrip(envelope: bytes, attachments: mtom.Attachments) -> mtom.MimeMessage:
    content_type, body = mtom.package(envelope, attachments, "http://www.xta.de/XTA/SendMessage")
    data = body.to_bytes()
    assert len(data) == len(body)  # Content-Length known up front is right
    return mtom.parse_multipart(data, content_type)


def test_package_and_parse_roundtrip() -> None:
    attachments = mtom.Attachments()
    first = attachments.add(b"\x00\x01binary\r\n--not-a-boundary\r\n", "application/pdf")
    second = attachments.add_stream(io.BytesIO(b"streamed" * 1000), 8000)
    message = _roundtrip(b"<root/>", attachments)
    assert message.root == b"<root/>"
    assert message.root_content_type.startswith('application/xop+xml; charset=UTF-8; type="application/soap+xml')
    assert bytes(message.parts[first]) == b"\x00\x01binary\r\n--not-a-boundary\r\n"
    assert bytes(message.parts[second]) == b"streamed" * 1000


def test_content_type_header_is_soap12_mtom() -> None:
    content_type, _ = mtom.package(b"<e/>", mtom.Attachments(), "urn:action")
    media, params = mtom._params(content_type)
    assert media == "multipart/related" and params["type"] == "application/xop+xml"
    assert params["start"].startswith("<root.") and params["boundary"].startswith("MIMEBoundary_")
    assert params["start-info"] == 'application/soap+xml; action="urn:action"'


def test_parts_are_not_copied_when_packaged() -> None:
    big = bytes(8 * 1024 * 1024)
    attachments = mtom.Attachments()
    attachments.add(big)
    _, body = mtom.package(b"<e/>", attachments, None)
    tracemalloc.start()
    sent = sum(len(chunk) for chunk in body)  # what requests/urllib3 do: iterate and send
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert sent == len(body)
    assert peak < 256 * 1024  # views of the caller's buffer, not copies


def test_container_with_xop_includes_and_parse_back() -> None:
    sent = content(size=5000, attachments=2)
    attachments = mtom.Attachments()
    container = build_content_container(sent, attachments)
    assert len(attachments) == 3
    message = container.find(f"{{{XTA}}}Message")
    assert message.text is None and message[0].tag == f"{{{XOP}}}Include"
    assert message[0].get("href").startswith("cid:part1.")
    data = etree.tostring(container)
    assert sent.message.data[:20] not in data and base64.b64encode(sent.message.data[:30]) not in data
    parts = {p.cid: p.data for p in attachments}
    assert parse_content_container(etree.fromstring(data), parts) == sent


def test_inline_xop_reconstitutes_base64() -> None:
    sent = content(size=300)
    attachments = mtom.Attachments()
    container = build_content_container(sent, attachments)
    count = mtom.inline_xop(container, {p.cid: p.data for p in attachments})
    assert count == 2
    assert etree.tostring(container) == etree.tostring(build_content_container(sent))


@pytest.mark.parametrize("body, content_type, message", [
    (b"--b\r\nContent-ID: <r>\r\n\r\n<e/>\r\n--b--", "text/xml", "not a multipart"),
    (b"no boundary here", 'multipart/related; boundary="b"', "without its boundary"),
    (b"--b\r\nContent-ID: <r>\r\n\r\n<e/>", 'multipart/related; boundary="b"', "truncated"),
    (b"--b\r\nContent-Transfer-Encoding: x-uue\r\n\r\nxx\r\n--b--", 'multipart/related; boundary="b"', "unsupported"),
])
def test_broken_multipart_is_a_protocol_error(body, content_type, message) -> None:
    with pytest.raises(ProtocolError, match=message):
        mtom.parse_multipart(body, content_type)


def test_base64_transfer_encoded_part_and_missing_reference() -> None:
    body = (b"--b\r\nContent-Type: application/xop+xml\r\nContent-ID: <root>\r\n\r\n<e/>\r\n"
            b"--b\r\nContent-ID: <p1>\r\nContent-Transfer-Encoding: base64\r\n\r\naGFsbG8=\r\n--b--\r\n")
    message = mtom.parse_multipart(body, 'multipart/related; boundary=b; start="<root>"')
    assert bytes(message.parts["p1"]) == b"hallo"
    el = etree.fromstring(f'<x xmlns:xop="{XOP}"><xop:Include href="cid:p2"/></x>')
    with pytest.raises(ProtocolError, match="missing MIME part"):
        mtom.part_bytes(message.parts, mtom.xop_cid(el) or "")
    not_cid = etree.fromstring(f'<x xmlns:xop="{XOP}"><xop:Include href="http://evil/x"/></x>')
    with pytest.raises(ProtocolError, match="cid"):
        mtom.xop_cid(not_cid)


# ---------------------------------------------------------------------- e2e with XOP


def test_container_octets_equal_the_lxml_container() -> None:
    sent = Content(ContentPart(b"<a>\xc3\xa4 & \"</a>", "application/xml", 'an"trag&<>.xml', "Beschreibung"),
                   (ContentPart(b"", "text/plain", "leer.txt"),))
    streamed = b"".join(container_octets(sent))
    assert etree.tostring(etree.fromstring(streamed), method="c14n") == etree.tostring(
        build_content_container(sent), method="c14n")


@pytest.mark.parametrize("spool", [0, 10 * 1024 * 1024])
def test_xop_encrypted_container_decrypts_with_the_security_layer(pki, spool) -> None:
    sent = content(size=200_000, attachments=2)
    attachments = mtom.Attachments()
    encrypted = encrypt_container(sent, load_certificate(pki["reader"][1]), attachments, spool_threshold=spool)
    [part] = list(attachments)
    value = encrypted.find(f"{{{XENC}}}CipherData/{{{XENC}}}CipherValue")
    assert value[0].tag == f"{{{XOP}}}Include" and part.stream is not None
    raw = memoryview(b"".join(bytes(c) for c in part.chunks()))
    parts = {part.cid: raw}
    assert bytes(cipher_octets(encrypted, parts)) == bytes(raw)
    key = load_private_key(pki["reader"][0])
    assert isinstance(key, rsa.RSAPrivateKey)
    plaintext = decrypt_octets_for(encrypted, raw, key)
    assert parse_content_container(etree.fromstring(plaintext)) == sent
    # interop: the security layer's decrypt_xml reads it once the XOP part is inlined
    mtom.inline_xop(encrypted, parts)
    assert parse_content_container(etree.fromstring(decrypt_xml(encrypted, key))) == sent
    attachments.close()


def test_xop_encrypted_container_refuses_wrong_key_and_tampering(pki) -> None:
    attachments = mtom.Attachments()
    encrypted = encrypt_container(content(), load_certificate(pki["reader"][1]), attachments)
    [part] = list(attachments)
    raw = bytearray(b"".join(bytes(c) for c in part.chunks()))
    with pytest.raises(DecryptionFailed):
        decrypt_octets_for(encrypted, memoryview(bytes(raw)), load_private_key(pki["intruder"][0]))
    raw[40] ^= 1
    with pytest.raises(DecryptionFailed):
        decrypt_octets_for(encrypted, memoryview(bytes(raw)), load_private_key(pki["reader"][0]))


def test_cipher_reference_to_a_mime_part_is_accepted(pki) -> None:
    encrypted = etree.fromstring(f'<xenc:EncryptedData xmlns:xenc="{XENC}"><xenc:CipherData>'
                                 f'<xenc:CipherReference URI="cid:c1"/></xenc:CipherData></xenc:EncryptedData>')
    assert bytes(cipher_octets(encrypted, {"c1": memoryview(b"abc")})) == b"abc"
    inline = etree.fromstring(f'<xenc:EncryptedData xmlns:xenc="{XENC}"><xenc:CipherData>'
                              f'<xenc:CipherValue>YWJj</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData>')
    assert cipher_octets(inline, None) is None
