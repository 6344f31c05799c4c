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
    sealed = encrypt_jwe(memoryview(b"<antrag>\xc3\xa4</antrag>"), key, cty="application/xml")
    token = sealed.decode("ascii")
    assert token.count(".") == 4 and authentication_tag(sealed) == authentication_tag(token) == token.split(".")[4]
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


# --------------------------------------------------------------------------- x5c: CA flags, usage, path length


def _ca_cert(subject: str, key: Any, issuer: Any, issuer_key: Any, *, ca: bool, path_length: int | None = None,
             usage: str | None = None) -> Any:
    """A certificate with explicit BasicConstraints (path length) and KeyUsage (enc, sig, ca)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True))
    if usage is not None:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=usage == "sig", content_commitment=False, key_encipherment=usage == "enc",
            data_encipherment=False, key_agreement=False, key_cert_sign=usage == "ca", crl_sign=usage == "ca",
            encipher_only=False, decipher_only=False), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def chains(pki: Pki) -> dict[str, Any]:
    """A root with pathLen 0 (only end entities below it) and an intermediate key (2048 bits; the
    4096-bit destination keys come from the session PKI)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = _ca_cert("root pathLen 0", root_key, None, root_key, ca=True, path_length=0, usage="ca")
    sub_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {"root": root, "root_key": root_key, "sub_key": sub_key,
            "sub": _ca_cert("sub-CA", sub_key, root, root_key, ca=True, usage="ca")}


def test_a_leaf_directly_below_a_path_length_0_root_is_accepted(pki: Pki, chains: dict[str, Any]) -> None:
    leaf = _ca_cert("enc", pki.enc_key, chains["root"], chains["root_key"], ca=False, usage="enc")
    assert validate_encryption_key(jwk(pki.enc_key, [leaf], kid=ENC_KID), [chains["root"]]).kid == ENC_KID
    sig = _ca_cert("sig", pki.sig_key, chains["root"], chains["root_key"], ca=False, usage="sig")
    validate_signature_key(jwk(pki.sig_key, [sig], kid="s", alg="PS512", ops=("verify",)), [chains["root"]])


def test_a_ca_certificate_as_the_leaf_is_refused(pki: Pki, chains: dict[str, Any]) -> None:
    ca_leaf = _ca_cert("a CA", pki.enc_key, chains["root"], chains["root_key"], ca=True, path_length=0, usage="ca")
    with pytest.raises(KeyRefused, match="CA certificate") as caught:
        validate_encryption_key(jwk(pki.enc_key, [ca_leaf], kid=ENC_KID), [chains["root"]])
    assert caught.value.reason == "fitconnect_key_x5c"


@pytest.mark.parametrize(("usage", "validate", "alg", "ops"), [
    ("sig", validate_encryption_key, "RSA-OAEP-256", ("wrapKey",)),  # an encryption key needs keyEncipherment
    ("enc", validate_signature_key, "PS512", ("verify",)),  # a signature key needs digitalSignature
])
def test_a_leaf_whose_key_usage_does_not_fit_is_refused(pki: Pki, chains: dict[str, Any], usage: str,
                                                        validate: Any, alg: str, ops: tuple[str, ...]) -> None:
    leaf = _ca_cert("wrong usage", pki.enc_key, chains["root"], chains["root_key"], ca=False, usage=usage)
    with pytest.raises(KeyRefused) as caught:
        validate(jwk(pki.enc_key, [leaf], kid=ENC_KID, alg=alg, ops=ops), [chains["root"]])
    assert caught.value.reason == "fitconnect_key_usage"


def test_an_intermediate_beyond_the_roots_path_length_is_refused(pki: Pki, chains: dict[str, Any]) -> None:
    leaf = _ca_cert("enc", pki.enc_key, chains["sub"], chains["sub_key"], ca=False, usage="enc")
    with pytest.raises(KeyRefused) as caught:
        validate_encryption_key(jwk(pki.enc_key, [leaf, chains["sub"]], kid=ENC_KID), [chains["root"]])
    assert caught.value.reason == "fitconnect_key_untrusted"
    # the same chain with the sub-CA itself trusted is fine: its own path length is unlimited
    validate_encryption_key(jwk(pki.enc_key, [leaf, chains["sub"]], kid=ENC_KID), [chains["sub"]])


def test_an_issuer_in_x5c_that_is_no_ca_is_refused(pki: Pki, chains: dict[str, Any]) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    not_ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    not_ca = _ca_cert("end entity as issuer", not_ca_key, chains["sub"], chains["sub_key"], ca=False)
    leaf = _ca_cert("enc", pki.enc_key, not_ca, not_ca_key, ca=False, usage="enc")
    with pytest.raises(KeyRefused) as caught:
        validate_encryption_key(jwk(pki.enc_key, [leaf, not_ca, chains["sub"]], kid=ENC_KID), [chains["sub"]])
    assert caught.value.reason == "fitconnect_key_untrusted"
