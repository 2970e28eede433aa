"""OAuth2 client credentials, tokens, scopes, revocation, rate and size limits."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from fastapi.testclient import TestClient

from preread.security import ClientStore, FailureThrottle, TokenService, source_key
from preread.security.passwords import verify_secret
from tests.api.conftest import Api


def _form(client_id: str, secret: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": secret,
        **extra,
    }


def test_token_by_form_and_by_basic_auth(api: Api) -> None:
    client, secret = api.clients.create("hosp-a", "ris", ["reports:read", "models:read"], 60)
    by_form = api.client.post("/oauth/token", data=_form(client.client_id, secret))
    assert by_form.status_code == 200
    body = by_form.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert body["scope"] == "models:read reports:read"
    assert by_form.headers["cache-control"] == "no-store"
    basic = base64.b64encode(f"{client.client_id}:{secret}".encode()).decode()
    by_basic = api.client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "reports:read"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert by_basic.status_code == 200 and by_basic.json()["scope"] == "reports:read"
    claims = jwt.decode(
        by_basic.json()["access_token"],
        options={"verify_signature": False},
    )
    assert claims["tenant"] == "hosp-a" and claims["sub"] == client.client_id
    assert claims["exp"] - claims["iat"] == 300
    header = jwt.get_unverified_header(by_basic.json()["access_token"])
    assert header["alg"] == "ES256"
    jwks = api.client.get("/oauth/jwks.json").json()
    assert header["kid"] in [k["kid"] for k in jwks["keys"]]
    assert all("d" not in k for k in jwks["keys"])  # public keys only


def test_token_errors_follow_rfc_6749(api: Api) -> None:
    client, secret = api.clients.create("hosp-a", "ris", ["reports:read"], 60)
    wrong = api.client.post("/oauth/token", data=_form(client.client_id, secret + "x"))
    unknown = api.client.post("/oauth/token", data=_form("prc_nobody", secret))
    for answer in (wrong, unknown):
        assert answer.status_code == 401
        assert answer.json()["error"] == "invalid_client"
        assert answer.headers["www-authenticate"].startswith("Basic")
    assert wrong.json() == unknown.json()  # no hint which part was wrong
    grant = api.client.post(
        "/oauth/token", data={**_form(client.client_id, secret), "grant_type": "password"}
    )
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"
    scope = api.client.post(
        "/oauth/token", data=_form(client.client_id, secret, scope="reports:read admin")
    )
    assert scope.status_code == 400 and scope.json()["error"] == "invalid_scope"
    assert "admin" in scope.json()["error_description"]
    missing = api.client.post("/oauth/token", data={"grant_type": "client_credentials"})
    assert missing.status_code == 401


def test_routes_need_a_valid_token_with_the_right_scope(api: Api) -> None:
    assert api.client.get("/api/v1/studies").status_code == 401
    bad = api.client.get("/api/v1/studies", headers={"Authorization": "Bearer not-a-jwt"})
    assert bad.status_code == 401 and "invalid_token" in bad.headers["www-authenticate"]
    basic = api.client.get("/api/v1/studies", headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401
    models_only = api.token("hosp-a", "models:read")
    assert api.client.get("/api/v1/models", headers=models_only).status_code == 200
    forbidden = api.client.get("/api/v1/studies", headers=models_only)
    assert forbidden.status_code == 403
    assert 'scope="reports:read"' in forbidden.headers["www-authenticate"]
    admin = api.token("hosp-a", "admin")
    for path in ("/api/v1/studies", "/api/v1/models", "/api/v1/webhooks"):
        assert api.client.get(path, headers=admin).status_code == 200, path


def test_expired_foreign_and_tampered_tokens_are_refused(api: Api) -> None:
    client, _ = api.clients.create("hosp-a", "ris", ["reports:read"], 60)
    past = TokenService(
        api.tokens.keys,
        issuer="preread",
        audience="preread-api",
        ttl_s=60,
        clock=lambda: datetime.now(UTC) - timedelta(hours=1),
    ).issue(client)
    expired = api.client.get(
        "/api/v1/studies", headers={"Authorization": f"Bearer {past.access_token}"}
    )
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    other_audience = TokenService(
        api.tokens.keys, issuer="preread", audience="someone-else", ttl_s=60
    ).issue(client)
    answer = api.client.get(
        "/api/v1/studies", headers={"Authorization": f"Bearer {other_audience.access_token}"}
    )
    assert answer.status_code == 401
    good = api.tokens.issue(client).access_token
    head, _, signature = good.split(".")
    claims = jwt.decode(good, options={"verify_signature": False})
    claims["tenant"] = "hosp-b"
    forged_payload = base64.urlsafe_b64encode(
        jwt.api_jws.json.dumps(claims).encode()  # type: ignore[attr-defined]
    ).rstrip(b"=")
    forged = f"{head}.{forged_payload.decode()}.{signature}"
    answer = api.client.get("/api/v1/studies", headers={"Authorization": f"Bearer {forged}"})
    assert answer.status_code == 401


def test_key_rotation_keeps_old_tokens_valid_until_retired(api: Api) -> None:
    headers = api.token("hosp-a")
    old = api.tokens.keys.current().kid
    new = api.tokens.keys.rotate().kid
    assert new != old
    assert api.client.get("/api/v1/studies", headers=headers).status_code == 200
    fresh = api.token("hosp-a")
    kid = jwt.get_unverified_header(fresh["Authorization"].split()[1])["kid"]
    assert kid == new
    api.tokens.keys.retire(old)
    assert api.client.get("/api/v1/studies", headers=headers).status_code == 401
    assert api.client.get("/api/v1/studies", headers=fresh).status_code == 200


def test_revoked_client_is_refused(api: Api) -> None:
    client, secret = api.clients.create("hosp-a", "ris", ["reports:read"], 60)
    token = api.client.post("/oauth/token", data=_form(client.client_id, secret)).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert api.client.get("/api/v1/studies", headers=headers).status_code == 200
    api.clients.revoke(client.client_id)
    assert api.client.get("/api/v1/studies", headers=headers).status_code == 401
    again = api.client.post("/oauth/token", data=_form(client.client_id, secret))
    assert again.status_code == 401


def test_rate_limit_per_client(api: Api) -> None:
    slow = api.token("hosp-a", rate_limit=3)
    other = api.token("hosp-a", rate_limit=3)
    codes = [api.client.get("/api/v1/studies", headers=slow).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = api.client.get("/api/v1/studies", headers=slow)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert api.client.get("/api/v1/studies", headers=other).status_code == 200


def test_request_body_size_limit(api: Api) -> None:
    headers = api.token("hosp-a", "webhooks:manage")
    big = {"url": "https://example.org/hook", "description": "x" * 2_000_000}
    answer = api.client.post("/api/v1/webhooks", json=big, headers=headers)
    assert answer.status_code == 413
    assert "exceeds" in answer.json()["detail"]


# --- lockout and CPU load through /oauth/token (issue 12, finding 4) ----------------------------


class CountingVerifier:
    """The real :func:`verify_secret`, counting its (scrypt) calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, secret: str, stored: str) -> bool:
        self.calls += 1
        return verify_secret(secret, stored)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # in memory: one backend suffices
def test_failed_guesses_never_lock_the_client_out_and_cost_no_scrypt_once_limited(
    api: Api,
) -> None:
    verify = CountingVerifier()
    api.services.clients = ClientStore(api.store.engine, verify=verify)
    api.services.token_failures = FailureThrottle(per_client_and_source=3, per_source=6)
    client, secret = api.services.clients.create("hosp-a", "ris", ["reports:read"], 60)
    attacker = TestClient(api.client.app, client=("198.51.100.7", 40000))
    hospital = TestClient(api.client.app, client=("203.0.113.20", 40001))

    guesses = [
        attacker.post("/oauth/token", data=_form(client.client_id, f"guess-{i}")).status_code
        for i in range(70)
    ]
    assert guesses == [401] * 3 + [429] * 67
    assert verify.calls == 3  # the 67 refused guesses hashed nothing
    refused = attacker.post("/oauth/token", data=_form(client.client_id, "guess-x"))
    assert refused.json()["error"] == "slow_down" and int(refused.headers["retry-after"]) >= 1

    # the client itself, from its own address: never refused because of the attacker
    assert hospital.post("/oauth/token", data=_form(client.client_id, secret)).status_code == 200
    assert api.client.post("/oauth/token", data=_form(client.client_id, secret)).status_code == 200

    # unknown client ids from the attacker: each costs a hash until the source's own limit,
    # then 429 without hashing, whichever id
    unknown = [
        attacker.post("/oauth/token", data=_form(f"prc_{i:016x}", secret)).status_code
        for i in range(20)
    ]
    assert unknown == [401] * 3 + [429] * 17
    assert verify.calls == 3 + 2 + 3  # 2: the client's own successes
    # … including the right secret from the attacker's address (it could not know it is right)
    assert attacker.post("/oauth/token", data=_form(client.client_id, secret)).status_code == 429
    assert verify.calls == 8


def test_failure_counts_drain_and_a_success_clears_its_own() -> None:
    now = [0.0]
    throttle = FailureThrottle(
        per_client_and_source=2, per_source=3, window_s=60, clock=lambda: now[0]
    )
    attacker, other = "198.51.100.7", "203.0.113.20"
    throttle.failed("prc_a", attacker)
    throttle.failed("prc_a", attacker)
    assert throttle.wait("prc_a", attacker) == pytest.approx(30.0)  # 2 per 60 s: one in 30 s
    assert throttle.wait("prc_b", attacker) == 0.0  # the source has one failure left
    assert throttle.wait("prc_a", other) == 0.0  # another source: untouched
    now[0] = 15.0
    assert throttle.wait("prc_a", attacker) == pytest.approx(15.0)  # draining
    throttle.succeeded("prc_a", attacker)
    assert throttle.wait("prc_a", attacker) == 0.0  # its own count cleared …
    throttle.failed("prc_b", attacker)
    assert throttle.wait("prc_z", attacker) == pytest.approx(5.0)  # … not the source's
    # IPv6 sources count per /64; an IPv4-mapped address as its IPv4 address
    assert source_key("2001:db8:1:2:aaaa::1") == source_key("2001:db8:1:2:bbbb::9")
    assert source_key("::ffff:198.51.100.7") == "198.51.100.7"
    assert source_key(None) == "unknown"
