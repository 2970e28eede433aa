"""The ID token's checks (OpenID Connect Core §3.1.3.7) on real tokens of the real provider —
issued to PreRead, to another client, by another issuer that shares the signing key — and on
tokens an attacker makes: ``alg: none``, HMAC keyed with the provider's public key, a changed
payload, an unknown key id, several audiences without PreRead as ``azp``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from preread.oidc import IdTokenError
from preread.oidc.logins import code_challenge
from preread.oidc.provider import OpenIdProvider
from preread.oidc.tokens import LEEWAY_S, verify_id_token
from tests.oidc.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    OTHER_CLIENT_ID,
    OTHER_REDIRECT_URI,
    REDIRECT_URI,
    Provider,
    at_provider,
)

NONCE = "the-nonce-of-this-sign-in-0123456789abcdef"


def id_token_from(issuer: str, client_id: str, redirect_uri: str, nonce: str = NONCE) -> str:
    """An ID token for ``ada``, the code flow run against ``issuer`` as ``client_id``."""
    meta = httpx.get(f"{issuer}/.well-known/openid-configuration").json()
    verifier = secrets.token_urlsafe(48)
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid profile",
        "state": secrets.token_urlsafe(16),
        "nonce": nonce,
        "code_challenge": code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    back = at_provider(f"{meta['authorization_endpoint']}?{urlencode(query)}", "ada")
    code = parse_qs(urlsplit(back).query)["code"][0]
    answer = httpx.post(
        meta["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
        auth=(client_id, CLIENT_SECRET),
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["id_token"]
    return token


@pytest.fixture(scope="module")
def ours(provider: Provider) -> str:
    """A real ID token of the main provider, issued to PreRead."""
    return id_token_from(provider.issuer, CLIENT_ID, REDIRECT_URI)


@pytest.fixture(scope="module")
def keys(provider: Provider) -> OpenIdProvider:
    return OpenIdProvider(provider.issuer, name="St Elsewhere SSO")


def _verify(token: str, provider: OpenIdProvider, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "keys": provider.signing_key,
        "algorithms": provider.metadata().algorithms,
        "issuer": provider.issuer,
        "client_id": CLIENT_ID,
        "nonce": NONCE,
        "now": time.time(),
        **changes,
    }
    return verify_id_token(token, **values)


def _refused(token: str, provider: OpenIdProvider, **changes: Any) -> str:
    with pytest.raises(IdTokenError) as refused:
        _verify(token, provider, **changes)
    assert "could not be verified" in str(refused.value)
    return refused.value.reason


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    pad = "=" * (-len(payload) % 4)
    decoded = json.loads(base64.urlsafe_b64decode(payload + pad))
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))), decoded


def test_a_real_id_token_passes_every_check(ours: str, keys: OpenIdProvider) -> None:
    assert keys.metadata().algorithms[0] == "RS256"
    claims = _verify(ours, keys)
    assert claims["sub"] == "ada" and claims["aud"] == CLIENT_ID
    assert claims["hospital"] == "St Elsewhere" and claims["groups"] == ["staff", "radiology"]


def test_tokens_for_another_client_or_from_another_issuer_are_refused(
    provider: Provider, ours: str, keys: OpenIdProvider
) -> None:
    foreign = id_token_from(provider.issuer, OTHER_CLIENT_ID, OTHER_REDIRECT_URI)
    assert _refused(foreign, keys) == "oidc: id token: aud is not PreRead's client id"
    # another issuer with the same key: the signature holds, the issuer does not
    elsewhere = id_token_from(provider.issuers["other"], CLIENT_ID, REDIRECT_URI)
    assert _unsigned(elsewhere)[0]["kid"] == _unsigned(ours)[0]["kid"]
    assert _refused(elsewhere, keys) == "oidc: id token: iss is not the provider's"


def test_another_nonce_or_times_out_of_bounds_are_refused(ours: str, keys: OpenIdProvider) -> None:
    assert _refused(ours, keys, nonce="another") == "oidc: id token: nonce is not this sign-in's"
    _, claims = _unsigned(ours)
    assert _verify(ours, keys, now=claims["exp"] + LEEWAY_S - 1)["sub"] == "ada"  # skew
    assert _refused(ours, keys, now=claims["exp"] + LEEWAY_S) == "oidc: id token: expired"
    future = _refused(ours, keys, now=claims["iat"] - LEEWAY_S - 1)
    assert future == "oidc: id token: issued in the future (iat)"


def test_alg_none_hmac_and_a_changed_payload_are_refused(ours: str, keys: OpenIdProvider) -> None:
    header, claims = _unsigned(ours)
    body = _b64(json.dumps({**claims, "groups": ["pacs-admins"]}).encode())
    none = f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{body}."
    assert _refused(none, keys) == "oidc: id token: algorithm 'none' is not allowed (RS256)"
    # HS256 keyed with the provider's public key (which anyone can fetch)
    public = keys.signing_key(header["kid"], "RS256").key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{_b64(json.dumps({**header, 'alg': 'HS256'}).encode())}.{body}"
    mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    assert "algorithm 'HS256' is not allowed" in _refused(f"{signing_input}.{_b64(mac)}", keys)
    signature = ours.split(".")[2]
    changed = f"{ours.split('.')[0]}.{body}.{signature}"
    assert _refused(changed, keys) == "oidc: id token: bad signature"


def test_an_unknown_key_or_several_audiences_without_preread_as_azp_are_refused(
    ours: str, keys: OpenIdProvider
) -> None:
    own = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _, claims = _unsigned(ours)
    unknown = jwt.encode(claims, own, algorithm="RS256", headers={"kid": "not-the-providers"})
    assert _refused(unknown, keys) == "oidc: id token: no key of the provider matches its kid"

    # the same checks with a key of the test's own (the provider issues no such tokens)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(own.public_key()))
    mine = jwt.PyJWK({**jwk, "kid": "mine"}, algorithm="RS256")

    def lookup(kid: str | None, alg: str) -> jwt.PyJWK:
        return mine

    def token(**changes: Any) -> str:
        return jwt.encode({**claims, **changes}, own, algorithm="RS256", headers={"kid": "mine"})

    several = [CLIENT_ID, "another-api"]
    assert _verify(token(aud=several, azp=CLIENT_ID), keys, keys=lookup)["sub"] == "ada"
    reason = "oidc: id token: azp is not PreRead's client id"
    assert _refused(token(aud=several), keys, keys=lookup) == reason
    assert _refused(token(azp=OTHER_CLIENT_ID), keys, keys=lookup) == reason
    assert (
        _refused(token(sub=""), keys, keys=lookup) == "oidc: id token: sub is not 1-255 characters"
    )
    without = {k: v for k, v in claims.items() if k != "iat"}
    bare = jwt.encode(without, own, algorithm="RS256", headers={"kid": "mine"})
    assert _refused(bare, keys, keys=lookup) == "oidc: id token: no iat claim"
