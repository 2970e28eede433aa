"""Server-side browser sessions (table ``user_sessions``).

A session is a random token (32 bytes, URL-safe base64) that the browser holds in a cookie;
the database keeps only its SHA-256 (:func:`token_hash`), so a copy of the table signs no one
in. A session ends

* after ``idle_timeout_s`` without a request (``last_seen_at`` is written at most once a
  minute, :data:`TOUCH_S`, so the idle end may come up to that much later),
* ``lifetime_s`` after it began, however active (``expires_at``),
* when its user signs out (:meth:`SessionStore.end`), is disabled or has their password reset
  (:func:`end_user_sessions`, in the same transaction as the change).

Ended sessions are deleted, not flagged: a token that is not in the table is no session.
Every start is an audited ``user.sign_in`` and every sign-out a ``user.sign_out``, each in the
transaction that starts or ends the session, naming the session by its id (never its token
or the token's hash).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, delete, or_, select
from sqlalchemy.orm import Session, sessionmaker

from preread.accounts.records import AccountError, Reader, Role, UserNotFoundError
from preread.audit import AuditAction, AuditEvent, AuditLog, Outcome
from preread.settings import Settings
from preread.store.database import READ_ONLY
from preread.store.schema import UserRow, UserSessionRow
from preread.store.sessions import transaction

TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 128  # a cookie longer than this is no token of ours: not even hashed
TOUCH_S = 60.0
"""``last_seen_at`` is written when it is older than this (not on every request)."""


def new_token() -> str:
    """A session token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """What the table stores of a session token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True)
class SessionPolicy:
    """How long sessions last (``PREREAD_SESSION_IDLE_TIMEOUT_S``, ``…_LIFETIME_S``)."""

    idle_timeout_s: float = 1800.0
    lifetime_s: float = 43_200.0

    def __post_init__(self) -> None:
        if self.idle_timeout_s <= 0 or self.lifetime_s <= 0:
            raise ValueError("session timeouts must be positive")

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionPolicy:
        return cls(float(settings.session_idle_timeout_s), float(settings.session_lifetime_s))


@dataclass(frozen=True)
class StartedSession:
    """A new session: the token goes into the cookie once, and nowhere else."""

    id: str
    token: str = field(repr=False)
    reader: Reader
    expires_at: datetime


@dataclass(frozen=True)
class ActiveSession:
    """A live session found by its token."""

    id: str
    reader: Reader
    method: str
    created_at: datetime
    expires_at: datetime


def _reader(user: UserRow) -> Reader:
    return Reader(
        user_id=user.id,
        username=user.username,
        display_name=user.display_name,
        tenant=user.tenant,
        role=Role(user.role),
    )


def end_user_sessions(session: Session, user_id: str) -> int:
    """Delete every session of ``user_id`` in the caller's transaction; how many there were."""
    return _count(session.execute(delete(UserSessionRow).where(UserSessionRow.user_id == user_id)))


def _count(result: Result[Any]) -> int:
    """Rows a DELETE removed (its cursor's rowcount)."""
    return int(cast("CursorResult[Any]", result).rowcount)


class SessionStore:
    """The ``user_sessions`` table (in the job store's database)."""

    def __init__(
        self,
        engine: Engine,
        policy: SessionPolicy | None = None,
        *,
        audit: AuditLog | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``audit``: where sign-ins and sign-outs are recorded, in their own transaction.
        Defaults to the trail in ``engine``."""
        self.policy = policy or SessionPolicy()
        self.audit = audit if audit is not None else AuditLog(engine)
        self._writer = sessionmaker(engine, expire_on_commit=False)
        self._reader = sessionmaker(
            engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
        self._clock = clock

    def start(self, user_id: str, *, method: str, source: str | None = None) -> StartedSession:
        """Sign ``user_id`` in: a new session, audited as ``user.sign_in``.

        ``method`` says how the person proved who they are (``password``, ``oidc``: at most 16
        characters); ``source`` is their address (:func:`preread.security.source_key`).
        Sessions past their end are removed on the way.

        Raises:
            UserNotFoundError: no such user.
            AccountError: the user is disabled.
            AuditError: the sign-in could not be recorded (no session was started).
        """
        if not method or len(method) > 16:
            raise ValueError("method: 1-16 characters (password, oidc, …)")
        now = self._clock()
        token = new_token()
        with self._write() as s:
            user = s.get(UserRow, user_id)
            if user is None:
                raise UserNotFoundError(f"no user with id {user_id!r}")
            if user.disabled_at is not None:
                raise AccountError(f"user {user.username!r} is disabled")
            self._purge(s, now)
            row = UserSessionRow(
                id=str(uuid.uuid4()),
                token_hash=token_hash(token),
                user_id=user.id,
                method=method,
                source=source[:64] if source else None,
                created_at=now,
                last_seen_at=now,
                expires_at=now + timedelta(seconds=self.policy.lifetime_s),
            )
            s.add(row)
            s.flush()
            reader = _reader(user)
            self.audit.record(
                _event(reader, AuditAction.USER_SIGN_IN, row, method=method, source=source),
                session=s,
            )
        return StartedSession(row.id, token, reader, row.expires_at)

    def resolve(self, token: str) -> ActiveSession | None:
        """The live session of ``token``; None when there is none (unknown, ended, expired, or
        its user disabled). An expired one is deleted; a live one's ``last_seen_at`` is moved
        on (at most once a :data:`TOUCH_S`)."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        digest = token_hash(token)
        now = self._clock()
        stmt = (
            select(UserSessionRow, UserRow)
            .join(UserRow, UserRow.id == UserSessionRow.user_id)
            .where(UserSessionRow.token_hash == digest)
        )
        with self._read() as s:
            found = s.execute(stmt).one_or_none()
        if found is None:
            return None
        row, user = found
        if self._over(row, now) or user.disabled_at is not None:
            with self._write() as s:
                s.execute(delete(UserSessionRow).where(UserSessionRow.id == row.id))
            return None
        touch_after = min(TOUCH_S, self.policy.idle_timeout_s / 10)
        if (now - row.last_seen_at).total_seconds() >= touch_after:
            with self._write() as s:
                live = s.get(UserSessionRow, row.id)
                if live is None:  # ended meanwhile (sign-out, disable)
                    return None
                live.last_seen_at = max(live.last_seen_at, now)
        return ActiveSession(row.id, _reader(user), row.method, row.created_at, row.expires_at)

    def end(self, token: str, *, source: str | None = None) -> Reader | None:
        """Sign out: delete the session of ``token`` and record ``user.sign_out``; the reader
        it belonged to, or None when it was no live session (nothing recorded then)."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        digest = token_hash(token)
        with self._write() as s:
            found = s.execute(
                select(UserSessionRow, UserRow)
                .join(UserRow, UserRow.id == UserSessionRow.user_id)
                .where(UserSessionRow.token_hash == digest)
            ).one_or_none()
            if found is None:
                return None
            row, user = found
            s.execute(delete(UserSessionRow).where(UserSessionRow.id == row.id))
            if self._over(row, self._clock()):
                return None  # it had ended already: nothing to sign out of
            reader = _reader(user)
            self.audit.record(
                _event(reader, AuditAction.USER_SIGN_OUT, row, source=source), session=s
            )
            return reader

    def end_all(self, user_id: str) -> int:
        """End every session of ``user_id`` (not audited here: the caller's change is)."""
        with self._write() as s:
            return end_user_sessions(s, user_id)

    def count(self, user_id: str) -> int:
        """Sessions of ``user_id`` in the table (live or not yet removed)."""
        with self._read() as s:
            return len(
                s.scalars(select(UserSessionRow.id).where(UserSessionRow.user_id == user_id)).all()
            )

    def purge(self) -> int:
        """Remove the sessions past their end; how many."""
        with self._write() as s:
            return self._purge(s, self._clock())

    def _over(self, row: UserSessionRow, now: datetime) -> bool:
        idle = (now - row.last_seen_at).total_seconds() >= self.policy.idle_timeout_s
        return idle or now >= row.expires_at

    def _purge(self, s: Session, now: datetime) -> int:
        idle_since = now - timedelta(seconds=self.policy.idle_timeout_s)
        return _count(
            s.execute(
                delete(UserSessionRow).where(
                    or_(UserSessionRow.expires_at <= now, UserSessionRow.last_seen_at <= idle_since)
                )
            )
        )

    def _read(self) -> AbstractContextManager[Session]:
        return transaction(self._reader, "reading sessions")

    def _write(self) -> AbstractContextManager[Session]:
        return transaction(self._writer, "writing sessions")


def _event(
    reader: Reader,
    action: AuditAction,
    row: UserSessionRow,
    *,
    source: str | None,
    method: str | None = None,
) -> AuditEvent:
    detail: dict[str, str | None] = {"user_id": reader.user_id, "session_id": row.id}
    if method is not None:
        detail["method"] = method
    detail["source"] = source
    return AuditEvent(
        actor=reader.actor,
        action=action,
        outcome=Outcome.SUCCESS,
        tenant=reader.tenant,
        detail=detail,
    )
