"""Signing in through a hospital's own identity provider: OpenID Connect 1.0, the
authorization code flow with PKCE (S256), ``state`` and ``nonce``.

* :class:`OidcSignIn` — the flow: :meth:`~OidcSignIn.start` (the provider's authorization URL),
  :meth:`~OidcSignIn.finish` (the code exchanged, the ID token verified, the claims mapped, the
  account made or updated); :meth:`~OidcSignIn.from_settings` reads ``PREREAD_OIDC_*``;
* :class:`OidcConfig`, :class:`ClaimRules` — the provider, PreRead's client at it, and how
  claims give a tenant and a role;
* :class:`OidcError` and its kinds (:mod:`.errors`), each with a message for the person and a
  reason for the audit trail.

The pieces: :mod:`.provider` (discovery, keys, token endpoint over httpx), :mod:`.tokens` (the
ID token's checks, PyJWT), :mod:`.claims` (claims → tenant and role), :mod:`.logins` (sign-ins in
progress, server-side), :class:`preread.accounts.ExternalAccounts` (the accounts, keyed by issuer
and subject). The browser's side is :mod:`preread.ui.oidc`.
"""

from preread.oidc.config import ClaimRules, OidcConfig
from preread.oidc.errors import (
    AccountRefusedError,
    ClaimsError,
    IdTokenError,
    LoginStateError,
    OidcConfigError,
    OidcError,
    ProviderError,
    ProviderRefusedError,
)
from preread.oidc.logins import LOGIN_TTL_S, new_browser_token
from preread.oidc.signin import Callback, OidcSignIn, SignedIn

__all__ = [
    "LOGIN_TTL_S",
    "AccountRefusedError",
    "Callback",
    "ClaimRules",
    "ClaimsError",
    "IdTokenError",
    "LoginStateError",
    "OidcConfig",
    "OidcConfigError",
    "OidcError",
    "OidcSignIn",
    "ProviderError",
    "ProviderRefusedError",
    "SignedIn",
    "new_browser_token",
]
