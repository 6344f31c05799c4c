"""JOSE for the FIT-Connect sender, on joserfc: JWE for what is uploaded, validation of the keys it
is encrypted for, and verification of the Security Event Tokens of the event log.

A destination's encryption key is used only after ``validate_encryption_key`` accepted it: RSA of
at least 4096 bits, ``alg`` RSA-OAEP-256, ``key_ops`` with wrapKey, an ``x5c`` chain whose first
certificate holds exactly this key and which leads to one of the configured trust anchors, every
certificate within its validity. Signature keys (SETs) get the same checks with PS512 / verify.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwe, jws
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from pydantic import ValidationError

from transport.fitconnect.errors import FitConnectMalformed, KeyRefused
from transport.fitconnect.models import JWK, SetPayload

KEY_ALG = "RSA-OAEP-256"
CONTENT_ENC = "A256GCM"
SET_ALG = "PS512"
SET_TYP = "secevent+jwt"
MIN_KEY_BITS = 4096
_JWE_REGISTRY = jwe.JWERegistry(algorithms=[KEY_ALG, CONTENT_ENC])


@dataclass(frozen=True)
class ValidatedKey:
    """A public key that passed validation: its ``kid``, the joserfc key and when the first
    certificate of its chain expires (a cache must not outlive it)."""

    kid: str
    key: RSAKey
    not_after: _dt.datetime


def encrypt_jwe(plaintext: bytes | memoryview, key: ValidatedKey, *, cty: str | None = None) -> bytes:
    """JWE compact serialization as ASCII bytes: RSA-OAEP-256 + A256GCM, ``kid`` of the key, ``cty``
    if given (joserfc's public ``encrypt_compact``; the adapter seals one part at a time, so a large
    part is held a few times over only while it is sealed and uploaded)."""
    header: dict[str, Any] = {"alg": KEY_ALG, "enc": CONTENT_ENC, "kid": key.kid}
    if cty:
        header["cty"] = cty
    data = plaintext.tobytes() if isinstance(plaintext, memoryview) else plaintext
    try:
        token = jwe.encrypt_compact(header, data, key.key, registry=_JWE_REGISTRY)
    except (JoseError, ValueError) as exc:
        raise KeyRefused(f"key {key.kid}: encryption failed ({type(exc).__name__})",
                         reason="fitconnect_key_type") from None
    return token.encode("ascii")


def authentication_tag(token: str | bytes) -> str:
    """The JWE's authentication tag (5th segment): what ``submit-submission`` events list."""
    if isinstance(token, bytes):
        return token.rsplit(b".", 1)[-1].decode("ascii")
    return token.rsplit(".", 1)[-1]


def validate_encryption_key(jwk: JWK | dict[str, Any], trust_anchors: Sequence[x509.Certificate], *,
                            now: _dt.datetime | None = None) -> ValidatedKey:
    """The destination's encryption key, checked before anything is encrypted for it; ``KeyRefused``
    with a reason slug otherwise."""
    return _validate(jwk, trust_anchors, alg=KEY_ALG, op="wrapKey", usage="key_encipherment", now=now)


def validate_signature_key(jwk: JWK | dict[str, Any], trust_anchors: Sequence[x509.Certificate], *,
                           now: _dt.datetime | None = None) -> ValidatedKey:
    """A destination's SET signing key (``alg`` PS512, ``key_ops`` verify), same chain rules."""
    return _validate(jwk, trust_anchors, alg=SET_ALG, op="verify", usage="digital_signature", now=now)


def public_key(jwk: JWK | dict[str, Any], *, alg: str = SET_ALG) -> RSAKey:
    """An RSA public key of at least 4096 bits with the expected ``alg`` (the delivery service's
    SET keys, fetched over the configured TLS connection); ``KeyRefused`` otherwise."""
    model = _model(jwk)
    _check_shape(model, alg=alg, op=None)
    return _import(model)


def _model(jwk: JWK | dict[str, Any]) -> JWK:
    if isinstance(jwk, JWK):
        return jwk
    try:
        return JWK.model_validate(jwk)
    except ValidationError:
        raise KeyRefused("key is not an RSA JWK with kid, n and e", reason="fitconnect_key_type") from None


def _check_shape(model: JWK, *, alg: str, op: str | None) -> None:
    if model.kty != "RSA":
        raise KeyRefused(f"key {model.kid}: kty {model.kty!r}, not RSA", reason="fitconnect_key_type")
    if model.alg != alg:
        raise KeyRefused(f"key {model.kid}: alg {model.alg!r}, not {alg}", reason="fitconnect_key_alg")
    if op is not None and op not in model.key_ops:
        raise KeyRefused(f"key {model.kid}: key_ops {list(model.key_ops)} lack {op}", reason="fitconnect_key_ops")
    bits = _int(model.n).bit_length()
    if bits < MIN_KEY_BITS:
        raise KeyRefused(f"key {model.kid}: {bits} bits, at least {MIN_KEY_BITS} needed",
                         reason="fitconnect_key_too_small")


def _validate(jwk: JWK | dict[str, Any], anchors: Sequence[x509.Certificate], *, alg: str, op: str,
              usage: str, now: _dt.datetime | None) -> ValidatedKey:
    model = _model(jwk)
    _check_shape(model, alg=alg, op=op)
    if not model.x5c:
        raise KeyRefused(f"key {model.kid}: no x5c certificate chain", reason="fitconnect_key_x5c")
    try:
        chain = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in model.x5c]
    except ValueError:
        raise KeyRefused(f"key {model.kid}: x5c holds no DER certificates", reason="fitconnect_key_x5c") from None
    leaf_key = chain[0].public_key()
    if not (isinstance(leaf_key, rsa.RSAPublicKey)
            and leaf_key.public_numbers() == rsa.RSAPublicNumbers(_int(model.e), _int(model.n))):
        raise KeyRefused(f"key {model.kid}: x5c[0] certifies another key", reason="fitconnect_key_x5c")
    _check_leaf(model.kid, chain[0], usage)
    path = _trusted_path(chain, anchors)
    if path is None:
        raise KeyRefused(f"key {model.kid}: certificate chain does not lead to a trust anchor",
                         reason="fitconnect_key_untrusted")
    moment = now or _dt.datetime.now(_dt.UTC)
    for cert in path:
        if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
            raise KeyRefused(f"key {model.kid}: certificate {cert.subject.rfc4514_string()} is outside its "
                             f"validity ({cert.not_valid_before_utc:%Y-%m-%d}..{cert.not_valid_after_utc:%Y-%m-%d})",
                             reason="fitconnect_key_expired")
    return ValidatedKey(model.kid, _import(model), min(c.not_valid_after_utc for c in path))


def _check_leaf(kid: str, leaf: x509.Certificate, usage: str) -> None:
    """The end-entity certificate is no CA, and its KeyUsage (if it has one) allows ``usage``
    (``key_encipherment`` for an encryption key, ``digital_signature`` for a signature key)."""
    if _is_ca(leaf):
        raise KeyRefused(f"key {kid}: x5c[0] is a CA certificate, not an end entity", reason="fitconnect_key_x5c")
    key_usage = _extension(leaf, x509.KeyUsage)
    if key_usage is not None and not getattr(key_usage, usage):
        raise KeyRefused(f"key {kid}: the certificate's KeyUsage lacks {usage}", reason="fitconnect_key_usage")


def _trusted_path(chain: list[x509.Certificate], anchors: Sequence[x509.Certificate]) -> list[x509.Certificate] | None:
    """``chain`` from x5c[0] up to a trust anchor (included), each certificate issued by the next,
    every issuer a CA whose path length constraint holds; None if it does not get there."""
    path: list[x509.Certificate] = []
    for index, cert in enumerate(chain):
        if index > 0 and not _may_issue(cert, below=index - 1):
            return None
        path.append(cert)
        if cert in anchors:
            return path
        anchor = next((a for a in anchors if _issued_by(cert, a)), None)
        if anchor is not None:
            return [*path, anchor] if _may_issue(anchor, below=len(path) - 1) else None
        if index + 1 < len(chain) and not _issued_by(cert, chain[index + 1]):
            return None
    return None


def _may_issue(cert: x509.Certificate, *, below: int) -> bool:
    """``cert`` is a CA (BasicConstraints ca=True, KeyUsage keyCertSign if it has KeyUsage) whose
    ``pathLenConstraint`` allows ``below`` intermediate CAs between it and the end entity."""
    constraints = _extension(cert, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        return False
    if constraints.path_length is not None and below > constraints.path_length:
        return False
    key_usage = _extension(cert, x509.KeyUsage)
    return key_usage is None or key_usage.key_cert_sign


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject or not _is_ca(issuer):
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    constraints = _extension(cert, x509.BasicConstraints)
    return constraints is not None and constraints.ca


E = TypeVar("E", bound=x509.ExtensionType)


def _extension(cert: x509.Certificate, kind: type[E]) -> E | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:  # duplicate or unparsable extensions
        raise KeyRefused(f"certificate {cert.serial_number:x}: extensions unreadable",
                         reason="fitconnect_key_x5c") from None


def _int(b64url: str) -> int:
    try:
        return int.from_bytes(base64.urlsafe_b64decode(b64url + "=" * (-len(b64url) % 4)), "big")
    except ValueError:
        raise KeyRefused("key: n or e is not base64url", reason="fitconnect_key_type") from None


def _import(model: JWK) -> RSAKey:
    try:
        return RSAKey.import_key({"kty": "RSA", "n": model.n, "e": model.e, "kid": model.kid})
    except (JoseError, ValueError) as exc:
        raise KeyRefused(f"key {model.kid}: cannot be imported ({type(exc).__name__})",
                         reason="fitconnect_key_type") from None


def set_header(token: str) -> dict[str, Any]:
    """The protected header of a compact JWS, unverified (to find its key)."""
    try:
        header = json.loads(base64.urlsafe_b64decode(_pad(token.split(".", 1)[0])))
    except (ValueError, IndexError):
        raise FitConnectMalformed("event log entry is not a JWS", reason="fitconnect_set_invalid") from None
    if not isinstance(header, dict):
        raise FitConnectMalformed("event log entry is not a JWS", reason="fitconnect_set_invalid")
    return header


def unverified_payload(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, unverified: only to find where its key lives (``iss``)."""
    parts = token.split(".")
    try:
        payload = json.loads(base64.urlsafe_b64decode(_pad(parts[1])))
    except (ValueError, IndexError):
        raise FitConnectMalformed("event log entry is not a JWS", reason="fitconnect_set_invalid") from None
    if not isinstance(payload, dict):
        raise FitConnectMalformed("SET payload is not an object", reason="fitconnect_set_invalid")
    return payload


def verify_set(token: str, key_for: Callable[[str, dict[str, Any]], RSAKey | None]) -> SetPayload:
    """Verify a Security Event Token (``typ`` secevent+jwt, ``alg`` PS512, a ``kid`` that ``key_for``
    knows, given the kid and the unverified payload) and parse its payload. An unverifiable SET is
    ``FitConnectMalformed``: the delivery service's fault, retried."""
    header = set_header(token)
    kid = header.get("kid")
    if header.get("typ") != SET_TYP or header.get("alg") != SET_ALG or not isinstance(kid, str) or not kid:
        raise FitConnectMalformed(f"SET header typ={header.get('typ')!r} alg={header.get('alg')!r} refused",
                                  reason="fitconnect_set_invalid")
    key = key_for(kid, unverified_payload(token))
    if key is None:
        raise FitConnectMalformed(f"SET signed with unknown key {kid}", reason="fitconnect_set_key_unknown")
    try:
        obj = jws.deserialize_compact(token, key, algorithms=[SET_ALG])
        return SetPayload.model_validate(json.loads(obj.payload))
    except (JoseError, ValueError, ValidationError) as exc:
        raise FitConnectMalformed(f"SET with key {kid} does not verify or parse ({type(exc).__name__})",
                                  reason="fitconnect_set_invalid") from None


def _pad(segment: str) -> str:
    return segment + "=" * (-len(segment) % 4)
