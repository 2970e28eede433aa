"""Checking an ID token, as OpenID Connect Core 1.0 §3.1.3.7 asks of a client that got it from
the token endpoint: the signature by a key of the provider's JWKS, with an algorithm both sides
allow (:data:`~preread.oidc.provider.ALGORITHMS`: never ``none``, never HMAC), then ``iss``
(exactly the provider's), ``aud`` (PreRead's client id among them), ``azp`` (PreRead's when
present, and present when there are several audiences), ``exp`` and ``iat`` (against the
injected clock, :data:`LEEWAY_S` of skew allowed), ``sub`` and the ``nonce`` of this sign-in.

PyJWT does the JOSE part (the header, the signature, ``iss``, ``aud``, required claims); the
times are checked here so that tests can move the clock.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from typing import Any

import jwt

from preread.oidc.errors import IdTokenError

LEEWAY_S = 120.0
MAX_TOKEN_LENGTH = 65_536
MAX_SUBJECT = 255  # OpenID Connect Core §2: sub is at most 255 ASCII characters
_REQUIRED = ["iss", "sub", "aud", "exp", "iat"]
_REFUSED = "The identity provider's answer could not be verified: start again."

KeyLookup = Callable[[str | None, str], jwt.PyJWK]
"""(kid, alg) -> the provider's public key (:meth:`OpenIdProvider.signing_key`)."""


def _refuse(reason: str, message: str = _REFUSED) -> IdTokenError:
    return IdTokenError(message, f"oidc: id token: {reason}")


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _refuse(f"{name} is not a number")
    return float(value)


def verify_id_token(
    token: str,
    *,
    keys: KeyLookup,
    algorithms: Sequence[str],
    issuer: str,
    client_id: str,
    nonce: str,
    now: float,
) -> dict[str, Any]:
    """The claims of ``token`` once every check passes (``now``: Unix seconds).

    Raises:
        IdTokenError: the first check that fails, named in its ``reason``.
        ProviderError: the provider's keys cannot be fetched.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise _refuse("too long")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _refuse("not a JWS") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise _refuse(f"algorithm {str(alg)[:20]!r} is not allowed ({', '.join(algorithms)})")
    kid = header.get("kid")
    key = keys(kid if isinstance(kid, str) else None, alg)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[alg],
            audience=client_id,
            issuer=issuer,
            options={
                "require": _REQUIRED,
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise _refuse("bad signature") from None
    except jwt.InvalidIssuerError:
        raise _refuse("iss is not the provider's") from None
    except jwt.InvalidAudienceError:
        raise _refuse("aud is not PreRead's client id") from None
    except jwt.MissingRequiredClaimError as exc:
        raise _refuse(f"no {exc.claim} claim") from None
    except jwt.PyJWTError as exc:
        raise _refuse(f"{type(exc).__name__}: {str(exc)[:80]}") from None
    if _number(claims, "exp") <= now - LEEWAY_S:
        raise _refuse("expired")
    if _number(claims, "iat") > now + LEEWAY_S:
        raise _refuse("issued in the future (iat)")
    if "nbf" in claims and _number(claims, "nbf") > now + LEEWAY_S:
        raise _refuse("not valid yet (nbf)")
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    azp = claims.get("azp")
    if (len(audiences) > 1 and azp is None) or (azp is not None and azp != client_id):
        raise _refuse("azp is not PreRead's client id")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT:
        raise _refuse("sub is not 1-255 characters")
    presented = claims.get("nonce")
    if not isinstance(presented, str) or not hmac.compare_digest(
        presented.encode("utf-8", "surrogateescape"), nonce.encode()
    ):
        raise _refuse("nonce is not this sign-in's")
    return claims
