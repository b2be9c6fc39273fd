"""The portal accepts only ID tokens it can fully verify (OIDC Core 3.1.3.7), against a real JWKS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta

import pytest
from joserfc.jwk import ECKey, KeySet, RSAKey

from relying_party_demo.tokens import IdTokenRefused, UnknownSigningKey, verify_id_token
from tests.rp.conftest import CLIENT_ID, ISSUER, TokenFactory


def verify(token: str, jwks: KeySet, now: datetime, **overrides: object) -> dict[str, object]:
    options: dict[str, object] = {
        "issuer": ISSUER,
        "client_id": CLIENT_ID,
        "nonce": "nonce-1",
        "now": now,
    }
    options.update(overrides)
    return verify_id_token(token, jwks, **options)  # type: ignore[arg-type]


def refusal(token: str, jwks: KeySet, now: datetime, **overrides: object) -> str:
    with pytest.raises(IdTokenRefused) as refused:
        verify(token, jwks, now, **overrides)
    return refused.value.reason


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_token_signed_by_the_provider_for_this_portal_passes(
    make_token: TokenFactory, jwks: KeySet, now: datetime
) -> None:
    claims = verify(make_token(students=[{"id": "100234"}]), jwks, now)
    assert claims["sub"] == "account-1" and claims["sid"] == "sid-1"
    assert claims["students"] == [{"id": "100234"}]


def test_es256_tokens_pass_too(make_token: TokenFactory, jwks: KeySet, ec_key: ECKey, now: datetime) -> None:
    assert verify(make_token(key=ec_key), jwks, now)["aud"] == CLIENT_ID


def test_wrong_nonce_is_refused(make_token: TokenFactory, jwks: KeySet, now: datetime) -> None:
    assert refusal(make_token(nonce="someone-elses-sign-in"), jwks, now) == "nonce"


def test_missing_nonce_is_refused(make_token: TokenFactory, jwks: KeySet, now: datetime) -> None:
    assert refusal(make_token(drop=("nonce",)), jwks, now) == "nonce"


def test_wrong_audience_is_refused(make_token: TokenFactory, jwks: KeySet, now: datetime) -> None:
    assert refusal(make_token(aud="another-portal"), jwks, now) == "aud"


def test_an_audience_list_with_other_portals_is_refused(
    make_token: TokenFactory, jwks: KeySet, now: datetime
) -> None:
    # OIDC Core 3.1.3.7 (3): additional audiences the portal does not trust.
    token = make_token(aud=[CLIENT_ID, "another-portal"], azp=CLIENT_ID)
    assert refusal(token, jwks, now) == "aud"


def test_authorized_party_of_another_portal_is_refused(
    make_token: TokenFactory, jwks: KeySet, now: datetime
) -> None:
    assert refusal(make_token(azp="another-portal"), jwks, now) == "azp"


def test_wrong_issuer_is_refused(make_token: TokenFactory, jwks: KeySet, now: datetime) -> None:
    assert refusal(make_token(iss="https://evil.example"), jwks, now) == "iss"


def test_a_signature_by_another_key_under_the_providers_kid_is_refused(
    make_token: TokenFactory, jwks: KeySet, now: datetime
) -> None:
    impostor = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}, private=True)
    assert refusal(make_token(key=impostor), jwks, now) == "signature"


def test_a_changed_payload_breaks_the_signature(
    make_token: TokenFactory, jwks: KeySet, now: datetime
) -> None:
    header, _, signature = make_token().split(".")
    forged = {"iss": ISSUER, "sub": "someone-else", "aud": CLIENT_ID, "nonce": "nonce-1"}
    forged.update(iat=int(now.timestamp()), exp=int(now.timestamp()) + 600)
    token = ".".join([header, b64(json.dumps(forged).encode()), signature])
    assert refusal(token, jwks, now) == "signature"


def test_an_unsigned_token_is_refused(jwks: KeySet, now: datetime) -> None:
    header = b64(json.dumps({"alg": "none", "kid": "rsa-1"}).encode())
    payload = {"iss": ISSUER, "sub": "x", "aud": CLIENT_ID, "nonce": "nonce-1", "exp": 9_999_999_999}
    token = f"{header}.{b64(json.dumps(payload).encode())}."
    assert refusal(token, jwks, now) == "alg"


def test_an_hmac_signed_with_the_public_key_is_refused(jwks: KeySet, rsa_key: RSAKey, now: datetime) -> None:
    # The classic confusion: HS256 keyed with the published RSA key's PEM (built by hand,
    # since joserfc will not even make such a key).
    header = b64(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode())
    claims = {"iss": ISSUER, "sub": "x", "aud": CLIENT_ID, "nonce": "nonce-1"}
    claims.update(iat=int(now.timestamp()), exp=int(now.timestamp()) + 600)
    signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
    mac = hmac.new(rsa_key.as_pem(private=False), signing_input.encode(), hashlib.sha256).digest()
    assert refusal(f"{signing_input}.{b64(mac)}", jwks, now) == "alg"


def test_an_algorithm_off_the_list_is_refused(make_token: TokenFactory, jwks: KeySet, now: datetime) -> None:
    unpinned = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}, private=True)
    assert refusal(make_token(key=unpinned, header={"alg": "PS256"}), jwks, now) == "alg"


def test_expired_token_is_refused(make_token: TokenFactory, jwks: KeySet, now: datetime) -> None:
    token = make_token(exp=int((now - timedelta(minutes=5)).timestamp()))
    assert refusal(token, jwks, now) == "exp"


def test_expiry_within_the_clock_skew_leeway_passes(
    make_token: TokenFactory, jwks: KeySet, now: datetime
) -> None:
    token = make_token(exp=int((now - timedelta(seconds=30)).timestamp()))
    assert verify(token, jwks, now)["sub"] == "account-1"


def test_token_issued_in_the_future_is_refused(make_token: TokenFactory, jwks: KeySet, now: datetime) -> None:
    token = make_token(iat=int((now + timedelta(hours=1)).timestamp()))
    assert refusal(token, jwks, now) == "iat"


@pytest.mark.parametrize("claim", ["sub", "exp", "iat", "iss", "aud"])
def test_a_token_without_a_required_claim_is_refused(
    claim: str, make_token: TokenFactory, jwks: KeySet, now: datetime
) -> None:
    assert refusal(make_token(drop=(claim,)), jwks, now) == claim


def test_a_logout_token_is_not_an_id_token(make_token: TokenFactory, jwks: KeySet, now: datetime) -> None:
    assert refusal(make_token(header={"typ": "logout+jwt"}), jwks, now) == "typ"


def test_at_hash_must_match_the_access_token(make_token: TokenFactory, jwks: KeySet, now: datetime) -> None:
    access_token = "at-123"
    digest = hashlib.sha256(access_token.encode()).digest()
    token = make_token(at_hash=b64(digest[:16]))
    assert verify(token, jwks, now, access_token=access_token)["at_hash"]
    assert refusal(token, jwks, now, access_token="another-access-token") == "at_hash"


def test_an_unknown_key_id_asks_for_the_jwks_again(
    make_token: TokenFactory, jwks: KeySet, now: datetime
) -> None:
    rotated = RSAKey.generate_key(2048, parameters={"kid": "rsa-2"}, private=True)
    with pytest.raises(UnknownSigningKey):
        verify(make_token(key=rotated), jwks, now)


@pytest.mark.parametrize("value", ["", "not-a-jwt", "a.b.c", "x" * 40_000])
def test_junk_is_refused_as_malformed(value: str, jwks: KeySet, now: datetime) -> None:
    assert refusal(value, jwks, now) == "malformed"
