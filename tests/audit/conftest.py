"""Fixtures of the audit trail tests: the job store's databases (SQLite and PostgreSQL, see
tests/store/conftest.py), an audit log on a fake clock, and an attacker's way around the
append-only triggers (:func:`tampering`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Connection, Engine, text

from preread.audit import AuditAction, AuditEvent, AuditLog, Outcome
from preread.audit.chain import Json
from tests.store.conftest import FakeClock, backend, clock, db_url, empty_url, engine, postgres_url

__all__ = ["backend", "clock", "db_url", "empty_url", "engine", "postgres_url"]

STUDY = "1.2.826.0.1.3680043.8.498.1"
OTHER_STUDY = "1.2.826.0.1.3680043.8.498.2"


@pytest.fixture
def audit(engine: Engine, clock: FakeClock) -> AuditLog:
    return AuditLog(engine, clock=clock)


def event(
    action: AuditAction = AuditAction.PIXELS_FETCH,
    *,
    actor: str = "worker-1",
    outcome: Outcome = Outcome.SUCCESS,
    tenant: str | None = "tenant-a",
    purpose: str | None = "clinical-preread",
    study: str | None = STUDY,
    **detail: Json,
) -> AuditEvent:
    """An event with sensible defaults; keyword arguments beyond these become ``detail``."""
    return AuditEvent(
        actor=actor,
        action=action,
        outcome=outcome,
        tenant=tenant,
        purpose=purpose,
        study_instance_uid=study,
        detail=detail or {"job_id": "6f1c1a52-8d0e-4d55-9b3c-3f2a3c1d9e01", "series": 2},
    )


def fill(audit: AuditLog, clock: FakeClock, count: int, step_s: float = 60.0) -> None:
    """``count`` records, ``step_s`` apart."""
    for i in range(count):
        audit.record(event(n=i))
        clock.advance(step_s)


@contextmanager
def tampering(engine: Engine) -> Iterator[Connection]:
    """A transaction in which UPDATE and DELETE on audit_events are not refused, as for an
    attacker with admin rights: PostgreSQL's trigger is disabled (and enabled again before the
    commit: the module's database is shared); SQLite's (a file per test) are dropped."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"))
            yield conn
            conn.execute(text("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only"))
        else:
            conn.execute(text("DROP TRIGGER audit_events_no_update"))
            conn.execute(text("DROP TRIGGER audit_events_no_delete"))
            yield conn
