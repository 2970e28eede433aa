"""The OpenID Connect sign-in, end to end, without the browser's HTTP (that is
:mod:`preread.ui.oidc`): :meth:`OidcSignIn.start` gives the provider's authorization URL for a
new sign-in, :meth:`OidcSignIn.finish` turns the provider's redirect back into PreRead's
account, or raises the :class:`~preread.oidc.errors.OidcError` that says why not.

The flow is the authorization code flow of OpenID Connect Core 1.0 §3.1 with PKCE (RFC 7636,
S256) and the authorization response's ``iss`` checked when the provider sends it (RFC 9207).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

import httpx
from sqlalchemy import Engine

from preread.accounts import AccountError, User
from preread.accounts.external import AccountDisabledError, ExternalAccounts, ExternalIdentity
from preread.audit import AuditLog
from preread.oidc.claims import identity_of
from preread.oidc.config import OidcConfig
from preread.oidc.errors import (
    AccountRefusedError,
    LoginStateError,
    OidcError,
    ProviderRefusedError,
)
from preread.oidc.logins import LoginStates, PendingLogin, code_challenge
from preread.oidc.provider import OpenIdProvider
from preread.oidc.tokens import verify_id_token
from preread.settings import Settings

MAX_SHOWN_ERROR = 64


@dataclass(frozen=True)
class Callback:
    """The query of the provider's redirect back (RFC 6749 §4.1.2, §4.1.2.1; RFC 9207)."""

    state: str | None = None
    code: str | None = None
    error: str | None = None
    error_description: str | None = None
    iss: str | None = None


@dataclass(frozen=True)
class SignedIn:
    """A finished sign-in: the account, the person as the provider asserts them, and where
    they were going."""

    user: User
    identity: ExternalIdentity
    next_path: str


class OidcSignIn:
    """Sign-in through one identity provider (thread-safe)."""

    def __init__(
        self,
        config: OidcConfig,
        engine: Engine,
        *,
        audit: AuditLog | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``audit``: where account changes are recorded; ``clock``: now, for the sign-ins'
        ends, the ID token's times and the accounts' records."""
        self.config = config
        self.provider = OpenIdProvider(
            config.issuer,
            name=config.provider_name,
            timeout_s=config.timeout_s,
            transport=transport,
        )
        self.logins = LoginStates(engine, clock=clock)
        self.accounts = ExternalAccounts(engine, audit=audit, clock=clock)
        self._clock = clock

    @classmethod
    def from_settings(
        cls, settings: Settings, engine: Engine, *, audit: AuditLog | None = None
    ) -> OidcSignIn | None:
        """The sign-in the ``PREREAD_OIDC_*`` settings configure; None without an issuer.

        Raises:
            OidcConfigError: the settings are incomplete (fetches nothing yet).
        """
        config = OidcConfig.from_settings(settings)
        return None if config is None else cls(config, engine, audit=audit)

    @property
    def name(self) -> str:
        """The provider as people know it (the sign-in button's "Sign in with …")."""
        return self.config.provider_name

    def start(self, browser: str, *, redirect_uri: str, next_path: str) -> str:
        """A new sign-in for the browser bound by ``browser``: the URL to send it to.

        Raises:
            ProviderError: the provider's discovery document cannot be had.
        """
        meta = self.provider.metadata()
        pending = self.logins.begin(browser, redirect_uri=redirect_uri, next_path=next_path)
        query = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.config.scopes),
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": code_challenge(pending.code_verifier),
            "code_challenge_method": "S256",
        }
        separator = "&" if "?" in meta.authorization_endpoint else "?"
        return f"{meta.authorization_endpoint}{separator}{urlencode(query)}"

    def finish(self, callback: Callback, browser: str) -> SignedIn:
        """The account of the person the provider sent back with ``callback`` to the browser
        bound by ``browser``: its sign-in used up, the code exchanged, the ID token verified,
        the claims mapped, the account made or brought up to date. Starts no session.

        Raises:
            LoginStateError: not a sign-in this browser began here, used, or too old;
            ProviderRefusedError: the provider answered with an error (e.g. the person
                cancelled: ``access_denied``; a used code: ``invalid_grant``);
            ProviderError: the provider cannot be reached or its answer used;
            IdTokenError: the ID token fails a check;
            ClaimsError: no tenant or no PreRead role;
            AccountRefusedError: the account is disabled or cannot be made.
        """
        pending = self.logins.finish(callback.state or "", browser)
        if callback.iss is not None and callback.iss != self.config.issuer:
            raise LoginStateError(
                "The answer came from another identity provider than PreRead's: start again.",
                "oidc: callback iss is not the provider's (RFC 9207)",
            )
        if callback.error is not None:
            raise _provider_error(callback, self.name)
        if not callback.code:
            raise LoginStateError(
                "The identity provider sent no sign-in code: start again.",
                "oidc: callback without a code",
            )
        claims = self._verified_claims(callback.code, pending)
        identity = identity_of(
            claims, self.config.rules, issuer=self.config.issuer, provider=self.name
        )
        try:
            user = self.accounts.sign_in(identity)
        except AccountDisabledError as exc:
            error = AccountRefusedError(
                f"Your PreRead account ({exc.user.username}) is disabled: ask your PreRead "
                "administrator.",
                "oidc: account disabled",
            )
            error.actor = f"user:{exc.user.username}"
            raise error from None
        except AccountError as exc:
            raise AccountRefusedError(
                f"PreRead cannot make your account: {exc}.", f"oidc: account: {exc}"
            ) from None
        return SignedIn(user, identity, pending.next_path)

    def _verified_claims(self, code: str, pending: PendingLogin) -> dict[str, object]:
        token = self.provider.exchange(
            code=code,
            redirect_uri=pending.redirect_uri,
            code_verifier=pending.code_verifier,
            client_id=self.config.client_id,
            client_secret=self.config.client_secret,
        )
        return verify_id_token(
            token,
            keys=self.provider.signing_key,
            algorithms=self.provider.metadata().algorithms,
            issuer=self.config.issuer,
            client_id=self.config.client_id,
            nonce=pending.nonce,
            now=self._clock().timestamp(),
        )


def _provider_error(callback: Callback, provider: str) -> OidcError:
    error = "".join(c for c in callback.error or "" if c.isprintable())[:MAX_SHOWN_ERROR]
    if error == "access_denied":
        message = f"{provider} did not sign you in (access denied, or you cancelled)."
    else:
        message = f"{provider} could not sign you in ({error}): start again."
    return ProviderRefusedError(message, f"oidc: provider answered {error}", error)
