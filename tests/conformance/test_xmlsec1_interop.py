"""Interoperability with an independent XML-DSig/XML-Enc implementation: the xmlsec1 CLI.

Both directions: what the hub signs/encrypts, xmlsec1 verifies/decrypts; what xmlsec1 signs/
encrypts (from templates), the hub verifies/decrypts. Where xmlsec1 1.2.37 (Debian 12) lacks an
algorithm of the OSCI catalogue, the test asserts xmlsec1's exact error, so the gap is documented
and noticed when the tool is upgraded:

* key transport ``http://www.w3.org/2009/xmlenc11#rsa-oaep`` (+ MGF1-SHA256) is not registered;
* ``rsa-oaep-mgf1p`` only takes a SHA-1 DigestMethod (so no OAEP-SHA256 at all);
* RSA-PSS signatures (``http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1``) are not registered.

The hub's AES-256-GCM ciphertext format is proven separately: the same EncryptedData with only its
key transport swapped to rsa-oaep-mgf1p/SHA-1 decrypts in xmlsec1 with the reader key.
"""

from __future__ import annotations

import binascii
import datetime as dt
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from lxml import etree

from hub.errors import SignatureInvalid, UnsupportedAlgorithm
from transport.content import Content, ContentPart
from transport.security.dsig import ECDSA_SHA384, RSA_PSS_SHA256
from transport.security.encryption import (
    AES256_CBC,
    RSA_1_5,
    RSA_OAEP_MGF1P,
    TRIPLEDES_CBC,
    XENC_NS,
    decrypt_xml,
    encrypt_xml,
)
from transport.security.keys import (
    SigningIdentity,
    load_certificate,
    load_private_key,
    load_signing_identity,
)
from transport.security.signature import (
    sign_content,
    sign_enveloped,
    verify_content,
    verify_enveloped,
)
from transport.security.xml import parse_xml, serialize

DS = "http://www.w3.org/2000/09/xmldsig#"
XENC11 = "http://www.w3.org/2009/xmlenc11#"
SHA1 = DS + "sha1"
GCM = XENC11 + "aes256-gcm"
APPLICATION = (b'<?xml version="1.0" encoding="UTF-8"?>\n<xau:antrag xmlns:xau="http://www.osci.de/xauslaender2611">'
               b'\n  <name>M\xc3\xbcller &amp; S\xc3\xb6hne</name>\n  <daten>' + b"x" * 5000 + b"</daten>\n</xau:antrag>\n")
ATTACHMENT = bytes(range(256)) * 40


@dataclass(frozen=True)
class Party:
    key: Path
    cert: Path
    identity: SigningIdentity


@dataclass(frozen=True)
class Env:
    xmlsec1: str
    ca: Path
    ca_cert: x509.Certificate
    portal: Party
    reader: Party
    ec256: Party
    ec384: Party


def _ec_party(directory: Path, name: str, curve: ec.EllipticCurve, ca_key: Path, ca_cert: x509.Certificate) -> Party:
    key = ec.generate_private_key(curve)
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .sign(load_private_key(ca_key), hashes.SHA256()))
    key_path, cert_path = directory / f"{name}.key.pem", directory / f"{name}.cert.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Party(key_path, cert_path, SigningIdentity(private_key=key, certificate=cert))


@pytest.fixture(scope="module")
def env(pki: dict[str, tuple[Path, Path]], tmp_path_factory: pytest.TempPathFactory) -> Env:
    tool = shutil.which("xmlsec1")
    if tool is None:
        pytest.fail("xmlsec1 not found: scripts/bootstrap.sh installs it (Debian package xmlsec1)")
    directory = tmp_path_factory.mktemp("xmlsec1-ec")
    ca_key, ca_path = pki["ca"]
    ca_cert = load_certificate(ca_path)

    def party(name: str) -> Party:
        return Party(*pki[name], load_signing_identity(*pki[name]))

    return Env(tool, ca_path, ca_cert, party("portal"), party("azr-000100"),
               _ec_party(directory, "ec-p256", ec.SECP256R1(), ca_key, ca_cert),
               _ec_party(directory, "ec-p384", ec.SECP384R1(), ca_key, ca_cert))


def xmlsec1(env: Env, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([env.xmlsec1, *map(str, args)], capture_output=True, text=True, timeout=60,
                          check=False)  # assert_ok / the test checks the code


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr[-2000:]


def content() -> Content:
    return Content(ContentPart(APPLICATION, "application/xml", "antrag.xml"),
                   (ContentPart(ATTACHMENT, "application/octet-stream", "scan.bin"),))


def url_map(directory: Path, signed: Content) -> list[str]:
    """Write every signed part to a file; the --url-map options that resolve cid:part-<n>."""
    args = []
    for index, part in enumerate(signed.parts[:-1]):
        path = directory / f"part-{index}"
        path.write_bytes(part.data)
        args += [f"--url-map:cid:part-{index}", str(path)]
    return args


def c14n(data: bytes) -> bytes:
    return etree.tostring(parse_xml(data), method="c14n")


# ------------------------------------------------------------------ hub signs, xmlsec1 verifies


@pytest.mark.parametrize("signer", ["portal", "ec256", "ec384"])
def test_hub_detached_signature_verifies_in_xmlsec1(env: Env, tmp_path: Path, signer: str) -> None:
    party: Party = getattr(env, signer)
    signed = sign_content(content(), party.identity)
    (tmp_path / "signature.xml").write_bytes(signed.attachments[-1].data)
    result = xmlsec1(env, "--verify", "--trusted-pem", env.ca, *url_map(tmp_path, signed), tmp_path / "signature.xml")
    assert_ok(result)
    assert "SignedInfo References (ok/all): 2/2" in result.stderr
    # the url-map really feeds the parts: one flipped byte and xmlsec1 refuses
    mapping = url_map(tmp_path, signed)
    (tmp_path / "part-1").write_bytes(b"\x01" + ATTACHMENT[1:])
    tampered = xmlsec1(env, "--verify", "--trusted-pem", env.ca, *mapping, tmp_path / "signature.xml")
    assert tampered.returncode != 0
    assert "SignedInfo References (ok/all): 1/2" in tampered.stderr


@pytest.mark.parametrize(("signer", "method"), [("portal", None), ("ec256", None), ("ec384", ECDSA_SHA384)])
def test_hub_enveloped_signature_verifies_in_xmlsec1(env: Env, tmp_path: Path, signer: str, method: str | None) -> None:
    party: Party = getattr(env, signer)
    signed = sign_enveloped(parse_xml(APPLICATION), party.identity, method=method)
    path = tmp_path / "signed.xml"
    path.write_bytes(serialize(signed))
    assert_ok(xmlsec1(env, "--verify", "--trusted-pem", env.ca, path))
    path.write_bytes(serialize(signed).replace("Söhne".encode(), b"Sohne"))
    result = xmlsec1(env, "--verify", "--trusted-pem", env.ca, path)
    assert result.returncode != 0 and "FAIL" in result.stderr + result.stdout


def test_xmlsec1_refuses_an_untrusted_hub_signature(env: Env, tmp_path: Path, pki: dict[str, tuple[Path, Path]]) -> None:
    path = tmp_path / "signed.xml"
    path.write_bytes(serialize(sign_enveloped(parse_xml(APPLICATION), env.portal.identity)))
    result = xmlsec1(env, "--verify", "--trusted-pem", pki["mallory"][1], path)  # not the CA
    assert result.returncode != 0
    assert "unable to get local issuer certificate" in result.stderr


def test_gap_xmlsec1_1_2_37_has_no_rsa_pss(env: Env, tmp_path: Path) -> None:
    signed = sign_enveloped(parse_xml(APPLICATION), env.portal.identity, method=RSA_PSS_SHA256)
    assert verify_enveloped(serialize(signed), [env.ca_cert]).signer == env.portal.identity.certificate
    path = tmp_path / "pss.xml"
    path.write_bytes(serialize(signed))
    result = xmlsec1(env, "--verify", "--trusted-pem", env.ca, path)
    assert result.returncode != 0
    assert "xmlSecTransformIdListFindByHref" in result.stderr
    assert f"href={RSA_PSS_SHA256}" in result.stderr


# ---------------------------------------------------------------- hub encrypts, xmlsec1 decrypts


def test_gap_xmlsec1_1_2_37_cannot_unwrap_osci_key_transport(env: Env, tmp_path: Path) -> None:
    """The hub's default (OSCI catalogue): xmlenc11#rsa-oaep with MGF1-SHA256 and SHA-256."""
    path = tmp_path / "enc.xml"
    path.write_bytes(serialize(encrypt_xml(APPLICATION, env.reader.identity.certificate)))
    result = xmlsec1(env, "--decrypt", "--privkey-pem", env.reader.key, path)
    assert result.returncode != 0
    assert "xmlSecTransformIdListFindByHref" in result.stderr
    assert "href=http://www.w3.org/2009/xmlenc11#rsa-oaep" in result.stderr


def rewrap_for_xmlsec1(enc: etree._Element, env: Env, *, oaep_digest: str = SHA1) -> etree._Element:
    """Only the key transport changes (rsa-oaep-mgf1p, MGF1-SHA1): the content key is unwrapped
    with the reader key and wrapped again; EncryptedData, IV, ciphertext and tag stay the hub's."""
    key_el = enc.find(f"{{{DS}}}KeyInfo/{{{XENC_NS}}}EncryptedKey")
    value = key_el.find(f"{{{XENC_NS}}}CipherData/{{{XENC_NS}}}CipherValue")
    oaep256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    content_key = env.reader.identity.private_key.decrypt(binascii.a2b_base64(value.text), oaep256)  # type: ignore[union-attr]
    digest = hashes.SHA1() if oaep_digest == SHA1 else hashes.SHA256()
    wrapped = env.reader.identity.certificate.public_key().encrypt(  # type: ignore[union-attr]
        content_key, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=digest, label=None))
    value.text = binascii.b2a_base64(wrapped, newline=False).decode()
    method = key_el.find(f"{{{XENC_NS}}}EncryptionMethod")
    method.set("Algorithm", RSA_OAEP_MGF1P)
    for child in list(method):
        method.remove(child)
    etree.SubElement(method, f"{{{DS}}}DigestMethod", Algorithm=oaep_digest)
    return enc


def test_hub_gcm_content_decrypts_in_xmlsec1_with_mgf1p_key_transport(env: Env, tmp_path: Path) -> None:
    enc = rewrap_for_xmlsec1(encrypt_xml(APPLICATION, env.reader.identity.certificate), env)
    assert enc.find(f"{{{XENC_NS}}}EncryptionMethod").get("Algorithm") == GCM
    path = tmp_path / "enc.xml"
    path.write_bytes(serialize(enc))
    result = xmlsec1(env, "--decrypt", "--privkey-pem", env.reader.key, "--output", tmp_path / "out.xml", path)
    assert_ok(result)
    assert c14n((tmp_path / "out.xml").read_bytes()) == c14n(APPLICATION)


def test_hub_gcm_binary_content_decrypts_in_xmlsec1(env: Env, tmp_path: Path) -> None:
    enc = rewrap_for_xmlsec1(encrypt_xml(ATTACHMENT, env.reader.identity.certificate, type_uri=None), env)
    path = tmp_path / "enc.xml"
    path.write_bytes(serialize(enc))
    assert_ok(xmlsec1(env, "--decrypt", "--privkey-pem", env.reader.key, "--output", tmp_path / "out.bin", path))
    assert (tmp_path / "out.bin").read_bytes() == ATTACHMENT


def test_gap_xmlsec1_1_2_37_mgf1p_takes_only_sha1(env: Env, tmp_path: Path) -> None:
    enc = rewrap_for_xmlsec1(encrypt_xml(APPLICATION, env.reader.identity.certificate), env,
                             oaep_digest="http://www.w3.org/2001/04/xmlenc#sha256")
    path = tmp_path / "enc.xml"
    path.write_bytes(serialize(enc))
    result = xmlsec1(env, "--decrypt", "--privkey-pem", env.reader.key, path)
    assert result.returncode != 0
    assert ('digest algorithm="http://www.w3.org/2001/04/xmlenc#sha256" is not supported for rsa/oaep'
            in result.stderr)


# ------------------------------------------------------------------ xmlsec1 signs, hub verifies

ENVELOPED_TEMPLATE = """<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>
<ds:CanonicalizationMethod Algorithm="{c14n}"/><ds:SignatureMethod Algorithm="{method}"/>
<ds:Reference URI=""><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
<ds:Transform Algorithm="{c14n}"/></ds:Transforms>
<ds:DigestMethod Algorithm="{digest}"/><ds:DigestValue/></ds:Reference></ds:SignedInfo>
<ds:SignatureValue/><ds:KeyInfo><ds:X509Data><ds:X509Certificate/></ds:X509Data></ds:KeyInfo></ds:Signature>"""
EXC = "http://www.w3.org/2001/10/xml-exc-c14n#"
INCL = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
MORE = "http://www.w3.org/2001/04/xmldsig-more#"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"


def xmlsec1_enveloped(env: Env, tmp_path: Path, party: Party, *, method: str = MORE + "rsa-sha256",
                      c14n_uri: str = EXC, digest: str = SHA256) -> bytes:
    doc = parse_xml(APPLICATION)
    doc.append(etree.fromstring(ENVELOPED_TEMPLATE.format(c14n=c14n_uri, method=method, digest=digest)))
    template = tmp_path / "template.xml"
    template.write_bytes(serialize(doc))
    out = tmp_path / "signed-by-xmlsec1.xml"
    assert_ok(xmlsec1(env, "--sign", "--privkey-pem", f"{party.key},{party.cert}", "--output", out, template))
    return out.read_bytes()


@pytest.mark.parametrize(("signer", "method", "c14n_uri"), [
    ("portal", MORE + "rsa-sha256", EXC), ("portal", MORE + "rsa-sha512", INCL),
    ("ec256", MORE + "ecdsa-sha256", EXC), ("ec384", MORE + "ecdsa-sha384", EXC)])
def test_xmlsec1_enveloped_signature_verifies_in_hub(env: Env, tmp_path: Path, signer: str, method: str,
                                                    c14n_uri: str) -> None:
    party: Party = getattr(env, signer)
    data = xmlsec1_enveloped(env, tmp_path, party, method=method, c14n_uri=c14n_uri)
    verified = verify_enveloped(data, [env.ca_cert])
    assert verified.signer == party.identity.certificate
    assert c14n(etree.tostring(verified.element)) == c14n(APPLICATION)  # exactly the signed document
    with pytest.raises(SignatureInvalid, match="digest mismatch for the document"):
        verify_enveloped(data.replace("Müller".encode(), b"Mueller"), [env.ca_cert])


def test_xmlsec1_sha1_signature_is_refused(env: Env, tmp_path: Path) -> None:
    data = xmlsec1_enveloped(env, tmp_path, env.portal, method=DS + "rsa-sha1", digest=SHA1)
    with pytest.raises(UnsupportedAlgorithm, match=re.escape(f"signature method {DS}rsa-sha1 not supported")):
        verify_enveloped(data, [env.ca_cert])


DETACHED_TEMPLATE = """<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>
<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>
{references}</ds:SignedInfo><ds:SignatureValue/>
<ds:KeyInfo><ds:X509Data><ds:X509Certificate/></ds:X509Data></ds:KeyInfo></ds:Signature>"""
REFERENCE = ('<ds:Reference URI="cid:part-{n}"><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
             "<ds:DigestValue/></ds:Reference>\n")


def test_xmlsec1_detached_signature_verifies_in_hub(env: Env, tmp_path: Path) -> None:
    unsigned = content()
    template = tmp_path / "template.xml"
    template.write_text(DETACHED_TEMPLATE.format(references="".join(REFERENCE.format(n=n) for n in range(2))))
    signed_dummy = Content(unsigned.message, (*unsigned.attachments, ContentPart(b"", "application/xml")))
    out = tmp_path / "signature.xml"
    assert_ok(xmlsec1(env, "--sign", "--privkey-pem", f"{env.portal.key},{env.portal.cert}",
                      *url_map(tmp_path, signed_dummy), "--output", out, template))
    sig = ContentPart(out.read_bytes(), "application/xml", "signature.xml", "XML-DSig detached signature")
    signed = Content(unsigned.message, (*unsigned.attachments, sig))
    assert verify_content(signed, [env.ca_cert]).content == unsigned
    tampered = Content(ContentPart(APPLICATION.replace(b"x", b"y", 1), "application/xml"), signed.attachments)
    with pytest.raises(SignatureInvalid, match="digest mismatch for reference 0"):
        verify_content(tampered, [env.ca_cert])


# ----------------------------------------------------------------- xmlsec1 encrypts, hub decrypts

ENC_TEMPLATE = """<xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" {type}>
<xenc:EncryptionMethod Algorithm="{content}"/>
<ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><xenc:EncryptedKey>
<xenc:EncryptionMethod Algorithm="{transport}"/>
<xenc:CipherData><xenc:CipherValue/></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo>
<xenc:CipherData><xenc:CipherValue/></xenc:CipherData></xenc:EncryptedData>"""
SESSION = {GCM: "aes-256", AES256_CBC: "aes-256", TRIPLEDES_CBC: "des-192"}


def xmlsec1_encrypt(env: Env, tmp_path: Path, *, content_uri: str = GCM, transport: str = RSA_OAEP_MGF1P,
                    binary: bytes | None = None) -> etree._Element:
    template = tmp_path / "enc-template.xml"
    kind = "" if binary is not None else 'Type="http://www.w3.org/2001/04/xmlenc#Element"'
    template.write_text(ENC_TEMPLATE.format(type=kind, content=content_uri, transport=transport))
    data = tmp_path / ("data.bin" if binary is not None else "data.xml")
    data.write_bytes(binary if binary is not None else APPLICATION)
    out = tmp_path / "encrypted-by-xmlsec1.xml"
    assert_ok(xmlsec1(env, "--encrypt", "--pubkey-cert-pem", env.reader.cert, "--session-key",
                      SESSION[content_uri], "--binary-data" if binary is not None else "--xml-data", data,
                      "--output", out, template))
    root = parse_xml(out.read_bytes())
    assert root.tag == f"{{{XENC_NS}}}EncryptedData"
    return root


def test_xmlsec1_gcm_encryption_decrypts_in_hub_only_as_legacy(env: Env, tmp_path: Path) -> None:
    """xmlsec1 1.2.37 can only wrap with rsa-oaep-mgf1p (SHA-1): refused by default, by name."""
    enc = xmlsec1_encrypt(env, tmp_path)
    with pytest.raises(UnsupportedAlgorithm, match=re.escape(f"key transport {RSA_OAEP_MGF1P} refused (deprecated)")):
        decrypt_xml(enc, env.reader.identity.private_key)  # type: ignore[arg-type]
    plain = decrypt_xml(enc, env.reader.identity.private_key, allow_legacy=True)  # type: ignore[arg-type]
    assert c14n(plain) == c14n(APPLICATION)


def test_xmlsec1_gcm_binary_encryption_decrypts_in_hub(env: Env, tmp_path: Path) -> None:
    enc = xmlsec1_encrypt(env, tmp_path, binary=ATTACHMENT)
    assert decrypt_xml(enc, env.reader.identity.private_key, allow_legacy=True) == ATTACHMENT  # type: ignore[arg-type]


@pytest.mark.parametrize(("content_uri", "transport", "refused"), [
    (AES256_CBC, RSA_OAEP_MGF1P, AES256_CBC), (TRIPLEDES_CBC, RSA_OAEP_MGF1P, TRIPLEDES_CBC),
    (GCM, RSA_1_5, RSA_1_5)])
def test_xmlsec1_deprecated_algorithms_are_refused_by_name(env: Env, tmp_path: Path, content_uri: str,
                                                          transport: str, refused: str) -> None:
    enc = xmlsec1_encrypt(env, tmp_path, content_uri=content_uri, transport=transport)
    with pytest.raises(UnsupportedAlgorithm, match=re.escape(f"{refused} refused (deprecated)")):
        decrypt_xml(enc, env.reader.identity.private_key)  # type: ignore[arg-type]
    if refused in (RSA_1_5, TRIPLEDES_CBC):  # never, not even for legacy senders
        with pytest.raises(UnsupportedAlgorithm, match="refused"):
            decrypt_xml(enc, env.reader.identity.private_key, allow_legacy=True)  # type: ignore[arg-type]
    else:
        plain = decrypt_xml(enc, env.reader.identity.private_key, allow_legacy=True)  # type: ignore[arg-type]
        assert c14n(plain) == c14n(APPLICATION)


def test_xmlsec1_signature_amid_mixed_content_verifies_in_hub(env: Env, tmp_path: Path) -> None:
    """The enveloped-signature transform keeps the text after the signature and the prolog PI."""
    doc = ('<?xml version="1.0"?>\n<?xml-stylesheet href="a.xsl"?>\n<!-- not signed -->\n'
           '<a xmlns="urn:a">x<b/>y' + ENVELOPED_TEMPLATE.format(c14n=EXC, method=MORE + "rsa-sha256", digest=SHA256)
           + "after<c/></a>")
    template = tmp_path / "mixed.xml"
    template.write_text(doc)
    out = tmp_path / "mixed-signed.xml"
    assert_ok(xmlsec1(env, "--sign", "--privkey-pem", f"{env.portal.key},{env.portal.cert}", "--output", out, template))
    verified = verify_enveloped(out.read_bytes(), [env.ca_cert])
    assert etree.tostring(verified.element.getroottree()) == (
        b'<?xml-stylesheet href="a.xsl"?><a xmlns="urn:a">x<b/>yafter<c/></a>')
    with pytest.raises(SignatureInvalid, match="digest mismatch"):
        verify_enveloped(out.read_bytes().replace(b"after", b"AFTER"), [env.ca_cert])
