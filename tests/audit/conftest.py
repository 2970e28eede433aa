"""Fixtures of the audit trail tests: the job store's databases (SQLite and PostgreSQL, see
tests/store/conftest.py), an audit log on a fake clock, and an attacker's way around the
append-only triggers (:func:`tampering`) and the unkeyed chain (:func:`rechain`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Connection, Engine, select, text, update

from preread.audit import GENESIS, AuditAction, AuditEvent, AuditLog, Outcome
from preread.audit.chain import Fields, Json, link_hash
from preread.store.schema import AuditEventRow
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
    """A transaction in which the audit tables' triggers do not fire, as for an attacker with
    admin rights: on PostgreSQL a superuser's ``session_replication_role = replica`` (for this
    transaction only: the module's database is shared); SQLite's triggers (a file per test) are
    dropped."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            triggers = conn.execute(
                text(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger'"
                    " AND tbl_name IN ('audit_events', 'audit_anchor')"
                )
            ).scalars()
            for name in list(triggers):
                conn.execute(text(f'DROP TRIGGER "{name}"'))
        yield conn


def rechain(conn: Connection) -> int:
    """Recompute every stored record's ``prev_hash`` and ``hash`` from the anchor, as an
    attacker who rewrote records can (SHA-256 has no key); inside :func:`tampering`. Returns
    how many records were re-hashed."""
    anchor = conn.execute(text("SELECT after_hash FROM audit_anchor WHERE id = 1")).scalar()
    prev = anchor or GENESIS
    r = AuditEventRow
    columns = (r.seq, r.at, r.actor, r.action, r.outcome, r.tenant, r.purpose)
    rows = conn.execute(select(*columns, r.study_instance_uid, r.detail).order_by(r.seq)).all()
    for row in rows:
        fields = Fields(
            row.at,
            row.actor,
            row.action,
            row.outcome,
            row.tenant,
            row.purpose,
            row.study_instance_uid,
            row.detail,
        )
        digest = link_hash(prev, row.seq, fields)
        conn.execute(update(r).where(r.seq == row.seq).values(prev_hash=prev, hash=digest))
        prev = digest
    return len(rows)
