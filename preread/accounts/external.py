"""Accounts of people who sign in through their hospital's identity provider (OpenID Connect).

Such a person is known by the provider's issuer and subject (``sub``: the provider never
reassigns it, unlike a username or an e-mail address the person may change), linked in table
``oidc_identities`` to an account without a local password. :meth:`ExternalAccounts.sign_in`
makes that account on the first sign-in (``user.create``) and afterwards brings its tenant,
role and display name up to what the provider says (``user.change``, listing what changed; a
changed tenant also ends the account's sessions), each in the transaction of the change. An
account is never linked through its username: an existing local account ``ada`` stays apart
from a provider's ``ada``, whose new account is then named ``ada-<6 hex>``.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from preread.accounts.records import (
    AccountError,
    Role,
    User,
    check_display_name,
    check_username,
)
from preread.accounts.sessions import end_user_sessions
from preread.accounts.store import _event, _user
from preread.audit import AuditAction, AuditLog
from preread.audit.chain import Json
from preread.security.clients import check_tenant
from preread.store.schema import OidcIdentityRow, UserRow
from preread.store.sessions import transaction

_SUFFIX = 6  # hex digits of the identity's hash that set a taken username apart


class AccountDisabledError(AccountError):
    """The account the identity signs in to is disabled (an administrator enables it)."""

    def __init__(self, user: User) -> None:
        super().__init__(f"the PreRead account {user.username!r} is disabled")
        self.user = user


@dataclass(frozen=True)
class ExternalIdentity:
    """A person as the identity provider asserts them in a verified ID token."""

    issuer: str
    subject: str
    tenant: str
    role: Role
    username: str
    """What the new account's username is made from (the username claim; may be empty)."""
    display_name: str

    @property
    def digest(self) -> str:
        """SHA-256 of issuer and subject, hex: a stable, opaque name for the identity."""
        text = f"{self.issuer}\n{self.subject}".encode("utf-8", "surrogateescape")
        return hashlib.sha256(text).hexdigest()


class _Raced(Exception):
    """Another sign-in of the same identity made its account first."""


class ExternalAccounts:
    """The accounts of identities at identity providers (``users`` + ``oidc_identities``)."""

    def __init__(
        self,
        engine: Engine,
        *,
        audit: AuditLog | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``audit``: where every account change is recorded (defaults to ``engine``'s trail)."""
        self.audit = audit if audit is not None else AuditLog(engine)
        self._writer = sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

    def sign_in(self, identity: ExternalIdentity) -> User:
        """The account ``identity`` signs in to: made now on its first sign-in, else brought
        up to date (tenant, role, display name). Starts no session (:func:`preread.ui.sign_in`
        does).

        Raises:
            AccountDisabledError: the account is disabled (nothing is changed).
            AccountError: the identity's tenant is malformed, or no username can be made.
            AuditError: the change could not be recorded (it did not happen).
        """
        try:
            check_tenant(identity.tenant)
        except ValueError as exc:
            raise AccountError(str(exc)) from None
        try:
            return self._sign_in(identity)
        except _Raced:
            return self._sign_in(identity)  # the other sign-in's account, now linked

    def find(self, issuer: str, subject: str) -> User | None:
        """The account linked to ``subject`` at ``issuer``, if any."""
        with self._write() as s:
            link = s.get(OidcIdentityRow, (issuer, subject))
            row = None if link is None else s.get(UserRow, link.user_id)
            return None if row is None else _user(row)

    def _sign_in(self, identity: ExternalIdentity) -> User:
        now = self._clock()
        with self._write() as s:
            link = s.get(OidcIdentityRow, (identity.issuer, identity.subject), with_for_update=True)
            if link is not None:
                row = s.get(UserRow, link.user_id, with_for_update=True)
                assert row is not None  # the link goes with its user (ON DELETE CASCADE)
                if row.disabled_at is not None:
                    raise AccountDisabledError(_user(row))
                link.last_sign_in_at = now
                self._update(s, row, identity, now)
                return _user(row)
            return self._create(s, identity, now)

    def _create(self, s: Session, identity: ExternalIdentity, now: datetime) -> User:
        username = self._free_username(s, identity)
        try:
            shown = check_display_name(identity.display_name)
        except AccountError:
            shown = username
        row = UserRow(
            id=str(uuid.uuid4()),
            tenant=identity.tenant,
            username=username,
            display_name=shown,
            role=identity.role.value,
            password_hash=None,
            disabled_at=None,
            password_changed_at=None,
            created_at=now,
            updated_at=now,
        )
        link = OidcIdentityRow(
            issuer=identity.issuer,
            subject=identity.subject,
            user_id=row.id,
            created_at=now,
            last_sign_in_at=now,
        )
        try:
            s.add(row)
            s.flush()  # the user first: the link refers to it
            s.add(link)
            s.flush()
        except IntegrityError:  # the username or the identity, taken by a sign-in meanwhile
            raise _Raced from None
        user = _user(row)
        self.audit.record(
            _event(
                user,
                AuditAction.USER_CREATE,
                f"user:{user.username}",  # the person, on their first sign-in
                local_password=False,
                identity_provider=identity.issuer,
                subject=identity.subject,
            ),
            session=s,
        )
        return user

    def _update(self, s: Session, row: UserRow, identity: ExternalIdentity, now: datetime) -> None:
        try:
            shown = check_display_name(identity.display_name)
        except AccountError:
            shown = row.display_name
        wanted = {"tenant": identity.tenant, "role": identity.role.value, "display_name": shown}
        changes: dict[str, Json] = {}
        for name, value in wanted.items():
            old = getattr(row, name)
            if old != value:
                changes[name] = [old, value]
                setattr(row, name, value)
        if not changes:
            return
        row.updated_at = now
        extra: dict[str, Json] = {"change": "from the identity provider", "changes": changes}
        if "tenant" in changes:
            extra["sessions_ended"] = end_user_sessions(s, row.id)
        s.flush()
        self.audit.record(
            _event(_user(row), AuditAction.USER_CHANGE, f"user:{row.username}", **extra),
            session=s,
        )

    def _free_username(self, s: Session, identity: ExternalIdentity) -> str:
        """The username claim if it is a valid username and free; else it with the identity's
        hash appended; ``oidc-<hash>`` without a usable claim."""
        suffix = identity.digest[:_SUFFIX]
        try:
            wanted = check_username(identity.username)
        except AccountError:
            wanted = None
        candidates = [f"oidc-{identity.digest[:12]}"]
        if wanted is not None:
            candidates = [wanted, f"{wanted[: 63 - _SUFFIX]}-{suffix}", *candidates]
        for name in candidates:
            if s.scalar(select(UserRow.id).where(UserRow.username == name)) is None:
                return name
        raise AccountError(f"no free username for {identity.username!r}: ask an administrator")

    def _write(self) -> AbstractContextManager[Session]:
        return transaction(self._writer, "writing external accounts")
