"""People who sign in to PreRead's pages: local accounts, their passwords, their sessions.

* :class:`AccountStore` — users of a tenant (role ``radiologist`` or ``admin``), created,
  listed, disabled, enabled and reset by an administrator (``preread users …``); every change
  audited; :meth:`~AccountStore.authenticate` checks a password (argon2id, :mod:`.passwords`);
* :class:`SessionStore` — server-side browser sessions: a random token in the cookie, only its
  SHA-256 stored, idle and absolute ends; :meth:`~SessionStore.start` signs a user in (the
  password form and the OpenID Connect callback both end there);
* :class:`Reader` — the signed-in person of a request, as pages and audit records see them;
* :class:`ExternalAccounts` — accounts of people who sign in through their hospital's identity
  provider (OpenID Connect, :mod:`preread.oidc`), keyed by issuer and subject.

The browser side (cookies, CSRF, the sign-in page) is :mod:`preread.ui`.
"""

from preread.accounts.external import AccountDisabledError, ExternalAccounts, ExternalIdentity
from preread.accounts.passwords import check_password, new_password
from preread.accounts.records import (
    AccountError,
    PasswordPolicyError,
    Reader,
    Role,
    SignInError,
    User,
    UserExistsError,
    UserNotFoundError,
    role,
)
from preread.accounts.sessions import ActiveSession, SessionPolicy, SessionStore, StartedSession
from preread.accounts.store import AccountStore, SignInFailure

__all__ = [
    "AccountDisabledError",
    "AccountError",
    "AccountStore",
    "ActiveSession",
    "ExternalAccounts",
    "ExternalIdentity",
    "PasswordPolicyError",
    "Reader",
    "Role",
    "SessionPolicy",
    "SessionStore",
    "SignInError",
    "SignInFailure",
    "StartedSession",
    "User",
    "UserExistsError",
    "UserNotFoundError",
    "check_password",
    "new_password",
    "role",
]
