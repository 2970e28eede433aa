"""Accounts in the database (table ``users``), with every change audited in its own transaction.

Administration (``preread users …``): :meth:`AccountStore.create`, :meth:`~AccountStore.disable`,
:meth:`~AccountStore.enable`, :meth:`~AccountStore.set_password`; each writes a ``user.create``
or ``user.change`` audit record in the transaction that makes the change (a change whose
record fails does not happen). Disabling a user and resetting their password end their
sessions in that same transaction. Sign-in: :meth:`AccountStore.authenticate`.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from preread.accounts.passwords import (
    check_password,
    dummy_hash,
    hash_password,
    needs_rehash,
    verify_password,
)
from preread.accounts.records import (
    AccountError,
    Role,
    SignInError,
    User,
    UserExistsError,
    UserNotFoundError,
    check_display_name,
    check_username,
    normalize_username,
)
from preread.accounts.sessions import end_user_sessions
from preread.audit import AuditAction, AuditEvent, AuditLog, Outcome
from preread.audit.chain import Json
from preread.security.clients import check_tenant
from preread.store.database import READ_ONLY
from preread.store.schema import UserRow
from preread.store.sessions import transaction

SIGN_IN_FAILED = "wrong username or password, or the account is disabled"


def _user(row: UserRow) -> User:
    return User(
        id=row.id,
        tenant=row.tenant,
        username=row.username,
        display_name=row.display_name,
        role=Role(row.role),
        has_password=row.password_hash is not None,
        disabled_at=row.disabled_at,
        password_changed_at=row.password_changed_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _event(user: User, action: AuditAction, by: str, **extra: Json) -> AuditEvent:
    return AuditEvent(
        actor=by,
        action=action,
        outcome=Outcome.SUCCESS,
        tenant=user.tenant,
        detail={"user_id": user.id, "username": user.username, "role": user.role.value, **extra},
    )


class SignInFailure(SignInError):
    """:class:`SignInError` with what the audit trail needs: the actor (``user:<name>`` for a
    known account, ``unknown-user`` otherwise: a mistyped password in the username field must
    not land in the trail) and the real reason, which the person is never told."""

    def __init__(self, actor: str, reason: str) -> None:
        super().__init__(SIGN_IN_FAILED)
        self.actor = actor
        self.reason = reason


class AccountStore:
    """The ``users`` table (in the job store's database)."""

    def __init__(
        self,
        engine: Engine,
        *,
        audit: AuditLog | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``audit``: where every change is recorded (defaults to the trail in ``engine``)."""
        self.audit = audit if audit is not None else AuditLog(engine)
        self._writer = sessionmaker(engine, expire_on_commit=False)
        self._reader = sessionmaker(
            engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
        self._clock = clock

    def create(
        self,
        tenant: str,
        username: str,
        role: Role,
        *,
        password: str | None,
        by: str,
        display_name: str | None = None,
    ) -> User:
        """A new user of ``tenant``; ``password`` None makes an account without a local
        password (it signs in only through the identity provider). ``by``: who creates it
        (the audit trail's actor, e.g. ``cli:<login>``).

        Raises:
            AccountError: a bad tenant, username, display name or role;
            UserExistsError: the username is taken (in any tenant);
            PasswordPolicyError: the password is refused.
        """
        try:
            tenant = check_tenant(tenant)
        except ValueError as exc:
            raise AccountError(str(exc)) from None
        name = check_username(username)
        shown = check_display_name(display_name if display_name is not None else name)
        if password is not None:
            check_password(password, name)
        now = self._clock()
        row = UserRow(
            id=str(uuid.uuid4()),
            tenant=tenant,
            username=name,
            display_name=shown,
            role=Role(role).value,
            password_hash=None if password is None else hash_password(password),
            disabled_at=None,
            password_changed_at=None if password is None else now,
            created_at=now,
            updated_at=now,
        )
        with self._write() as s:
            if s.scalar(select(UserRow.id).where(UserRow.username == name)) is not None:
                raise UserExistsError(f"the username {name!r} is taken")
            s.add(row)
            try:
                s.flush()
            except IntegrityError:  # created by someone else meanwhile
                raise UserExistsError(f"the username {name!r} is taken") from None
            user = _user(row)
            self.audit.record(
                _event(user, AuditAction.USER_CREATE, by, local_password=password is not None),
                session=s,
            )
        return user

    def get(self, user_id: str) -> User:
        with self._read() as s:
            row = s.get(UserRow, user_id)
            if row is None:
                raise UserNotFoundError(f"no user with id {user_id!r}")
            return _user(row)

    def by_username(self, username: str) -> User:
        name = normalize_username(username)
        with self._read() as s:
            row = s.scalar(select(UserRow).where(UserRow.username == name))
            if row is None:
                raise UserNotFoundError(f"no user {name!r}")
            return _user(row)

    def list(self, tenant: str | None = None) -> builtins.list[User]:
        """Users, by tenant and username."""
        stmt = select(UserRow).order_by(UserRow.tenant, UserRow.username)
        if tenant is not None:
            stmt = stmt.where(UserRow.tenant == tenant)
        with self._read() as s:
            return [_user(r) for r in s.scalars(stmt)]

    def disable(self, username: str, *, by: str) -> User:
        """Disable a user: no sign-in, and their sessions end now (refused if disabled)."""
        with self._change(username) as (s, row):
            if row.disabled_at is not None:
                raise AccountError(f"user {row.username!r} is already disabled")
            row.disabled_at = row.updated_at = self._clock()
            ended = end_user_sessions(s, row.id)
            self._record(s, row, by, change="disabled", sessions_ended=ended)
            return _user(row)

    def enable(self, username: str, *, by: str) -> User:
        """Enable a disabled user again (refused if enabled)."""
        with self._change(username) as (s, row):
            if row.disabled_at is None:
                raise AccountError(f"user {row.username!r} is not disabled")
            row.disabled_at = None
            row.updated_at = self._clock()
            self._record(s, row, by, change="enabled")
            return _user(row)

    def set_password(self, username: str, password: str, *, by: str) -> User:
        """An administrator's password reset: the new password (policy-checked) replaces the
        old one, and the user's sessions end now."""
        with self._change(username) as (s, row):
            check_password(password, row.username)
            row.password_hash = hash_password(password)
            row.password_changed_at = row.updated_at = self._clock()
            ended = end_user_sessions(s, row.id)
            self._record(s, row, by, change="password reset", sessions_ended=ended)
            return _user(row)

    def authenticate(self, username: str, password: str) -> User:
        """The user whose username and password these are, if enabled.

        Raises:
            SignInFailure: unknown username, wrong password, disabled account, or an account
                without a local password — one message for all, after the same argon2 work
                (an unknown name is checked against a dummy hash).
        """
        name = normalize_username(username)
        with self._read() as s:
            row = s.scalar(select(UserRow).where(UserRow.username == name)) if name else None
            found = None if row is None else (_user(row), row.password_hash)
        stored = found[1] if found is not None and found[1] is not None else None
        matches = verify_password(password, stored or dummy_hash())
        if found is None:
            raise SignInFailure("unknown-user", "unknown username")
        user = found[0]
        if stored is None:
            raise SignInFailure(f"user:{user.username}", "no local password")
        if not matches:
            raise SignInFailure(f"user:{user.username}", "wrong password")
        if user.disabled:
            raise SignInFailure(f"user:{user.username}", "account disabled")
        if needs_rehash(stored):
            self._rehash(user.id, stored, password)
        return user

    def _rehash(self, user_id: str, stored: str, password: str) -> None:
        """Store ``password`` under today's parameters (not if it changed meanwhile)."""
        with self._write() as s:
            row = s.get(UserRow, user_id)
            if row is not None and row.password_hash == stored:
                row.password_hash = hash_password(password)

    def _record(self, s: Session, row: UserRow, by: str, **detail: Json) -> None:
        s.flush()
        self.audit.record(_event(_user(row), AuditAction.USER_CHANGE, by, **detail), session=s)

    @contextmanager
    def _change(self, username: str) -> Iterator[tuple[Session, UserRow]]:
        name = normalize_username(username)
        with self._write() as s:
            row = s.scalar(select(UserRow).where(UserRow.username == name).with_for_update())
            if row is None:
                raise UserNotFoundError(f"no user {name!r}")
            yield s, row

    def _read(self) -> AbstractContextManager[Session]:
        return transaction(self._reader, "reading users")

    def _write(self) -> AbstractContextManager[Session]:
        return transaction(self._writer, "writing users")
