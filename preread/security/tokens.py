"""Short-lived JWT access tokens (RFC 9068 style): ES256, ``kid`` in the header.

Claims: ``iss``, ``aud``, ``sub`` (client id), ``tenant``, ``scope`` (space-separated),
``rl`` (the client's requests per minute), ``purpose`` (of use), ``iat``, ``exp``, ``jti``.
Verification checks the signature with the key named by ``kid``, the issuer, the audience and
the expiry (30 s of leeway for clock skew).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

from preread.security.clients import ApiClient
from preread.security.errors import AuthError
from preread.security.keys import ALGORITHM, KeyRing
from preread.security.principal import Principal

LEEWAY_S = 30
_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str
    purpose: str


class TokenService:
    def __init__(
        self,
        keys: KeyRing,
        *,
        issuer: str,
        audience: str,
        ttl_s: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s
        self._clock = clock
        self._verified: dict[str, tuple[Principal, float, str]] = {}

    def issue(
        self,
        client: ApiClient,
        requested: Iterable[str] | None = None,
        purpose: str | None = None,
    ) -> IssuedToken:
        """A token for ``client`` with the requested scopes (all of the client's when None) and
        purpose of use (the client's first when None).

        Raises :class:`AuthError` naming the scopes or purpose the client does not have.
        """
        declared = purpose or client.purposes[0]
        if declared not in client.purposes:
            raise AuthError(
                f"purpose of use {declared!r} not allowed for this client "
                f"(allowed: {' '.join(client.purposes)})"
            )
        granted = set(client.scopes)
        scopes = granted if requested is None else set(requested)
        missing = scopes - granted
        if missing:
            raise AuthError(f"scope(s) not granted to this client: {' '.join(sorted(missing))}")
        key = self.keys.current()
        now = int(self._clock().timestamp())
        scope = " ".join(sorted(scopes))
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": client.client_id,
            "tenant": client.tenant,
            "scope": scope,
            "rl": client.rate_limit_per_minute,
            "purpose": declared,
            "iat": now,
            "exp": now + self.ttl_s,
            "jti": secrets.token_hex(12),
        }
        token = jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})
        return IssuedToken(access_token=token, expires_in=self.ttl_s, scope=scope, purpose=declared)

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; :class:`AuthError` saying what is wrong otherwise.

        A token verified once is remembered until it expires (a client sends the same token
        for minutes; checking an ES256 signature each time costs more than the rest of a
        request); a remembered token still fails once its key is retired here.
        """
        now = self._clock().timestamp()
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires, kid = cached
            if now <= expires + LEEWAY_S and self.keys.has(kid):
                return principal
            self._verified.pop(token, None)
        principal, expires, kid = self._verify(token)
        if len(self._verified) >= _CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, expires, kid)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("the access token is not a JWT") from None
        if header.get("alg") != ALGORITHM or not isinstance(header.get("kid"), str):
            raise AuthError(f"the access token must be {ALGORITHM} with a key id")
        key = self.keys.get(header["kid"])
        try:
            claims = jwt.decode(
                token,
                key.private_key.public_key(),
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("the access token has expired") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"the access token is not valid: {exc}") from None
        tenant, scope, limit = claims.get("tenant"), claims.get("scope", ""), claims.get("rl")
        if not isinstance(tenant, str) or not tenant or not isinstance(scope, str):
            raise AuthError("the access token has no tenant or scope")
        if not isinstance(limit, int) or limit < 1:
            raise AuthError("the access token has no rate limit")
        declared = claims.get("purpose")
        if not isinstance(declared, str) or not declared:
            raise AuthError("the access token declares no purpose of use")
        principal = Principal(
            client_id=str(claims["sub"]),
            tenant=tenant,
            scopes=frozenset(scope.split()),
            token_id=str(claims.get("jti", "")),
            rate_limit_per_minute=limit,
            purpose=declared,
        )
        return principal, float(claims["exp"]), key.kid
