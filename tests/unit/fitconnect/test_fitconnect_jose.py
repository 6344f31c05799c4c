"""joserfc against jwcrypto: the adapter's JWEs decrypt with jwcrypto, jwcrypto's SETs verify with
``verify_set``; a destination key is refused with a clear reason before it is used."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from jwcrypto import jwe as jc_jwe
from jwcrypto import jwk as jc_jwk

from tests.unit.fitconnect.conftest import ENC_KID, Pki, jwk
from tests.unit.fitconnect.fake_api import set_payload, sign_set
from transport.fitconnect.errors import FitConnectMalformed, KeyRefused
from transport.fitconnect.jose import (
    authentication_tag,
    encrypt_jwe,
    public_key,
    validate_encryption_key,
    validate_signature_key,
    verify_set,
)

SUB, CASE = "5e82c135-a3b7-4eb0-bd83-6df337331170", "c9f0db91-9355-451a-b2a5-7a9be10ce765"


def _private_jwk(pki: Pki) -> jc_jwk.JWK:
    return jc_jwk.JWK.from_pem(pki.enc_key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))


def test_a_jwe_decrypts_with_jwcrypto_and_carries_the_headers(pki: Pki) -> None:
    key = validate_encryption_key(jwk(pki.enc_key, [pki.enc_cert, pki.intermediate], kid=ENC_KID), [pki.root])
    token = encrypt_jwe(b"<antrag>\xc3\xa4</antrag>", key, cty="application/xml")
    assert token.count(".") == 4 and authentication_tag(token) == token.split(".")[4]
    received = jc_jwe.JWE()
    received.deserialize(token, key=_private_jwk(pki))
    assert received.payload == b"<antrag>\xc3\xa4</antrag>"
    header = json.loads(received.objects["protected"])
    assert header == {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": ENC_KID, "cty": "application/xml"}


def test_a_set_signed_by_jwcrypto_verifies(pki: Pki) -> None:
    token = sign_set(pki.sig_key_pem.read_bytes(), "k1", set_payload("accept-submission", SUB, CASE))
    key = public_key(jwk(pki.sig_key, [pki.sig_cert], kid="k1", alg="PS512", ops=("verify",)))
    seen: list[tuple[str, Any]] = []

    def key_for(kid: str, payload: dict[str, Any]) -> Any:
        seen.append((kid, payload["sub"]))
        return key

    payload = verify_set(token, key_for)
    assert payload.event == "accept-submission" and payload.sub == f"submission:{SUB}"
    assert seen == [("k1", f"submission:{SUB}")]


@pytest.mark.parametrize("damage", ["typ", "alg", "signature", "other_key", "unknown_kid", "payload"])
def test_a_set_that_does_not_verify_is_a_malformed_answer(pki: Pki, damage: str) -> None:
    pem = pki.sig_key_pem.read_bytes()
    kwargs = {"typ": "JWT"} if damage == "typ" else {"alg": "PS256"} if damage == "alg" else {}
    token = sign_set(pem, "k1", set_payload("accept-submission", SUB, CASE), **kwargs)
    if damage == "signature":
        head, body, sig = token.split(".")
        token = ".".join((head, body, ("A" if sig[0] != "A" else "B") + sig[1:]))
    if damage == "payload":
        head, _, sig = token.split(".")
        token = f"{head}.eyJub3QiOiJhIHNldCJ9.{sig}"
    signer = pki.enc_key if damage == "other_key" else pki.sig_key
    key = public_key(jwk(signer, [], kid="k1", alg="PS512", ops=("verify",)))
    with pytest.raises(FitConnectMalformed) as caught:
        verify_set(token, lambda kid, _: None if damage == "unknown_kid" else key)
    assert caught.value.transient


def _refusal(pki: Pki, **changes: Any) -> KeyRefused:
    doc = jwk(pki.enc_key, [pki.enc_cert, pki.intermediate], kid=ENC_KID)
    now = changes.pop("now", None)
    doc.update(changes)
    doc = {k: v for k, v in doc.items() if v is not None}
    with pytest.raises(KeyRefused) as caught:
        validate_encryption_key(doc, [pki.root], now=now)
    assert not caught.value.transient
    return caught.value


def test_the_good_key_is_accepted(pki: Pki) -> None:
    key = validate_encryption_key(jwk(pki.enc_key, [pki.enc_cert, pki.intermediate], kid=ENC_KID), [pki.root])
    assert key.kid == ENC_KID and key.not_after == pki.enc_cert.not_valid_after_utc


def test_a_2048_bit_key_is_refused(pki: Pki) -> None:
    doc = jwk(pki.small_key, [pki.small_cert, pki.intermediate], kid=ENC_KID)
    with pytest.raises(KeyRefused) as caught:
        validate_encryption_key(doc, [pki.root])
    assert caught.value.reason == "fitconnect_key_too_small" and "2048 bits" in str(caught.value)


@pytest.mark.parametrize("alg", [None, "RSA-OAEP", "PS512"])
def test_a_missing_or_wrong_alg_is_refused(pki: Pki, alg: str | None) -> None:
    assert _refusal(pki, alg=alg).reason == "fitconnect_key_alg"


def test_key_ops_without_wrap_key_is_refused(pki: Pki) -> None:
    assert _refusal(pki, key_ops=["verify"]).reason == "fitconnect_key_ops"


def test_a_key_without_x5c_is_refused(pki: Pki) -> None:
    assert _refusal(pki, x5c=None).reason == "fitconnect_key_x5c"
    assert _refusal(pki, x5c=[]).reason == "fitconnect_key_x5c"


def test_an_x5c_certifying_another_key_is_refused(pki: Pki) -> None:
    other = jwk(pki.sig_key, [pki.sig_cert, pki.intermediate], kid=ENC_KID)["x5c"]
    assert _refusal(pki, x5c=other).reason == "fitconnect_key_x5c"


def test_an_untrusted_chain_is_refused(pki: Pki) -> None:
    mallory = jwk(pki.enc_key, [pki.mallory_cert, pki.mallory_root], kid=ENC_KID)["x5c"]
    assert _refusal(pki, x5c=mallory).reason == "fitconnect_key_untrusted"
    # the leaf alone, without the intermediate that links it to the anchor
    alone = jwk(pki.enc_key, [pki.enc_cert], kid=ENC_KID)["x5c"]
    assert _refusal(pki, x5c=alone).reason == "fitconnect_key_untrusted"


def test_an_expired_certificate_is_refused(pki: Pki) -> None:
    expired = jwk(pki.enc_key, [pki.expired_cert, pki.intermediate], kid=ENC_KID)["x5c"]
    assert _refusal(pki, x5c=expired).reason == "fitconnect_key_expired"
    # and a valid chain is refused once the anchor itself has expired
    later = pki.root.not_valid_after_utc + dt.timedelta(days=1)
    assert _refusal(pki, now=later).reason == "fitconnect_key_expired"


def test_a_signature_key_needs_ps512_and_verify(pki: Pki) -> None:
    good = jwk(pki.sig_key, [pki.sig_cert, pki.intermediate], kid="s", alg="PS512", ops=("verify",))
    assert validate_signature_key(good, [pki.root]).kid == "s"
    with pytest.raises(KeyRefused, match="alg"):
        validate_signature_key({**good, "alg": "RSA-OAEP-256"}, [pki.root])
