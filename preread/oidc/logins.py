"""Sign-ins in progress at the identity provider (table ``oidc_logins``), server-side: what the
redirect back must match, kept for :data:`LOGIN_TTL_S` and used once.

:meth:`LoginStates.begin` makes a ``state`` (RFC 6749 §10.12), a ``nonce`` (OpenID Connect Core
§3.1.2.1) and a PKCE code verifier (RFC 7636 §4.1; its S256 challenge goes to the provider),
each 32+ random bytes, and records them with the browser's binding token (a random value in an
HttpOnly cookie, :mod:`preread.ui.oidc`) and where the person was going. The table keeps the
SHA-256 of the state and of the binding token, never the values. :meth:`LoginStates.finish`
deletes the row as it reads it (``DELETE … RETURNING``: two callbacks with one state cannot
both have it), then refuses a row past its end or begun in another browser: a callback that
this browser did not start here — a forged one carrying someone else's code, a replayed one —
signs no one in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session, sessionmaker

from preread.oidc.errors import LoginStateError
from preread.store.schema import OidcLoginRow
from preread.store.sessions import transaction

LOGIN_TTL_S = 600.0
"""How long a person may take at the provider (10 min)."""
MAX_STATE = 512
_START_AGAIN = "This sign-in cannot be completed here: start again from PreRead's sign-in page."


def digest(value: str) -> str:
    """SHA-256 of ``value``, hex: how the table keeps states and binding tokens."""
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()


def new_browser_token() -> str:
    """A browser's binding token (its cookie): 32 random bytes, URL-safe base64."""
    return secrets.token_urlsafe(32)


def code_challenge(verifier: str) -> str:
    """The S256 challenge of a PKCE code verifier (RFC 7636 §4.2)."""
    hashed = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(hashed).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class PendingLogin:
    """One sign-in between PreRead's redirect to the provider and the provider's back."""

    state: str = field(repr=False)
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)
    redirect_uri: str
    next_path: str


class LoginStates:
    """The ``oidc_logins`` table."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        ttl_s: float = LOGIN_TTL_S,
    ) -> None:
        self._writer = sessionmaker(engine, expire_on_commit=False)
        self._clock = clock
        self.ttl_s = ttl_s

    def begin(self, browser: str, *, redirect_uri: str, next_path: str) -> PendingLogin:
        """A new sign-in for the browser whose binding token is ``browser`` (sign-ins past
        their end are removed on the way)."""
        pending = PendingLogin(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(48),  # 64 characters: RFC 7636 wants 43-128
            redirect_uri=redirect_uri,
            next_path=next_path,
        )
        now = self._clock()
        with self._write() as s:
            s.execute(delete(OidcLoginRow).where(OidcLoginRow.expires_at <= now))
            s.add(
                OidcLoginRow(
                    state_hash=digest(pending.state),
                    browser_hash=digest(browser),
                    nonce=pending.nonce,
                    code_verifier=pending.code_verifier,
                    redirect_uri=redirect_uri,
                    next_path=next_path,
                    created_at=now,
                    expires_at=now + timedelta(seconds=self.ttl_s),
                )
            )
        return pending

    def finish(self, state: str, browser: str) -> PendingLogin:
        """The sign-in of ``state``, removed now whatever follows.

        Raises:
            LoginStateError: no such sign-in (never begun, used already, removed), past its
                end, or begun in another browser than ``browser``'s.
        """
        if not state or len(state) > MAX_STATE:
            raise LoginStateError(_START_AGAIN, "oidc: callback without a usable state")
        with self._write() as s:
            row = s.scalars(
                delete(OidcLoginRow)
                .where(OidcLoginRow.state_hash == digest(state))
                .returning(OidcLoginRow)
            ).one_or_none()
        if row is None:
            raise LoginStateError(
                "This sign-in link was used already or is not PreRead's: start again from "
                "PreRead's sign-in page.",
                "oidc: unknown or used state",
            )
        if self._clock() >= row.expires_at:
            raise LoginStateError(
                "This sign-in took too long: start again from PreRead's sign-in page.",
                "oidc: state expired",
            )
        if not hmac.compare_digest(row.browser_hash, digest(browser)):
            raise LoginStateError(_START_AGAIN, "oidc: state begun in another browser")
        return PendingLogin(
            state=state,
            nonce=row.nonce,
            code_verifier=row.code_verifier,
            redirect_uri=row.redirect_uri,
            next_path=row.next_path,
        )

    def _write(self) -> AbstractContextManager[Session]:
        return transaction(self._writer, "writing OpenID Connect sign-ins")
