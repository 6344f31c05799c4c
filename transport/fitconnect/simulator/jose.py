"""The JOSE work of the simulator (joserfc): open the sender's JWEs, sign and verify SETs.

Only what FIT-Connect allows passes: JWE ``RSA-OAEP-256`` + ``A256GCM`` under the destination's
``encryptionKid``; SETs as JWS ``PS512`` with ``typ`` ``secevent+jwt``. Every refusal is a
``JoseRefused`` whose message names the rule, never content.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwe, jws
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from hub.errors import ProtocolError

JWE_ALG, JWE_ENC, SET_ALG, SET_TYP = "RSA-OAEP-256", "A256GCM", "PS512", "secevent+jwt"
SET_SCHEMA = "https://schema.fitko.de/fit-connect/set-payload/1.0.0/set-payload.schema.json"
EVENT_PREFIX = "https://schema.fitko.de/fit-connect/events/"
CREATE, SUBMIT = EVENT_PREFIX + "create-submission", EVENT_PREFIX + "submit-submission"
ACCEPT, REJECT = EVENT_PREFIX + "accept-submission", EVENT_PREFIX + "reject-submission"
_JWE_REGISTRY = jwe.JWERegistry(algorithms=[JWE_ALG, JWE_ENC])
# joserfc refuses ciphertexts above 64 KiB by default; a submission's parts reach tens of MB
_JWE_REGISTRY.max_ciphertext_length = 256 * 1024 * 1024
_JWS_REGISTRY = jws.JWSRegistry(algorithms=[SET_ALG])


class JoseRefused(ProtocolError):
    """A JWE or SET the simulator does not accept (answered 422)."""

    reason = "jose_refused"


def _header(token: str, parts: int) -> dict[str, Any]:
    pieces = token.split(".")
    if len(pieces) != parts:
        raise JoseRefused(f"not a compact serialization with {parts} parts")
    try:
        header = json.loads(_b64decode(pieces[0]))
    except ValueError:
        raise JoseRefused("protected header is not base64url JSON") from None
    if not isinstance(header, dict):
        raise JoseRefused("protected header is not a JSON object")
    return header


def decrypt(token: str, key: rsa.RSAPrivateKey, kid: str, what: str) -> bytes:
    """The plaintext of a compact JWE ``what`` (metadata, data, attachment <id>) for this key."""
    header = _header(token, 5)
    if header.get("alg") != JWE_ALG or header.get("enc") != JWE_ENC:
        raise JoseRefused(f"{what}: JWE must use alg {JWE_ALG} and enc {JWE_ENC}")
    if header.get("kid") != kid:
        raise JoseRefused(f"{what}: JWE kid is not the destination's encryptionKid")
    if "zip" in header:
        raise JoseRefused(f"{what}: compressed JWE refused")
    try:
        result = jwe.decrypt_compact(token, RSAKey.import_key(key), registry=_JWE_REGISTRY)
    except (JoseError, ValueError) as exc:
        raise JoseRefused(f"{what}: JWE does not decrypt ({type(exc).__name__})") from None
    return result.plaintext or b""


def authentication_tag(token: str) -> str:
    """The 5th segment of a compact JWE (what ``authenticationTags`` carry)."""
    return token.split(".")[4]


def sign_set(key: rsa.RSAPrivateKey, kid: str, *, issuer: str, submission_id: str, case_id: str,
             event: str, detail: dict[str, Any] | None = None, issued_at: int | None = None) -> str:
    """A Security Event Token (RFC 8417) about one submission, signed PS512."""
    payload = {"$schema": SET_SCHEMA, "jti": str(uuid.uuid4()), "iss": issuer,
               "iat": int(time.time()) if issued_at is None else issued_at,
               "sub": f"submission:{submission_id}", "txn": f"case:{case_id}", "events": {event: detail or {}}}
    header = {"typ": SET_TYP, "alg": SET_ALG, "kid": kid}
    return jws.serialize_compact(header, json.dumps(payload, separators=(",", ":")), RSAKey.import_key(key),
                                 registry=_JWS_REGISTRY)


def unverified_set(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, payload) of a SET without checking its signature: to pick the key to check it with."""
    header = _header(token, 3)
    try:
        payload = json.loads(_b64decode(token.split(".")[1]))
    except ValueError:
        raise JoseRefused("SET payload is not base64url JSON") from None
    if not isinstance(payload, dict):
        raise JoseRefused("SET payload is not a JSON object")
    return header, payload


def verify_set(token: str, key: rsa.RSAPublicKey, kid: str) -> dict[str, Any]:
    """The payload of a SET signed by ``key`` (kid ``kid``), with the FIT-Connect header rules."""
    header, payload = unverified_set(token)
    if header.get("alg") != SET_ALG or header.get("typ") != SET_TYP:
        raise JoseRefused(f"SET must have alg {SET_ALG} and typ {SET_TYP}")
    if header.get("kid") != kid:
        raise JoseRefused("SET kid is not the signer's key id")
    try:
        jws.deserialize_compact(token, RSAKey.import_key(key), registry=_JWS_REGISTRY)
    except (JoseError, ValueError) as exc:
        raise JoseRefused(f"SET signature does not verify ({type(exc).__name__})") from None
    for name in ("jti", "iss", "iat", "sub", "txn", "events"):
        if name not in payload:
            raise JoseRefused(f"SET lacks {name}")
    events = payload["events"]
    if not isinstance(events, dict) or len(events) != 1:
        raise JoseRefused("SET must carry exactly one event")
    return payload


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
