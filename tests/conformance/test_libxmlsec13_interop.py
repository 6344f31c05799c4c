"""Interoperability with libxmlsec1 1.3 (python-xmlsec, PyPI ``xmlsec`` 1.3.17 bundling 1.3.9).

``test_xmlsec1_interop.py`` covers the Debian xmlsec1 1.2.37 CLI, which lacks the hub's default key
transport. libxmlsec1 1.3 implements it, so this module proves both directions with the hub's
DEFAULT algorithms and default settings (no ``allow_legacy``):

* encryption: AES-256-GCM content (``CipherValue = IV || ciphertext || tag``) with the content key
  wrapped by ``http://www.w3.org/2009/xmlenc11#rsa-oaep`` + ``xenc11:MGF`` mgf1sha256 +
  ``ds:DigestMethod`` sha256. The hub encrypts (Type=Element, Type=Content, binary) and libxmlsec
  decrypts with the reader's PEM key; libxmlsec encrypts and the hub decrypts.
  python-xmlsec has no ``Transform`` constant for xmlenc11#rsa-oaep (``Transform.RSA_OAEP`` is
  ``xmlenc#rsa-oaep-mgf1p``), but libxmlsec 1.3 looks transforms up by the ``Algorithm`` href of
  the template: an ``EncryptedKey/EncryptionMethod`` naming xmlenc11#rsa-oaep with ``xenc11:MGF``
  and ``ds:DigestMethod`` children (written by hand, or the template API's node with its
  Algorithm rewritten) makes ``EncryptionContext.encrypt_xml/encrypt_binary`` wrap with
  OAEP(SHA-256, MGF1-SHA-256). That the parameters are really honoured is checked independently:
  the wrapped key opens with OAEP-SHA256 and not with OAEP-SHA1.
* enveloped signatures (RSA-SHA256, exclusive C14N; RSA-PSS-SHA256 too, which 1.2.37 lacks):
  hub-signed documents verify in libxmlsec with the signer certificate's key and, alternatively,
  through a KeysManager that trusts only the test CA (libxmlsec checks the KeyInfo certificate's
  chain); libxmlsec-signed documents verify in the hub against the CA or the signer certificate.
* detached signatures over raw part bytes (``cid:part-<n>``): python-xmlsec resolves external
  URIs through ``xmlsec.register_callbacks`` (global libxml2-style IO callbacks). The default
  callbacks claim every URI first (the file callback then fails on ``cid:``), so the fixture
  removes them with ``cleanup_callbacks()`` while the test runs and restores them afterwards.
* tampering (a ciphertext byte, a signed byte) fails in libxmlsec and in the hub.

One binding limitation (python-xmlsec, not libxmlsec or the hub): ``EncryptionContext.encrypt_xml``
with ``Type=Content`` crashes (AssertionError "Unknown node type: 3", or a segfault) when the
node's content has text children, because it hands the replaced text nodes to lxml's element
factory (python-xmlsec issues #83/#265). libxmlsec-side content encryption is therefore proven
with element-only content; mixed content is covered in the other direction (hub encrypts,
libxmlsec decrypts).

Apart from that, no gap remains for these algorithms.
"""

from __future__ import annotations

import binascii
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from lxml import etree

from hub.errors import DecryptionFailed, SignatureInvalid
from transport.content import Content, ContentPart
from transport.security.dsig import RSA_PSS_SHA256, RSA_SHA256
from transport.security.encryption import (
    AES256_GCM,
    DS_NS,
    MGF1_SHA256,
    RSA_OAEP,
    SHA256,
    TYPE_CONTENT,
    TYPE_ELEMENT,
    XENC11_NS,
    XENC_NS,
    decrypt_xml,
    encrypt_xml,
)
from transport.security.keys import (
    SigningIdentity,
    load_certificate,
    load_signing_identity,
)
from transport.security.signature import (
    sign_content,
    sign_enveloped,
    verify_content,
    verify_enveloped,
)
from transport.security.xml import parse_xml, serialize

APPLICATION = (b'<?xml version="1.0" encoding="UTF-8"?>\n<xau:antrag xmlns:xau="http://www.osci.de/xauslaender2611">'
               b'\n  <name>M\xc3\xbcller &amp; S\xc3\xb6hne</name>\n  <daten>' + b"x" * 5000 + b"</daten>\n</xau:antrag>\n")
CONTENT = 'vorher <name>Müller &amp; Söhne</name> nachher<leer/>'.encode()
CONTENT_ELEMENTS = '<name>Müller &amp; Söhne</name><leer/>'.encode()
ATTACHMENT = bytes(range(256)) * 40
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"


@dataclass(frozen=True)
class Party:
    key: Path
    cert: Path
    identity: SigningIdentity


@dataclass(frozen=True)
class Env:
    ca: Path
    ca_cert: x509.Certificate
    portal: Party
    reader: Party
    mallory: Party


@pytest.fixture(scope="module")
def env(pki: dict[str, tuple[Path, Path]]) -> Env:
    def party(name: str) -> Party:
        return Party(*pki[name], load_signing_identity(*pki[name]))

    return Env(pki["ca"][1], load_certificate(pki["ca"][1]), party("portal"), party("azr-000100"),
               party("mallory"))


def c14n(data: bytes | etree._Element) -> bytes:
    element = parse_xml(data) if isinstance(data, bytes) else data
    return etree.tostring(element, method="c14n")


def test_python_xmlsec_bundles_libxmlsec_1_3() -> None:
    """The premise of this module (1.2.x would fail the xmlenc11#rsa-oaep tests by design)."""
    assert xmlsec.get_libxmlsec_version() >= (1, 3, 0)
    # no constant for the xmlenc11 key transport: templates name it by href (see module docstring)
    assert xmlsec.Transform.RSA_OAEP.href == XENC_NS + "rsa-oaep-mgf1p"


# ------------------------------------------------------------------ hub encrypts, libxmlsec decrypts


def reader_keys(env: Env) -> xmlsec.KeysManager:
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_file(str(env.reader.key), xmlsec.KeyFormat.PEM))
    return manager


def assert_hub_default_key_transport(enc: etree._Element) -> None:
    assert enc.find(f"{{{XENC_NS}}}EncryptionMethod").get("Algorithm") == AES256_GCM
    method = enc.find(f"{{{DS_NS}}}KeyInfo/{{{XENC_NS}}}EncryptedKey/{{{XENC_NS}}}EncryptionMethod")
    assert method.get("Algorithm") == RSA_OAEP
    assert method.find(f"{{{XENC11_NS}}}MGF").get("Algorithm") == MGF1_SHA256
    assert method.find(f"{{{DS_NS}}}DigestMethod").get("Algorithm") == SHA256


def test_hub_element_encryption_decrypts_in_libxmlsec(env: Env) -> None:
    enc = encrypt_xml(APPLICATION, env.reader.identity.certificate)
    assert_hub_default_key_transport(enc)
    envelope = etree.Element("envelope")
    envelope.append(enc)
    plain = xmlsec.EncryptionContext(reader_keys(env)).decrypt(enc)
    assert plain.getparent() is envelope and len(envelope) == 1  # EncryptedData replaced in place
    assert c14n(plain) == c14n(APPLICATION)


def test_hub_content_encryption_decrypts_in_libxmlsec(env: Env) -> None:
    enc = encrypt_xml(CONTENT, env.reader.identity.certificate, type_uri=TYPE_CONTENT)
    envelope = etree.Element("envelope")
    envelope.append(enc)
    xmlsec.EncryptionContext(reader_keys(env)).decrypt(enc)
    assert etree.tostring(envelope, encoding="utf-8") == b"<envelope>" + CONTENT + b"</envelope>"


def test_hub_binary_encryption_decrypts_in_libxmlsec(env: Env) -> None:
    enc = encrypt_xml(ATTACHMENT, env.reader.identity.certificate, type_uri=None)
    assert_hub_default_key_transport(enc)
    assert xmlsec.EncryptionContext(reader_keys(env)).decrypt(enc) == ATTACHMENT


def flip_ciphertext_byte(enc: etree._Element) -> None:
    """Flip one byte of the GCM ciphertext (after the 12-byte IV, before the tag)."""
    value = enc.find(f"{{{XENC_NS}}}CipherData/{{{XENC_NS}}}CipherValue")
    raw = bytearray(binascii.a2b_base64(value.text))
    raw[12 + 100] ^= 0x01
    value.text = binascii.b2a_base64(bytes(raw), newline=False).decode()


def test_libxmlsec_refuses_tampered_hub_ciphertext(env: Env) -> None:
    enc = encrypt_xml(ATTACHMENT, env.reader.identity.certificate, type_uri=None)
    flip_ciphertext_byte(enc)
    with pytest.raises(xmlsec.Error):
        xmlsec.EncryptionContext(reader_keys(env)).decrypt(enc)


# ------------------------------------------------------------------ libxmlsec encrypts, hub decrypts

HAND_TEMPLATE = f"""<xenc:EncryptedData xmlns:xenc="{XENC_NS}" Type="{TYPE_ELEMENT}">
<xenc:EncryptionMethod Algorithm="{AES256_GCM}"/>
<ds:KeyInfo xmlns:ds="{DS_NS}"><xenc:EncryptedKey>
<xenc:EncryptionMethod Algorithm="{RSA_OAEP}"><xenc11:MGF xmlns:xenc11="{XENC11_NS}" Algorithm="{MGF1_SHA256}"/>
<ds:DigestMethod Algorithm="{SHA256}"/></xenc:EncryptionMethod>
<ds:KeyInfo><ds:X509Data><ds:X509Certificate/></ds:X509Data></ds:KeyInfo>
<xenc:CipherData><xenc:CipherValue/></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo>
<xenc:CipherData><xenc:CipherValue/></xenc:CipherData></xenc:EncryptedData>"""


def standalone(template: etree._Element) -> etree._Element:
    """A template built from a detached node as the root of its own parsed document.

    The template API creates an unlinked node in the helper element's document. Used in place,
    libxmlsec signs a SignedInfo that no verifier (libxmlsec included) reproduces from the
    serialized signature, and lxml's ``find`` misses the children the template API added.
    Re-parsing gives libxmlsec an ordinary document, as a real sender would have.
    """
    return etree.fromstring(etree.tostring(template))


def api_template(type_uri: str | None) -> etree._Element:
    """The python-xmlsec template API, with the EncryptedKey's method switched to xmlenc11#rsa-oaep."""
    kwargs = {"type": type_uri} if type_uri else {}
    enc = xmlsec.template.encrypted_data_create(etree.Element("unused"), xmlsec.Transform.AES256_GCM,
                                                ns="xenc", **kwargs)
    xmlsec.template.encrypted_data_ensure_cipher_value(enc)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(enc, ns="ds")
    enc_key = xmlsec.template.add_encrypted_key(key_info, xmlsec.Transform.RSA_OAEP)
    method = enc_key.find(f"{{{XENC_NS}}}EncryptionMethod")
    method.set("Algorithm", RSA_OAEP)  # no Transform constant for it: name it by href
    etree.SubElement(method, f"{{{XENC11_NS}}}MGF", Algorithm=MGF1_SHA256)
    etree.SubElement(method, f"{{{DS_NS}}}DigestMethod", Algorithm=SHA256)
    xmlsec.template.add_x509_data(xmlsec.template.encrypted_data_ensure_key_info(enc_key, ns="ds"))
    xmlsec.template.encrypted_data_ensure_cipher_value(enc_key)
    return standalone(enc)


def encryption_context(env: Env) -> xmlsec.EncryptionContext:
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_file(str(env.reader.cert), xmlsec.KeyFormat.CERT_PEM))
    ctx = xmlsec.EncryptionContext(manager)
    ctx.key = xmlsec.Key.generate(xmlsec.KeyData.AES, 256, xmlsec.KeyDataType.SESSION)
    return ctx


def assert_wrapped_with_oaep_sha256(enc: etree._Element, env: Env) -> None:
    """Independent of the hub: libxmlsec honoured MGF1-SHA256 and SHA-256, not OAEP-SHA1 defaults."""
    assert_hub_default_key_transport(enc)
    enc_key = enc.find(f"{{{DS_NS}}}KeyInfo/{{{XENC_NS}}}EncryptedKey")
    cert = enc_key.find(f"{{{DS_NS}}}KeyInfo/{{{DS_NS}}}X509Data/{{{DS_NS}}}X509Certificate")
    assert x509.load_der_x509_certificate(binascii.a2b_base64(cert.text)) == env.reader.identity.certificate
    wrapped = binascii.a2b_base64(enc_key.find(f"{{{XENC_NS}}}CipherData/{{{XENC_NS}}}CipherValue").text)
    key = env.reader.identity.private_key
    oaep256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    oaep_sha1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    assert len(key.decrypt(wrapped, oaep256)) == 32  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        key.decrypt(wrapped, oaep_sha1)  # type: ignore[union-attr]


@pytest.mark.parametrize("template", ["by-hand", "template-api"])
def test_libxmlsec_element_encryption_decrypts_in_hub(env: Env, template: str) -> None:
    doc = parse_xml(APPLICATION)
    wrapper = etree.Element("envelope")
    wrapper.append(doc)
    tpl = etree.fromstring(HAND_TEMPLATE) if template == "by-hand" else api_template(TYPE_ELEMENT)
    enc = encryption_context(env).encrypt_xml(tpl, doc)
    assert enc.getparent() is wrapper  # libxmlsec replaced the element by the EncryptedData
    assert_wrapped_with_oaep_sha256(enc, env)
    plain = decrypt_xml(enc, env.reader.identity.private_key)  # type: ignore[arg-type]
    assert c14n(plain) == c14n(APPLICATION)


def test_libxmlsec_content_encryption_decrypts_in_hub(env: Env) -> None:
    # element-only content: python-xmlsec's encrypt_xml crashes on text children (module docstring)
    content_xml = CONTENT_ELEMENTS
    holder = etree.fromstring(b"<envelope>" + content_xml + b"</envelope>")
    enc = encryption_context(env).encrypt_xml(api_template(TYPE_CONTENT), holder)
    assert enc.getparent() is holder and len(holder) == 1 and not holder.text
    assert_wrapped_with_oaep_sha256(enc, env)
    plain = decrypt_xml(enc, env.reader.identity.private_key)  # type: ignore[arg-type]
    assert c14n(b"<envelope>" + plain + b"</envelope>") == c14n(b"<envelope>" + content_xml + b"</envelope>")


def test_libxmlsec_binary_encryption_decrypts_in_hub(env: Env) -> None:
    enc = encryption_context(env).encrypt_binary(api_template(None), ATTACHMENT)
    assert enc.get("Type") is None
    assert_wrapped_with_oaep_sha256(enc, env)
    assert decrypt_xml(enc, env.reader.identity.private_key) == ATTACHMENT  # type: ignore[arg-type]


def test_hub_refuses_tampered_libxmlsec_ciphertext(env: Env) -> None:
    enc = encryption_context(env).encrypt_binary(api_template(None), ATTACHMENT)
    flip_ciphertext_byte(enc)
    with pytest.raises(DecryptionFailed, match="tampered ciphertext"):
        decrypt_xml(enc, env.reader.identity.private_key)  # type: ignore[arg-type]


# ---------------------------------------------------------- hub signs (enveloped), libxmlsec verifies


def signature_of(root: etree._Element) -> etree._Element:
    return root.find(f"{{{DS_NS}}}Signature")


def cert_key_context(party: Party) -> xmlsec.SignatureContext:
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_file(str(party.cert), xmlsec.KeyFormat.CERT_PEM)
    return ctx


def trusting_context(anchor: Path) -> xmlsec.SignatureContext:
    """libxmlsec takes the key from KeyInfo's certificate and verifies its chain to ``anchor``."""
    manager = xmlsec.KeysManager()
    manager.load_cert(str(anchor), xmlsec.KeyFormat.CERT_PEM, xmlsec.KeyDataType.TRUSTED)
    return xmlsec.SignatureContext(manager)


@pytest.mark.parametrize("method", [RSA_SHA256, RSA_PSS_SHA256])
def test_hub_enveloped_signature_verifies_in_libxmlsec(env: Env, method: str) -> None:
    data = serialize(sign_enveloped(parse_xml(APPLICATION), env.portal.identity, method=method))
    assert f'Algorithm="{method}"'.encode() in data
    cert_key_context(env.portal).verify(signature_of(etree.fromstring(data)))
    trusting_context(env.ca).verify(signature_of(etree.fromstring(data)))


def test_libxmlsec_refuses_tampered_or_untrusted_hub_signature(env: Env) -> None:
    data = serialize(sign_enveloped(parse_xml(APPLICATION), env.portal.identity))
    tampered = etree.fromstring(data.replace("Söhne".encode(), b"Sohne"))
    with pytest.raises(xmlsec.VerificationError):
        cert_key_context(env.portal).verify(signature_of(tampered))
    with pytest.raises(xmlsec.Error):  # KeyInfo certificate does not chain to mallory
        trusting_context(env.mallory.cert).verify(signature_of(etree.fromstring(data)))


# ---------------------------------------------------------- libxmlsec signs (enveloped), hub verifies


def signing_key(party: Party) -> xmlsec.Key:
    key = xmlsec.Key.from_file(str(party.key), xmlsec.KeyFormat.PEM)
    key.load_cert_from_file(str(party.cert), xmlsec.KeyFormat.CERT_PEM)
    return key


def libxmlsec_enveloped(party: Party, method: str = RSA_SHA256) -> bytes:
    root = parse_xml(APPLICATION)
    sig = xmlsec.template.create(root, xmlsec.Transform.EXCL_C14N, xmlsec.Transform.RSA_SHA256, ns="ds")
    sig.find(f"{{{DS_NS}}}SignedInfo/{{{DS_NS}}}SignatureMethod").set("Algorithm", method)
    root.append(sig)
    ref = xmlsec.template.add_reference(sig, xmlsec.Transform.SHA256, uri="")
    xmlsec.template.add_transform(ref, xmlsec.Transform.ENVELOPED)
    xmlsec.template.add_transform(ref, xmlsec.Transform.EXCL_C14N)
    x509_data = xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(sig))
    xmlsec.template.x509_data_add_certificate(x509_data)
    ctx = xmlsec.SignatureContext()
    ctx.key = signing_key(party)
    ctx.sign(sig)
    return etree.tostring(root)


@pytest.mark.parametrize("method", [RSA_SHA256, RSA_PSS_SHA256])
def test_libxmlsec_enveloped_signature_verifies_in_hub(env: Env, method: str) -> None:
    data = libxmlsec_enveloped(env.portal, method)
    for trusted in ([env.ca_cert], [env.portal.identity.certificate]):
        verified = verify_enveloped(data, trusted)
        assert verified.signer == env.portal.identity.certificate
        assert c14n(verified.element) == c14n(APPLICATION)  # exactly the signed document


def test_hub_refuses_tampered_libxmlsec_signature(env: Env) -> None:
    data = libxmlsec_enveloped(env.portal)
    with pytest.raises(SignatureInvalid, match="digest mismatch for the document"):
        verify_enveloped(data.replace(b"M&#252;ller", b"Mueller"), [env.ca_cert])


# --------------------------------------------------------------- detached cid:part-<n>, both directions


def content() -> Content:
    return Content(ContentPart(APPLICATION, "application/xml", "antrag.xml"),
                   (ContentPart(ATTACHMENT, "application/octet-stream", "scan.bin"),))


@pytest.fixture()
def cid_parts() -> Iterator[dict[bytes, bytes]]:
    """``cid:`` URI -> raw part bytes, served to libxmlsec through its global IO callbacks."""
    parts: dict[bytes, bytes] = {}
    xmlsec.cleanup_callbacks()  # the default file callback would claim (and fail on) cid: URIs
    xmlsec.register_callbacks(lambda uri: uri in parts, lambda uri: io.BytesIO(parts[uri]),
                              lambda stream, buffer: stream.readinto(buffer), lambda stream: stream.close())
    try:
        yield parts
    finally:
        xmlsec.cleanup_callbacks()
        xmlsec.register_default_callbacks()


def serve(parts: dict[bytes, bytes], unsigned: Content) -> None:
    parts.clear()
    parts.update({f"cid:part-{n}".encode(): bytes(part.data) for n, part in enumerate(unsigned.parts)})


def test_hub_detached_signature_verifies_in_libxmlsec(env: Env, cid_parts: dict[bytes, bytes]) -> None:
    unsigned = content()
    signature = bytes(sign_content(unsigned, env.portal.identity).attachments[-1].data)
    serve(cid_parts, unsigned)
    trusting_context(env.ca).verify(etree.fromstring(signature))
    cid_parts[b"cid:part-1"] = b"\x01" + ATTACHMENT[1:]  # the callbacks really feed the parts
    with pytest.raises(xmlsec.VerificationError):
        cert_key_context(env.portal).verify(etree.fromstring(signature))


def test_libxmlsec_detached_signature_verifies_in_hub(env: Env, cid_parts: dict[bytes, bytes]) -> None:
    unsigned = content()
    serve(cid_parts, unsigned)
    sig = xmlsec.template.create(etree.Element("unused"), xmlsec.Transform.EXCL_C14N,
                                 xmlsec.Transform.RSA_SHA256, ns="ds")
    for n in range(len(unsigned.parts)):
        xmlsec.template.add_reference(sig, xmlsec.Transform.SHA256, uri=f"cid:part-{n}")  # no transforms
    xmlsec.template.x509_data_add_certificate(xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(sig)))
    sig = standalone(sig)
    ctx = xmlsec.SignatureContext()
    ctx.key = signing_key(env.portal)
    ctx.sign(sig)
    part = ContentPart(etree.tostring(sig), "application/xml", "signature.xml", "XML-DSig detached signature")
    signed = Content(unsigned.message, (*unsigned.attachments, part))
    verified = verify_content(signed, [env.ca_cert])
    assert verified.content == unsigned and verified.signer == env.portal.identity.certificate
    tampered = Content(signed.message, (ContentPart(b"\x01" + ATTACHMENT[1:], "application/octet-stream",
                                                    "scan.bin"), part))
    with pytest.raises(SignatureInvalid, match="digest mismatch for reference 1"):
        verify_content(tampered, [env.ca_cert])
