"""Audit records of API accesses, in one place: who (the client), for whom (tenant), why (the
token's purpose of use), which study, what, and how it ended. Nothing is returned to a caller
before its access is recorded (:class:`~preread.audit.batch.AuditWriter` group-commits); the
records of study accesses are written by the enforcement point, :mod:`preread.api.access`, and
those of failed authentications (bearer tokens, ``/oauth/token`` requests), aggregated per
source, actor and window, by :mod:`preread.api.unauthenticated`."""

from __future__ import annotations

from collections.abc import Mapping

from preread.audit import AuditAction, AuditEvent, Outcome
from preread.audit.chain import Json
from preread.security import Principal


def access(
    who: Principal,
    action: AuditAction,
    outcome: Outcome,
    study_uid: str | None = None,
    detail: Mapping[str, Json] | None = None,
) -> AuditEvent:
    return AuditEvent(
        actor=who.actor,
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
