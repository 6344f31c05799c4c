"""Verifying and decrypting OSCI-Transport 1.2 messages (as the Governikus Java library makes them).

OSCI signs differently from the hub's own format: ``ds:Reference`` elements point at elements by
``Id`` (``#body``, ``#controlblock``, ``#content0``) with one transform (inclusive C14N 20010315,
or base64 for ``osci:Base64Content``), or at MIME attachments by ``cid:`` without transforms;
``SignedInfo`` is canonicalised with inclusive C14N; ``ds:KeyInfo`` usually holds a
``ds:RetrievalMethod`` pointing at the signer certificate elsewhere in the SOAP header (for the
content signature inside an encrypted ContentContainer, in the *outer* envelope).

The verifier stays strict, so signature wrapping cannot work:

* every ``#id`` must resolve to exactly one element with that ``Id`` attribute in the document
  (a duplicated Id is refused, not "the first one wins"); no other URI forms (``""``, XPointer,
  http:) are accepted; a URI may be referenced once;
* the caller names the URIs that must be covered (``required``) and gets back the elements and
  octets that were digested: use those, never a fresh lookup in the tree;
* transforms: exactly one of inclusive/exclusive C14N or base64 (on an element holding only
  text) for ``#id``; none for ``cid:``. SHA-1 and unknown algorithms are refused (``dsig``);
* the signer certificate must be trusted (``dsig.check_trust``).

Decryption: ``xenc:EncryptedData`` with an inline ``CipherValue`` or a ``CipherReference`` to a
MIME part (``cid:``). The library declares a base64 transform on those references but writes the
MIME part as raw octets (``Content-Transfer-Encoding: binary``): the transform names the MIME
transfer encoding, which the MIME layer has already undone, so the part's octets are used as they
are. Attachments inside a ContentContainer carry their AES key in ``ds:MgmtData`` (the container
itself is encrypted for the reader): ``decrypt_with_mgmt_data`` handles exactly that.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from lxml import etree

from hub.errors import DecryptionFailed, SignatureInvalid, UnsupportedAlgorithm
from transport.security import dsig
from transport.security.encryption import (
    XENC_NS,
    content_algorithm,
    content_key_length,
    decrypt_octets,
    unwrap_content_key,
)

__all__ = [
    "OSCI12_8_NS",
    "OSCI_NS",
    "SignedReference",
    "VerifiedOsciSignature",
    "decrypt_osci",
    "decrypt_with_mgmt_data",
    "verify_osci_signature",
]

OSCI_NS = "http://www.osci.de/2002/04/osci"
OSCI12_8_NS = "http://xoev.de/transport/osci12/8"
_X509_DATA_TYPE = dsig.DS_NS + "X509Data"
_ID_TRANSFORMS = frozenset({dsig.C14N, dsig.EXC_C14N, dsig.BASE64})
_GCM_IV = 12
_ds = dsig.ds


@dataclass(frozen=True)
class SignedReference:
    """One verified reference: the element it names (``#id``) or None (``cid:``) and its octets."""

    uri: str
    element: etree._Element | None = field(repr=False)
    data: bytes = field(repr=False)  # may be personal data: never in a repr or a log


@dataclass(frozen=True)
class VerifiedOsciSignature:
    signer: x509.Certificate
    references: tuple[SignedReference, ...]

    def reference(self, uri: str) -> SignedReference:
        for ref in self.references:
            if ref.uri == uri:
                return ref
        raise KeyError(uri)


def _by_id(documents: Sequence[etree._Element], ident: str, what: str) -> etree._Element:
    hits: list[etree._Element] = []
    for doc in documents:
        found = doc.xpath("//*[@Id=$i]", i=ident)
        if isinstance(found, list):
            hits.extend(hit for hit in found if isinstance(hit, etree._Element))
    if len(hits) != 1:
        state = "not found" if not hits else f"not unique ({len(hits)} elements)"
        raise SignatureInvalid(f"{what} Id {ident!r} {state}")
    return hits[0]


def _reference_octets(
    ref: etree._Element, document: etree._Element, attachments: Mapping[str, bytes]
) -> tuple[str, etree._Element | None, str, bytes, bytes]:
    """(URI, element, digest URI, digest value, referenced octets) of one reference."""
    uri = ref.get("URI")
    kids = dsig.children(ref)
    transforms: list[etree._Element] = []
    if kids and kids[0].tag == _ds("Transforms"):
        transforms = dsig.children(kids[0])
        kids = kids[1:]
    if len(kids) != 2:
        raise SignatureInvalid(f"reference {uri!r} is malformed")
    dsig.expect(kids[0], "DigestMethod", f"reference {uri!r}")
    dsig.expect(kids[1], "DigestValue", f"reference {uri!r}")
    digest_uri = dsig.algorithm(kids[0], f"DigestMethod of reference {uri!r}")
    value = dsig.b64decode(kids[1].text, f"DigestValue of reference {uri!r}")
    if uri and uri.startswith("cid:") and len(uri) > 4:
        if transforms:
            raise SignatureInvalid(f"reference {uri!r} has transforms (not allowed for cid:)")
        if uri[4:] not in attachments:
            raise SignatureInvalid(f"reference {uri!r} names no MIME part of the message")
        return uri, None, digest_uri, value, attachments[uri[4:]]
    if not uri or not uri.startswith("#") or len(uri) < 2 or "(" in uri:
        raise SignatureInvalid(f"reference URI {uri!r} not allowed (only #Id and cid:)")
    element = _by_id([document], uri[1:], "reference")
    if len(transforms) != 1:
        raise SignatureInvalid(f"reference {uri!r} needs exactly one transform, has {len(transforms)}")
    dsig.expect(transforms[0], "Transform", f"reference {uri!r}")
    transform = dsig.algorithm(transforms[0], f"Transform of reference {uri!r}")
    if transform not in _ID_TRANSFORMS:
        raise UnsupportedAlgorithm(f"transform {transform} not supported (reference {uri!r})")
    if transform == dsig.BASE64:
        if dsig.children(element):
            raise SignatureInvalid(f"base64 transform on element {uri!r} with child elements")
        data = dsig.b64decode(element.text, f"content of {uri!r}")
    else:
        prefixes = dsig.inclusive_prefixes(transforms[0], "Transform") if transform == dsig.EXC_C14N else None
        data = dsig.canonicalize(element, transform, prefixes)
    return uri, element, digest_uri, value, data


def _signer(key_info: etree._Element, sources: Sequence[etree._Element]) -> x509.Certificate:
    kids = dsig.children(key_info)
    if len(kids) != 1:
        raise SignatureInvalid(f"KeyInfo has {len(kids)} children, expected 1")
    if kids[0].tag == _ds("X509Data"):
        return dsig.certificate_in(key_info, "KeyInfo")
    dsig.expect(kids[0], "RetrievalMethod", "KeyInfo")
    uri = kids[0].get("URI") or ""
    kind = kids[0].get("Type")
    if kind not in (None, _X509_DATA_TYPE):
        raise SignatureInvalid(f"RetrievalMethod Type {kind!r} not supported")
    if not uri.startswith("#") or len(uri) < 2 or dsig.children(kids[0]):
        raise SignatureInvalid(f"RetrievalMethod URI {uri!r} not allowed (only #Id, no transforms)")
    holder = _by_id(sources, uri[1:], "certificate")
    return dsig.certificate_in(holder, f"certificate element {uri!r}")


def verify_osci_signature(
    signature: etree._Element,
    trusted: Sequence[x509.Certificate],
    *,
    required: Sequence[str] = (),
    attachments: Mapping[str, bytes] | None = None,
    certificate_documents: Sequence[etree._Element] = (),
    at: _dt.datetime | None = None,
) -> VerifiedOsciSignature:
    """Verify one OSCI ``ds:Signature`` in its document.

    ``required``: URIs that must be among the references (e.g. ``"#body"``). ``attachments``:
    MIME parts by Content-ID without angle brackets (for ``cid:`` references), as octets after
    transfer decoding. ``certificate_documents``: further documents in which a RetrievalMethod
    may find the signer certificate (the outer envelope, for a content signature).
    """
    if signature.tag != _ds("Signature"):
        raise SignatureInvalid(f"expected ds:Signature, found {etree.QName(signature).localname}")
    document = signature.getroottree().getroot()
    signed_info, value_el, key_info = dsig.signature_parts(signature)
    canonical, method, refs = dsig.signed_info_header(signed_info)
    resolved = [_reference_octets(r, document, attachments or {}) for r in refs]
    uris = [r[0] for r in resolved]
    if len(set(uris)) != len(uris):
        raise SignatureInvalid("a URI is referenced more than once")
    missing = [u for u in required if u not in uris]
    if missing:
        raise SignatureInvalid(f"signature does not cover {', '.join(missing)}")
    signer = _signer(key_info, [document, *certificate_documents])
    dsig.check_trust(signer, trusted, at)
    dsig.verify_value(signer, method, dsig.b64decode(value_el.text, "SignatureValue"), canonical)
    for uri, _el, digest_uri, value, data in resolved:
        if not hmac.compare_digest(value, dsig.digest(digest_uri, data, f"reference {uri!r}")):
            raise SignatureInvalid(f"digest mismatch for reference {uri!r} ({len(data)} bytes)")
    return VerifiedOsciSignature(
        signer=signer, references=tuple(SignedReference(u, el, d) for u, el, _m, _v, d in resolved)
    )


# ----------------------------------------------------------------------------- decryption


def _x(name: str) -> str:
    return f"{{{XENC_NS}}}{name}"


def _check_iv_length(encrypted: etree._Element) -> None:
    method = encrypted.find(_x("EncryptionMethod"))
    iv = method.find(f"{{{OSCI12_8_NS}}}IvLength") if method is not None else None
    if iv is not None and iv.get("Value") != str(_GCM_IV):
        raise UnsupportedAlgorithm(f"IV length {iv.get('Value')!r} not supported (12 bytes only)")


def _cipher_octets(encrypted: etree._Element, attachments: Mapping[str, bytes]) -> bytes:
    cipher_data = encrypted.find(_x("CipherData"))
    kids = dsig.children(cipher_data) if cipher_data is not None else []
    if len(kids) != 1:
        raise DecryptionFailed("EncryptedData needs exactly one CipherValue or CipherReference")
    if kids[0].tag == _x("CipherValue"):
        try:
            return binascii.a2b_base64(kids[0].text or "")
        except (binascii.Error, ValueError):
            raise DecryptionFailed("CipherValue is not valid base64") from None
    if kids[0].tag != _x("CipherReference"):
        raise DecryptionFailed(f"unexpected {etree.QName(kids[0]).localname} in CipherData")
    uri = kids[0].get("URI") or ""
    if not uri.startswith("cid:") or uri[4:] not in attachments:
        raise DecryptionFailed(f"CipherReference {uri!r} names no MIME part of the message")
    transforms = kids[0].findall(f"{_x('Transforms')}/{_ds('Transform')}")
    algorithms = [t.get("Algorithm") for t in transforms]
    if algorithms not in ([], [dsig.BASE64]):
        raise UnsupportedAlgorithm(f"CipherReference transforms {algorithms} not supported")
    return attachments[uri[4:]]  # see the module docstring on the base64 transform


def decrypt_osci(
    encrypted: etree._Element,
    private_key: object,
    *,
    attachments: Mapping[str, bytes] | None = None,
) -> bytes:
    """Decrypt an OSCI ``xenc:EncryptedData`` (key in EncryptedKey) with the reader's RSA key."""
    if encrypted.tag != _x("EncryptedData"):
        raise DecryptionFailed(f"expected xenc:EncryptedData, found {etree.QName(encrypted).localname}")
    algorithm = content_algorithm(encrypted)
    _check_iv_length(encrypted)
    key = unwrap_content_key(encrypted, private_key)
    return decrypt_octets(algorithm, key, _cipher_octets(encrypted, attachments or {}))


def decrypt_with_mgmt_data(
    encrypted: etree._Element, *, attachments: Mapping[str, bytes] | None = None
) -> bytes:
    """Decrypt an attachment's EncryptedData whose AES key is in ``ds:KeyInfo/ds:MgmtData``.

    Only for EncryptedData taken from a ContentContainer that was itself decrypted with the
    reader's key: the key travels in the clear inside that container.
    """
    if encrypted.tag != _x("EncryptedData"):
        raise DecryptionFailed(f"expected xenc:EncryptedData, found {etree.QName(encrypted).localname}")
    algorithm = content_algorithm(encrypted)
    _check_iv_length(encrypted)
    mgmt = encrypted.findall(f"{_ds('KeyInfo')}/{_ds('MgmtData')}")
    if len(mgmt) != 1:
        raise DecryptionFailed(f"expected one ds:MgmtData key, found {len(mgmt)}")
    try:
        key = base64.b64decode("".join((mgmt[0].text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionFailed("MgmtData is not valid base64") from None
    if len(key) != content_key_length(algorithm):
        raise DecryptionFailed(f"MgmtData key has {len(key)} bytes, {algorithm} needs "
                               f"{content_key_length(algorithm)}")
    return decrypt_octets(algorithm, key, _cipher_octets(encrypted, attachments or {}))
