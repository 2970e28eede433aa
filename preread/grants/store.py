"""Grants in the database (table ``grants``)."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from preread.audit import AuditAction, AuditEvent, AuditLog, Outcome
from preread.audit.chain import Json
from preread.grants.matching import StudyScope, first_covering
from preread.grants.purposes import Purpose
from preread.grants.records import Grant, GrantError, GrantNotFoundError, GrantSpec
from preread.store import changes
from preread.store.database import READ_ONLY
from preread.store.schema import GrantRow
from preread.store.sessions import transaction


def _grant(row: GrantRow) -> Grant:
    return Grant(
        id=row.id,
        spec=GrantSpec(
            tenant=row.tenant,
            purpose=Purpose(row.purpose),
            valid_from=row.valid_from,
            valid_to=row.valid_to,
            legal_basis=row.legal_basis,
            issued_by=row.issued_by,
            sender_aets=tuple(row.sender_aets.split()),
            modalities=tuple(row.modalities.split()),
            study_date_from=row.study_date_from,
            study_date_to=row.study_date_to,
            study_uids=None if row.study_uids is None else tuple(row.study_uids),
        ),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
        revoke_reason=row.revoke_reason,
    )


def _event(grant: Grant, action: AuditAction, actor: str, **extra: Json) -> AuditEvent:
    spec = grant.spec
    return AuditEvent(
        actor=actor,
        action=action,
        outcome=Outcome.SUCCESS,
        tenant=spec.tenant,
        purpose=spec.purpose.value,
        detail={
            "grant_id": grant.id,
            "valid_from": spec.valid_from.isoformat(),
            "valid_to": spec.valid_to.isoformat(),
            "legal_basis": spec.legal_basis,
            "senders": list(spec.sender_aets),
            "modalities": list(spec.modalities),
            "studies": None if spec.study_uids is None else len(spec.study_uids),
            **extra,
        },
    )


class GrantStore:
    def __init__(
        self,
        engine: Engine,
        *,
        audit: AuditLog | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``audit``: where every grant change is recorded, in the change's own transaction
        (a change whose record fails does not happen). Defaults to the trail in ``engine``."""
        self.audit = audit if audit is not None else AuditLog(engine)
        self._writer = sessionmaker(engine, expire_on_commit=False)
        self._subscribers: builtins.list[changes.Subscriber] = []
        changes.install(self._writer, self._subscribers)
        self._reader = sessionmaker(
            engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
        self._clock = clock

    def subscribe(self, callback: changes.Subscriber) -> None:
        """``callback("grants")`` after every commit of this store that changed a grant."""
        self._subscribers.append(callback)

    def create(self, spec: GrantSpec, *, session: Session | None = None) -> Grant:
        """Store a checked grant (:class:`GrantError` naming what is wrong with it)."""
        spec = spec.checked()
        row = GrantRow(
            id=str(uuid.uuid4()),
            tenant=spec.tenant,
            sender_aets=" ".join(spec.sender_aets),
            purpose=spec.purpose.value,
            modalities=" ".join(spec.modalities),
            study_date_from=spec.study_date_from,
            study_date_to=spec.study_date_to,
            study_uids=None if spec.study_uids is None else list(spec.study_uids),
            valid_from=spec.valid_from,
            valid_to=spec.valid_to,
            legal_basis=spec.legal_basis,
            issued_by=spec.issued_by,
            created_at=self._clock(),
            revoked_at=None,
        )
        with self._write(session) as s:
            s.add(row)
            s.flush()
            grant = _grant(row)
            self.audit.record(_event(grant, AuditAction.GRANT_CREATE, spec.issued_by), session=s)
            return grant

    def get(self, grant_id: str) -> Grant:
        with self._read() as s:
            row = s.get(GrantRow, grant_id)
            if row is None:
                raise GrantNotFoundError(f"no grant {grant_id!r}")
            return _grant(row)

    def list(
        self,
        *,
        tenant: str | None = None,
        purpose: Purpose | None = None,
        active_at: datetime | None = None,
    ) -> builtins.list[Grant]:
        """Grants, newest first; ``active_at``: only those valid and not revoked then."""
        stmt = select(GrantRow).order_by(GrantRow.created_at.desc(), GrantRow.id)
        if tenant is not None:
            stmt = stmt.where(GrantRow.tenant == tenant)
        if purpose is not None:
            stmt = stmt.where(GrantRow.purpose == purpose.value)
        if active_at is not None:
            stmt = stmt.where(
                GrantRow.revoked_at.is_(None),
                GrantRow.valid_from <= active_at,
                GrantRow.valid_to > active_at,
            )
        with self._read() as s:
            return [_grant(r) for r in s.scalars(stmt)]

    def revoke(
        self, grant_id: str, *, by: str, reason: str, session: Session | None = None
    ) -> Grant:
        """Revoke a grant from now on (refused for one already revoked)."""
        if not by.strip() or not reason.strip():
            raise GrantError("revoking a grant needs who revokes it and why")
        with self._write(session) as s:
            row = s.get(GrantRow, grant_id, with_for_update=True)
            if row is None:
                raise GrantNotFoundError(f"no grant {grant_id!r}")
            if row.revoked_at is not None:
                raise GrantError(
                    f"grant {grant_id} was already revoked on {row.revoked_at:%Y-%m-%d}"
                )
            row.revoked_at = self._clock()
            row.revoked_by = by
            row.revoke_reason = reason
            s.flush()
            grant = _grant(row)
            self.audit.record(_event(grant, AuditAction.GRANT_REVOKE, by, reason=reason), session=s)
            return grant

    def covering(
        self, study: StudyScope, purpose: Purpose, at: datetime | None = None
    ) -> tuple[Grant | None, str]:
        """A valid grant covering ``purpose`` on ``study``, else None and why none does."""
        moment = at or self._clock()
        grants = self.list(tenant=study.tenant, purpose=purpose, active_at=moment)
        return first_covering(grants, study, purpose, moment)

    def _read(self) -> AbstractContextManager[Session]:
        return transaction(self._reader, "reading grants")

    @contextmanager
    def _write(self, session: Session | None) -> Iterator[Session]:
        if session is not None:
            yield session
            return
        with transaction(self._writer, "writing grants") as own:
            yield own
