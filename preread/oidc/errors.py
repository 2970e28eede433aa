"""What can stop an OpenID Connect sign-in. Each error carries two texts: its message, which
the person is shown (what happened and what to do), and :attr:`OidcError.reason`, which the
audit trail records (what exactly failed). Neither ever holds a code, a token or a secret.

PrereadError
└── OidcError                 (the sign-in cannot go on)
    ├── OidcConfigError       (the PREREAD_OIDC_* settings are incomplete: the app refuses to start)
    ├── ProviderError         (the provider cannot be reached, or its discovery document, keys
    │                          or token response are unusable)
    ├── ProviderRefusedError  (the provider answered with an error: access_denied,
    │                          invalid_grant for a used or foreign code, …)
    ├── LoginStateError       (the callback's ``state``: missing, unknown, used already, expired,
    │                          or from another browser)
    ├── IdTokenError          (the ID token fails a check: alg, signature, iss, aud, azp, exp,
    │                          iat, nonce)
    ├── ClaimsError           (the claims name no tenant or no PreRead role)
    └── AccountRefusedError   (the person's account is disabled, or cannot be made)
"""

from __future__ import annotations

from preread.errors import PrereadError


class OidcError(PrereadError):
    """An OpenID Connect sign-in cannot go on; ``str(error)`` is for the person, ``reason``
    for the audit trail (both free of codes, tokens and secrets)."""

    actor = "unknown-user"
    """Who the audit trail names: ``user:<username>`` once the account is known."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason if reason is not None else message


class OidcConfigError(OidcError):
    """The ``PREREAD_OIDC_*`` settings are incomplete or contradictory."""


class ProviderError(OidcError):
    """The identity provider cannot be reached or its answer cannot be used."""


class ProviderRefusedError(OidcError):
    """The identity provider answered with an OAuth error (``access_denied``,
    ``invalid_grant``, …)."""

    def __init__(self, message: str, reason: str, error: str) -> None:
        super().__init__(message, reason)
        self.error = error


class LoginStateError(OidcError):
    """The callback does not belong to a sign-in this browser started here (or it is used or
    expired)."""


class IdTokenError(OidcError):
    """The ID token fails one of the checks of OpenID Connect Core 1.0 §3.1.3.7."""


class ClaimsError(OidcError):
    """The ID token's claims do not give the person a tenant or a PreRead role."""


class AccountRefusedError(OidcError):
    """The person's PreRead account is disabled, or cannot be made."""
