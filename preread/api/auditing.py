"""Audit records of API accesses, in one place: who (the client), for whom (tenant), why (the
token's purpose of use), which study, what, and how it ended. Nothing is returned to a caller
before its access is recorded (:class:`~preread.audit.batch.AuditWriter` group-commits)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from preread.audit import AuditAction, AuditEvent, Outcome
from preread.audit.chain import Json
from preread.grants import Grant
from preread.results import NotAuthorizedError, authorize
from preread.security import Principal
from preread.store import StudyRecord

if TYPE_CHECKING:
    from preread.api.deps import Services


def access(
    who: Principal,
    action: AuditAction,
    outcome: Outcome,
    study_uid: str | None = None,
    detail: Mapping[str, Json] | None = None,
) -> AuditEvent:
    return AuditEvent(
        actor=f"client:{who.client_id}",
        action=action,
        outcome=outcome,
        tenant=who.tenant,
        purpose=who.purpose,
        study_instance_uid=study_uid,
        detail=dict(detail or {}),
    )


def read(who: Principal, study_uid: str | None, **detail: Json) -> AuditEvent:
    return access(who, AuditAction.REPORT_READ, Outcome.SUCCESS, study_uid, detail)


def refused(who: Principal, study_uid: str | None, reason: str, **detail: Json) -> AuditEvent:
    return access(
        who, AuditAction.ACCESS_REFUSED, Outcome.REFUSED, study_uid, {**detail, "reason": reason}
    )


def auth_failed(client: str | None, reason: str) -> AuditEvent:
    return AuditEvent(
        actor=f"client:{client}" if client else "unauthenticated",
        action=AuditAction.AUTH_FAILED,
        outcome=Outcome.REFUSED,
        detail={"reason": reason},
    )


def authorize_read(services: Services, who: Principal, study: StudyRecord, **detail: Json) -> Grant:
    """The grant that lets ``who`` read ``study`` for its purpose of use, with the read
    recorded (in a worker thread); a refusal is recorded too, then raised (403). An audit
    write that fails raises :class:`~preread.audit.AuditError` (503): nothing is read."""
    uid = study.facts.study_instance_uid
    assert services.grants is not None
    try:
        grant = authorize(services.grants, study, who.purpose)
    except NotAuthorizedError as exc:
        services.auditor.record(refused(who, uid, str(exc), **detail))
        raise
    services.auditor.record(read(who, uid, grant_id=grant.id, **detail))
    return grant


async def aauthorize_read(
    services: Services, who: Principal, study: StudyRecord, **detail: Json
) -> Grant:
    """:func:`authorize_read` on the event loop (grants from memory, audit group-committed)."""
    uid = study.facts.study_instance_uid
    assert services.grants is not None
    try:
        grant = authorize(services.grants, study, who.purpose)
    except NotAuthorizedError as exc:
        await services.auditor.arecord(refused(who, uid, str(exc), **detail))
        raise
    await services.auditor.arecord(read(who, uid, grant_id=grant.id, **detail))
    return grant
