"""The hub's XML-DSig: detached over the raw octets of every content part, and enveloped.

**Detached** (``sign_content`` / ``verify_content``, the XTA delivery path). The parts travel
unchanged (byte-identical at the receiver); the signature is one extra, last attachment holding a
``ds:Signature`` document. Format, fixed so a verifier can be strict:

* one ``ds:Reference`` per part, in content order (message first, then attachments), with
  ``URI="cid:part-<index>"`` (``cid:part-0`` is the message). The index makes the reference
  unambiguous even when attachments share a filename; content type and filename are not signed;
* no ``ds:Transforms``: the digest (SHA-256) is taken over the part's raw bytes;
* ``SignedInfo`` canonicalised with exclusive C14N, signed with RSA PKCS#1 v1.5 + SHA-256 by
  default (``method=`` selects RSA-PSS or ECDSA per profile; EC keys default to ECDSA);
* ``ds:KeyInfo/ds:X509Data/ds:X509Certificate`` carries the signer certificate (exactly one).

Verification requires exactly the expected references (no extra, none missing, in order), so
signature wrapping and part reordering fail. SHA-1 and unknown algorithms are refused.

**Enveloped** (``sign_enveloped`` / ``verify_enveloped``): one ``ds:Signature`` as the last child of
the document element, exactly one reference ``URI=""`` with the transforms enveloped-signature +
exclusive C14N (inclusive C14N is accepted for other signers), so the signature covers the whole
document. Verification returns the document re-parsed from the very octets that were digested,
never the caller's tree: whatever an attacker wraps around or beside signed content cannot be
returned as "verified".
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from lxml import etree

from hub.errors import SignatureInvalid, UnsupportedAlgorithm, XmlRejected
from transport.content import Content, ContentPart
from transport.security import dsig
from transport.security.dsig import (
    C14N,
    DS_NS,
    ENVELOPED,
    EXC_C14N,
    RSA_PSS_SHA256,
    RSA_SHA256,
    SHA256,
)
from transport.security.keys import SigningIdentity
from transport.security.xml import XmlLimits, parse_xml, serialize

__all__ = [
    "DS_NS",
    "ENVELOPED",
    "EXC_C14N",
    "PART_URI_PREFIX",
    "RSA_PSS_SHA256",
    "RSA_SHA256",
    "SHA256",
    "SIGNATURE_CONTENT_TYPE",
    "SIGNATURE_DESCRIPTION",
    "SIGNATURE_FILENAME",
    "VerifiedContent",
    "VerifiedElement",
    "part_uri",
    "sign_content",
    "sign_enveloped",
    "verify_content",
    "verify_enveloped",
]

SIGNATURE_FILENAME = "signature.xml"
SIGNATURE_DESCRIPTION = "XML-DSig detached signature"
SIGNATURE_CONTENT_TYPE = "application/xml"
PART_URI_PREFIX = "cid:part-"

# A signature document is small: one reference per part plus a certificate.
_SIGNATURE_LIMITS = XmlLimits(
    max_bytes=2 * 1024 * 1024, max_depth=16, max_attribute_length=4096, max_text_length=64 * 1024
)
_ds = dsig.ds


def part_uri(index: int) -> str:
    """Reference URI of the part at ``index`` in ``Content.parts`` (0 = the message)."""
    return f"{PART_URI_PREFIX}{index}"


@dataclass(frozen=True)
class VerifiedContent:
    """Content whose signature verified (signature attachment removed) and who signed it."""

    content: Content
    signer: x509.Certificate


@dataclass(frozen=True)
class VerifiedElement:
    """The signed document exactly as digested (signature removed) and who signed it."""

    element: etree._Element
    signer: x509.Certificate


def _signature_skeleton(method: str) -> tuple[etree._Element, etree._Element]:
    sig = etree.Element(_ds("Signature"), nsmap={"ds": DS_NS})
    signed_info = etree.SubElement(sig, _ds("SignedInfo"))
    etree.SubElement(signed_info, _ds("CanonicalizationMethod"), Algorithm=EXC_C14N)
    etree.SubElement(signed_info, _ds("SignatureMethod"), Algorithm=method)
    return sig, signed_info


def _add_reference(signed_info: etree._Element, uri: str, digest: bytes,
                   transforms: Sequence[str] = ()) -> None:
    ref = etree.SubElement(signed_info, _ds("Reference"), URI=uri)
    if transforms:
        tr = etree.SubElement(ref, _ds("Transforms"))
        for t in transforms:
            etree.SubElement(tr, _ds("Transform"), Algorithm=t)
    etree.SubElement(ref, _ds("DigestMethod"), Algorithm=SHA256)
    etree.SubElement(ref, _ds("DigestValue")).text = dsig.b64(digest)


def _finish(sig: etree._Element, signed_info: etree._Element, method: str,
            identity: SigningIdentity) -> None:
    c14n = etree.tostring(signed_info, method="c14n", exclusive=True, with_comments=False)
    value = dsig.sign_bytes(identity.private_key, method, c14n)
    etree.SubElement(sig, _ds("SignatureValue")).text = dsig.b64(value)
    dsig.x509_key_info(sig, identity.certificate)


# ----------------------------------------------------------------------------- detached


def sign_content(content: Content, identity: SigningIdentity, *, method: str | None = None) -> Content:
    """Return ``content`` plus one last attachment: a detached signature over all its parts."""
    method = dsig.check_method_for_key(method, identity.private_key)
    sig, signed_info = _signature_skeleton(method)
    for index, part in enumerate(content.parts):
        _add_reference(signed_info, part_uri(index), hashlib.sha256(part.data).digest())
    _finish(sig, signed_info, method, identity)
    signature_part = ContentPart(
        data=serialize(sig),
        content_type=SIGNATURE_CONTENT_TYPE,
        filename=SIGNATURE_FILENAME,
        description=SIGNATURE_DESCRIPTION,
    )
    return Content(message=content.message, attachments=(*content.attachments, signature_part))


def _parse_references(refs: list[etree._Element], parts: Sequence[ContentPart]) -> list[tuple[str, bytes]]:
    """Exactly one untransformed reference per part, in order: (digest URI, value)."""
    if len(refs) != len(parts):
        raise SignatureInvalid(f"signature has {len(refs)} references for {len(parts)} parts")
    result = []
    for index, ref in enumerate(refs):
        uri = ref.get("URI")
        if uri != part_uri(index):
            raise SignatureInvalid(f"reference {index} has URI {uri!r}, expected {part_uri(index)}")
        kids = dsig.children(ref)
        if any(k.tag == _ds("Transforms") for k in kids):
            raise SignatureInvalid(f"reference {index} has transforms (not allowed)")
        if len(kids) != 2:
            raise SignatureInvalid(f"reference {index} is malformed")
        dsig.expect(kids[0], "DigestMethod", f"reference {index}")
        dsig.expect(kids[1], "DigestValue", f"reference {index}")
        digest_uri = dsig.algorithm(kids[0], f"DigestMethod of reference {index}")
        if digest_uri not in dsig.DIGESTS:
            raise UnsupportedAlgorithm(f"digest {digest_uri} not supported (reference {index})")
        result.append((digest_uri, dsig.b64decode(kids[1].text, f"DigestValue of reference {index}")))
    return result


def _split_signature(content: Content) -> tuple[ContentPart, tuple[ContentPart, ...]]:
    last = content.attachments[-1] if content.attachments else None
    if last is None or last.filename != SIGNATURE_FILENAME or last.description != SIGNATURE_DESCRIPTION:
        raise SignatureInvalid("content is not signed")
    return last, content.attachments[:-1]


def verify_content(
    content: Content, trusted: Sequence[x509.Certificate], *, at: _dt.datetime | None = None
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
    signed_info, value_el, key_info = dsig.signature_parts(root)
    canonical, method, refs = dsig.signed_info_header(signed_info, dsig.EXCLUSIVE_ONLY)
    digests = _parse_references(refs, unsigned.parts)
    signer = dsig.certificate_in(key_info, "KeyInfo")
    dsig.check_trust(signer, trusted, at)
    dsig.verify_value(signer, method, dsig.b64decode(value_el.text, "SignatureValue"), canonical)
    for index, ((digest_uri, value), part) in enumerate(zip(digests, unsigned.parts)):
        if not hmac.compare_digest(value, dsig.digest(digest_uri, part.data, f"reference {index}")):
            raise SignatureInvalid(
                f"digest mismatch for reference {index} ({part_uri(index)}, {part.size} bytes)"
            )
    return VerifiedContent(content=unsigned, signer=signer)


# ----------------------------------------------------------------------------- enveloped

_ENVELOPED_C14N = (EXC_C14N, C14N)


def _without(tree: etree._ElementTree, sig: etree._Element) -> None:
    """Remove ``sig`` as the enveloped-signature transform does: its tail text stays."""
    parent = sig.getparent()
    if parent is None:
        raise SignatureInvalid("an enveloped signature cannot be the document itself")
    tail = sig.tail
    previous = sig.getprevious()
    parent.remove(sig)
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail


def _document_c14n(tree: etree._ElementTree, uri: str, prefixes: list[str] | None) -> bytes:
    exclusive, _comments = dsig.C14N_METHODS[uri]
    # URI="" selects the document without comments, whatever the transform says.
    try:
        return etree.tostring(tree, method="c14n", exclusive=exclusive, with_comments=False,
                              inclusive_ns_prefixes=prefixes if exclusive else None)
    except etree.C14NError:  # libxml2 refuses e.g. relative namespace URIs
        raise SignatureInvalid("cannot canonicalize the document (relative namespace URI?)") from None


def sign_enveloped(element: etree._Element, identity: SigningIdentity, *,
                   method: str | None = None) -> etree._Element:
    """A signed copy of ``element`` as a document: ``ds:Signature`` appended as its last child."""
    method = dsig.check_method_for_key(method, identity.private_key)
    root = copy.deepcopy(element)  # a standalone document; the caller's tree is not touched
    root.tail = None
    canonical = _document_c14n(root.getroottree(), EXC_C14N, None)
    sig, signed_info = _signature_skeleton(method)
    _add_reference(signed_info, "", hashlib.sha256(canonical).digest(), (ENVELOPED, EXC_C14N))
    _finish(sig, signed_info, method, identity)
    root.append(sig)
    return root


def _enveloped_reference(refs: list[etree._Element]) -> tuple[str, list[str] | None, str, bytes]:
    """(c14n URI, inclusive prefixes, digest URI, digest value) of the one URI="" reference."""
    if len(refs) != 1:
        raise SignatureInvalid(f"enveloped signature has {len(refs)} references, expected 1")
    ref = refs[0]
    if ref.get("URI") != "":
        raise SignatureInvalid(f"reference URI is {ref.get('URI')!r}, expected \"\" (whole document)")
    kids = dsig.children(ref)
    if len(kids) != 3:
        raise SignatureInvalid("reference is malformed (Transforms, DigestMethod, DigestValue)")
    transforms_el, method_el, value_el = kids
    dsig.expect(transforms_el, "Transforms", "Reference")
    dsig.expect(method_el, "DigestMethod", "Reference")
    dsig.expect(value_el, "DigestValue", "Reference")
    transforms = dsig.children(transforms_el)
    uris = [dsig.algorithm(t, "Transform") for t in transforms]
    if len(uris) != 2 or uris[0] != ENVELOPED or uris[1] not in _ENVELOPED_C14N:
        raise SignatureInvalid(f"transforms {uris} not allowed (enveloped-signature, then C14N)")
    for t in transforms:
        dsig.expect(t, "Transform", "Transforms")
    prefixes = dsig.inclusive_prefixes(transforms[1], "Transform") if uris[1] == EXC_C14N else None
    if uris[1] != EXC_C14N and dsig.children(transforms[1]):
        raise SignatureInvalid("unexpected content in Transform")
    digest_uri = dsig.algorithm(method_el, "DigestMethod")
    if digest_uri not in dsig.DIGESTS:
        raise UnsupportedAlgorithm(f"digest {digest_uri} not supported")
    return uris[1], prefixes, digest_uri, dsig.b64decode(value_el.text, "DigestValue")


def verify_enveloped(
    document: etree._Element | bytes,
    trusted: Sequence[x509.Certificate],
    *,
    at: _dt.datetime | None = None,
    limits: XmlLimits | None = None,
) -> VerifiedElement:
    """Verify an enveloped signature over the whole document; return only what was signed.

    ``document`` is the document element (or the raw bytes, parsed with the hardened parser).
    The returned element is parsed from the canonical octets the digest was computed over.
    """
    if isinstance(document, (bytes, bytearray, memoryview)):
        root = parse_xml(bytes(document), limits) if limits else parse_xml(bytes(document))
    else:
        root = document
    if root.getparent() is not None:
        raise SignatureInvalid("an enveloped signature must be verified on the document element")
    sigs = [c for c in dsig.children(root) if c.tag == _ds("Signature")]
    if len(sigs) != 1:
        raise SignatureInvalid(f"document element has {len(sigs)} ds:Signature children, expected 1")
    tree = copy.deepcopy(root.getroottree())
    sig = tree.getroot()[root.index(sigs[0])]
    signed_info, value_el, key_info = dsig.signature_parts(sig)
    canonical_si, method, refs = dsig.signed_info_header(signed_info)
    c14n_uri, prefixes, digest_uri, digest_value = _enveloped_reference(refs)
    signer = dsig.certificate_in(key_info, "KeyInfo")
    dsig.check_trust(signer, trusted, at)
    dsig.verify_value(signer, method, dsig.b64decode(value_el.text, "SignatureValue"), canonical_si)
    _without(tree, sig)
    signed = _document_c14n(tree, c14n_uri, prefixes)
    if not hmac.compare_digest(digest_value, dsig.digest(digest_uri, signed, "reference")):
        raise SignatureInvalid(f"digest mismatch for the document ({len(signed)} canonical bytes)")
    return VerifiedElement(element=parse_xml(signed, limits) if limits else parse_xml(signed), signer=signer)
