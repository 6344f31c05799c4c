"""Regenerate the hostile corpus in this folder (run by hand: ``python tests/unit/security/hostile/make_corpus.py``).

The files are committed so the tests never depend on this script; it documents how each one was
made. The signed/encrypted cases use the static test PKI in ``pki/`` (valid 2025-2125; test keys
only, never trusted anywhere else); it is created on the first run and then reused.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from transport.content import Content, ContentPart
from transport.security.encryption import encrypt_xml
from transport.security.keys import load_certificate, load_signing_identity
from transport.security.signature import sign_content, sign_enveloped
from transport.security.xml import parse_xml, serialize
from transport.xta.container import build_content_container

PKI = HERE / "pki"
DS = "http://www.w3.org/2000/09/xmldsig#"
APPLICATION = (b'<?xml version="1.0" encoding="UTF-8"?>\n<xau:antrag xmlns:xau="http://www.osci.de/xauslaender2611">'
               b"<name>Erika Mustermann</name><betrag>100</betrag></xau:antrag>")


def _issue(name: str, key: rsa.RSAPrivateKey, issuer_key: rsa.RSAPrivateKey, issuer: x509.Name | None) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"hostile corpus {name}")])
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
            .not_valid_after(dt.datetime(2125, 1, 1, tzinfo=dt.UTC))
            .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), True)
            .sign(issuer_key, hashes.SHA256()))


def _pki() -> None:
    if (PKI / "ca.cert.pem").exists():
        return
    PKI.mkdir(exist_ok=True)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = _issue("CA", ca_key, ca_key, None)
    (PKI / "ca.cert.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name in ("signer", "reader", "other"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (PKI / f"{name}.cert.pem").write_bytes(_issue(name, key, ca_key, ca.subject).public_bytes(serialization.Encoding.PEM))
        if name != "reader":  # the reader's key is not needed: nobody may decrypt wrong_reader_key.xml
            (PKI / f"{name}.key.pem").write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def _write(name: str, data: bytes) -> None:
    (HERE / name).write_bytes(data)


def _payloads() -> None:
    _write("xxe_file.xml", b'<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<a>&x;</a>\n')
    _write("xxe_url.xml", b'<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY x SYSTEM "http://127.0.0.1:9/xxe">]>\n<a>&x;</a>\n')
    _write("xxe_parameter_entity.xml", b'<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY % p SYSTEM '
           b'"http://127.0.0.1:9/evil.dtd"> %p;]>\n<a>&exfil;</a>\n')
    _write("xxe_utf16.xml", '<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE a [<!ENTITY x SYSTEM '
           '"file:///etc/passwd">]>\n<a>&x;</a>\n'.encode("utf-16"))
    _write("external_dtd.xml", b'<?xml version="1.0"?>\n<!DOCTYPE a SYSTEM "http://127.0.0.1:9/external.dtd">\n<a/>\n')
    lol = [b'<!ENTITY lol0 "lol">'] + [
        b'<!ENTITY lol%d "' % i + b"&lol%d;" % (i - 1) * 10 + b'">' for i in range(1, 10)]
    _write("billion_laughs.xml", b'<?xml version="1.0"?>\n<!DOCTYPE a [\n' + b"\n".join(lol) + b"\n]>\n<a>&lol9;</a>\n")
    _write("quadratic_blowup.xml", b'<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY x "' + b"A" * 50_000
           + b'">]>\n<a>' + b"&x;" * 2_000 + b"</a>\n")
    _write("xinclude.xml", b'<?xml version="1.0"?>\n<a xmlns:xi="http://www.w3.org/2001/XInclude">'
           b'<xi:include href="file:///etc/passwd" parse="text"/></a>\n')
    _write("deep_nesting.xml", b"<a>" * 300 + b"</a>" * 300)
    _write("deep_nesting_beyond_libxml2.xml", b"<a>" * 5_000 + b"</a>" * 5_000)
    _write("invalid_utf8.xml", b'<?xml version="1.0" encoding="UTF-8"?>\n<a>M\xfcller \xc3\x28 \xff</a>\n')
    _write("huge_attribute.xml", b'<a v="' + b"A" * 70_000 + b'"/>\n')


def _crypto() -> None:
    signer = load_signing_identity(PKI / "signer.key.pem", PKI / "signer.cert.pem")
    # enveloped: wrapping (signed original hidden in ds:Object, evil content signed by nobody)
    signed = sign_enveloped(parse_xml(APPLICATION), signer)
    original = parse_xml(serialize(signed))
    original.remove(original.find(f"{{{DS}}}Signature"))
    wrapped = parse_xml(serialize(signed))
    wrapped.find("name").text = "Mallory"
    wrapped.find("betrag").text = "1000000"
    obj = etree.SubElement(wrapped.find(f"{{{DS}}}Signature"), f"{{{DS}}}Object")
    obj.append(original)
    _write("signature_wrapping.xml", serialize(wrapped))
    _write("control_enveloped.xml", serialize(signed))  # accepted: the tampered/wrapped ones are not
    # enveloped: one byte of signed content changed
    data = serialize(signed)
    _write("tampered_signed_content.xml", data.replace(b"<betrag>100<", b"<betrag>900<"))
    # detached (XTA ContentContainer after decryption): an injected attachment, and a changed byte
    content = Content(ContentPart(APPLICATION, "application/xml", "antrag.xml"),
                      (ContentPart(b"%PDF-1.7 scan", "application/pdf", "pass.pdf"),))
    signed_content = sign_content(content, signer)
    injected = Content(signed_content.message, (*signed_content.attachments[:-1],
                                                ContentPart(b"%PDF-1.7 evil", "application/pdf", "pass.pdf"),
                                                signed_content.attachments[-1]))
    _write("container_signature_wrapping.xml", serialize(build_content_container(injected)))
    _write("control_container.xml", serialize(build_content_container(signed_content)))
    message = ContentPart(APPLICATION.replace(b"100", b"900"), "application/xml", "antrag.xml")
    _write("container_tampered.xml", serialize(build_content_container(
        Content(message, signed_content.attachments))))
    # encrypted for "reader"; the hub holds only "other"
    reader = load_certificate(PKI / "reader.cert.pem")
    _write("wrong_reader_key.xml", serialize(encrypt_xml(APPLICATION, reader)))


def main() -> None:
    _pki()
    _payloads()
    _crypto()


if __name__ == "__main__":
    main()
