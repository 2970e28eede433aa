"""The audit log in the database, on SQLite and PostgreSQL: appends, tampering, triggers,
concurrency, transactions, retention and reading back."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from preread.audit import (
    GENESIS,
    AuditAction,
    AuditError,
    AuditEvent,
    AuditLog,
    Checkpoint,
    Outcome,
    ProblemKind,
)
from preread.audit.chain import ORIGIN, Json
from preread.audit.log import retention_cutoff
from preread.store import make_engine
from tests.audit.conftest import OTHER_STUDY, STUDY, event, fill, tampering
from tests.store.conftest import FakeClock


def _problem(audit: AuditLog, expected_head: Checkpoint | None = None) -> tuple[int, str]:
    result = audit.verify(expected_head)
    assert result.first_problem is not None, result.message
    return result.first_problem.seq, result.first_problem.kind


def test_records_are_chained_and_verify(audit: AuditLog, clock: FakeClock) -> None:
    first = audit.record(event())
    clock.advance(1)
    second = audit.record(event(AuditAction.INFERENCE_RUN, model="lung-nodule"))
    assert (first.seq, first.prev_hash, first.at) == (1, GENESIS, clock.now - timedelta(seconds=1))
    assert (second.seq, second.prev_hash) == (2, first.hash)
    result = audit.verify()
    assert result.ok and result.checked == 2 and result.head == second.checkpoint
    assert list(audit.records()) == [first, second]


def test_an_empty_trail_verifies(audit: AuditLog) -> None:
    assert audit.verify().ok and audit.verify().checked == 0
    assert audit.checkpoint() == ORIGIN


@pytest.mark.parametrize(
    "change",
    [
        'detail = \'{"job_id": "forged"}\'',
        "outcome = 'success'",
        "actor = 'someone-else'",
    ],
)
def test_editing_a_row_in_sql_is_caught_with_its_seq(
    audit: AuditLog, clock: FakeClock, engine: Engine, change: str
) -> None:
    fill(audit, clock, 3)
    audit.record(event(outcome=Outcome.REFUSED, reason="no grant"))
    fill(audit, clock, 2)
    with tampering(engine) as conn:
        conn.execute(text(f"UPDATE audit_events SET {change} WHERE seq = 4"))
    assert _problem(audit) == (4, ProblemKind.CHANGED)


def test_a_row_deleted_in_the_middle_is_reported_removed(
    audit: AuditLog, clock: FakeClock, engine: Engine
) -> None:
    fill(audit, clock, 5)
    with tampering(engine) as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 3"))
    result = audit.verify()
    assert result.first_problem is not None
    assert result.first_problem.kind is ProblemKind.REMOVED
    assert result.first_problem.missing == (3, 3)
    assert "record 3 missing" in result.message


def test_a_cut_tail_is_caught_against_a_checkpoint_kept_elsewhere(
    audit: AuditLog, clock: FakeClock, engine: Engine
) -> None:
    fill(audit, clock, 4)
    head = audit.checkpoint()
    assert head.seq == 4 and audit.verify(head).ok
    with tampering(engine) as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 4"))
    assert audit.verify().ok  # the chain alone cannot see it
    assert _problem(audit, head) == (4, ProblemKind.REMOVED)


def test_a_wiped_and_rewritten_trail_does_not_match_the_checkpoint(
    audit: AuditLog, clock: FakeClock, engine: Engine
) -> None:
    fill(audit, clock, 2)
    head = audit.checkpoint()
    with tampering(engine) as conn:
        conn.execute(text("DELETE FROM audit_events"))
    fill(audit, clock, 2)
    assert audit.verify().ok
    assert _problem(audit, head) == (2, ProblemKind.CHANGED)


def test_the_triggers_refuse_update_and_delete(
    audit: AuditLog, clock: FakeClock, engine: Engine
) -> None:
    fill(audit, clock, 2)
    for statement in (
        "UPDATE audit_events SET actor = 'x' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 2",
        "DELETE FROM audit_events",
    ):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    assert audit.verify().ok and audit.verify().checked == 2


def test_an_anchor_inserted_in_sql_is_refused_and_so_is_the_delete_it_would_allow(
    audit: AuditLog, clock: FakeClock, engine: Engine
) -> None:
    fill(audit, clock, 3)
    second = list(audit.records())[1]
    anchor = text(
        "INSERT INTO audit_anchor (id, after_seq, after_hash, updated_at)"
        " VALUES (1, :seq, :hash, :at)"
    ).bindparams(seq=second.seq, hash=second.hash, at=clock.now)
    with pytest.raises(DBAPIError, match=r"audit_anchor.*INSERT refused"), engine.begin() as conn:
        conn.execute(anchor)
    with pytest.raises(DBAPIError, match="DELETE refused"), engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq <= 2"))
    if engine.dialect.name == "postgresql":  # the purge's flag alone does not allow it either
        with pytest.raises(DBAPIError, match="DELETE refused"), engine.begin() as conn:
            conn.execute(text("SELECT set_config('preread.audit_purge', 'on', true)"))
            conn.execute(text("DELETE FROM audit_events WHERE seq <= 2"))
    assert audit.verify().ok and audit.verify().checked == 3


def test_the_anchor_a_purge_left_cannot_be_moved_or_removed_in_sql(
    audit: AuditLog, clock: FakeClock, engine: Engine
) -> None:
    fill(audit, clock, 4, step_s=86400 * 100)  # at day 0, 100, 200, 300; now day 400
    assert audit.purge(180, clock.now) == 3
    kept = next(audit.records())
    for statement, refused in (
        (f"UPDATE audit_anchor SET after_seq = 4, after_hash = '{kept.hash}'", "UPDATE refused"),
        ("DELETE FROM audit_anchor", "DELETE refused"),
        ("DELETE FROM audit_events WHERE seq <= 4", "DELETE refused"),
    ):
        with pytest.raises(DBAPIError, match=refused), engine.begin() as conn:
            conn.execute(text(statement))
    result = audit.verify()
    assert result.ok and result.anchor.seq == 3 and result.checked == 2  # 4 and the purge's


def test_truncate_is_refused(audit: AuditLog, clock: FakeClock, engine: Engine) -> None:
    fill(audit, clock, 2)
    # SQLite has no TRUNCATE: its "DELETE without WHERE" shortcut is skipped for tables with
    # triggers, so the row triggers refuse it
    postgres = engine.dialect.name == "postgresql"
    statements = (
        ["TRUNCATE audit_events", "TRUNCATE audit_anchor", "TRUNCATE audit_events, audit_anchor"]
        if postgres
        else ["DELETE FROM audit_events"]
    )
    for statement in statements:
        with (
            pytest.raises(DBAPIError, match="TRUNCATE refused" if postgres else "DELETE refused"),
            engine.begin() as conn,
        ):
            conn.execute(text(statement))
    assert audit.verify().checked == 2


def test_concurrent_appends_never_fork_the_chain(db_url: str, clock: FakeClock) -> None:
    engines = [make_engine(db_url), make_engine(db_url)]  # as two processes would
    logs = [AuditLog(e, clock=clock) for e in engines]
    errors: list[BaseException] = []

    def append(log: AuditLog, worker: int) -> None:
        try:
            for i in range(10):
                log.record(event(actor=f"worker-{worker}", i=i))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(logs[w % 2], w)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        result = logs[0].verify()
        assert result.ok and result.checked == 60 and result.head.seq == 60
    finally:
        for e in engines:
            e.dispose()


def test_a_record_in_the_callers_transaction_commits_and_rolls_back_with_it(
    audit: AuditLog, engine: Engine
) -> None:
    insert = text(
        "INSERT INTO watcher_state (key, value, updated_at) VALUES (:k, '1', :at)"
    ).bindparams(at=datetime(2025, 3, 1, tzinfo=UTC))
    with pytest.raises(RuntimeError), Session(engine) as session, session.begin():
        session.execute(insert, {"k": "rolled-back"})
        audit.record(event(), session=session)
        raise RuntimeError("the action failed after its record")
    assert list(audit.records()) == []
    with Session(engine) as session, session.begin():
        session.execute(insert, {"k": "committed"})
        record = audit.record(event(), session=session)
    assert [r.seq for r in audit.records()] == [record.seq] == [1]
    with engine.connect() as conn:
        keys = conn.execute(text("SELECT key FROM watcher_state")).scalars().all()
    assert keys == ["committed"]
    assert audit.verify().ok


def test_a_failed_audit_write_raises_audit_error_naming_the_action(empty_url: str) -> None:
    engine = make_engine(empty_url)  # not migrated: no audit table
    try:
        with pytest.raises(AuditError, match=r"pixels\.fetch"):
            AuditLog(engine).record(event())
        with (
            pytest.raises(AuditError, match=r"results\.store"),
            Session(engine) as session,
            session.begin(),
        ):
            AuditLog(engine).record(event(AuditAction.RESULTS_STORE), session=session)
    finally:
        engine.dispose()


def test_a_naive_clock_fails_the_write(engine: Engine) -> None:
    log = AuditLog(engine, clock=lambda: datetime(2025, 3, 1))
    with pytest.raises(AuditError, match=r"report\.read.*naive"):
        log.record(event(AuditAction.REPORT_READ))
    assert list(log.records()) == []


def test_events_refuse_patient_identifiers_and_oversized_fields() -> None:
    details: list[dict[str, Json]] = [
        {"patient_id": "123"},
        {"PatientName": "Doe^John"},
        {"job": {"birth_date": "19700101"}},
        {"items": [{"MRN": "1"}]},
    ]
    for detail in details:
        with pytest.raises(ValueError, match="patient identifiers"):
            AuditEvent("w", AuditAction.EXPORT, Outcome.SUCCESS, detail=detail)
    with pytest.raises(ValueError, match="tenant"):
        AuditEvent("w", AuditAction.EXPORT, Outcome.SUCCESS, tenant="t" * 65)
    with pytest.raises(ValueError):
        AuditEvent("w", "no.such.action", Outcome.SUCCESS)  # type: ignore[arg-type]
    assert AuditEvent("w", "export", "success").action is AuditAction.EXPORT  # type: ignore[arg-type]


def test_purge_moves_the_anchor_and_the_chain_still_verifies(
    audit: AuditLog, clock: FakeClock, engine: Engine
) -> None:
    fill(audit, clock, 3, step_s=86400 * 100)  # at day 0, 100, 200
    fill(audit, clock, 2, step_s=86400)  # day 300, 301
    now = clock.now
    assert audit.purge(180, now) == 2  # days 0 and 100 are more than six months old
    result = audit.verify()
    assert result.ok and result.checked == 4  # 3 kept + the purge's own record
    kept = list(audit.records())
    assert [r.seq for r in kept] == [3, 4, 5, 6]
    purge = kept[-1]
    assert purge.event.action is AuditAction.AUDIT_PURGE
    assert purge.event.detail["after_seq"] == 2 and purge.event.detail["deleted"] == 2
    with engine.connect() as conn:
        anchor = conn.execute(text("SELECT after_seq, after_hash FROM audit_anchor")).one()
    assert anchor[0] == 2 and kept[0].prev_hash == anchor[1]
    assert audit.purge(180, now) == 0  # nothing more is old enough
    audit.record(event())
    assert audit.verify().ok


def test_purge_of_everything_leaves_the_anchor_as_the_head(
    audit: AuditLog, clock: FakeClock
) -> None:
    fill(audit, clock, 3)
    assert audit.purge(0, clock.now + timedelta(seconds=1), allow_short=True) == 3
    purge = next(audit.records())
    assert purge.seq == 4 and audit.verify().ok
    assert audit.verify(Checkpoint(3, purge.prev_hash)).ok


def test_purge_refuses_less_than_six_months(audit: AuditLog, clock: FakeClock) -> None:
    fill(audit, clock, 2)
    with pytest.raises(AuditError, match="six months"):
        audit.purge(179)
    assert audit.verify().checked == 2


def test_the_cutoff_is_never_inside_six_calendar_months() -> None:
    now = datetime(2025, 8, 31, 12, 0, tzinfo=UTC)  # 180 days back is March 4
    assert retention_cutoff(now, 180) == datetime(2025, 2, 28, 12, 0, tzinfo=UTC)
    assert retention_cutoff(now, 365) == now - timedelta(days=365)
    assert retention_cutoff(now, 7, allow_short=True) == now - timedelta(days=7)


def test_purge_keeps_evidence_of_tampering(
    audit: AuditLog, clock: FakeClock, engine: Engine
) -> None:
    fill(audit, clock, 4, step_s=86400 * 100)
    with tampering(engine) as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'x' WHERE seq = 1"))
    with pytest.raises(AuditError, match="refusing to purge"):
        audit.purge(180, clock.now)
    assert _problem(audit) == (1, ProblemKind.CHANGED)


def test_records_filters(audit: AuditLog, clock: FakeClock) -> None:
    audit.record(event(tenant="tenant-a", study=STUDY))
    clock.advance(3600)
    audit.record(event(tenant="tenant-b", study=OTHER_STUDY))
    clock.advance(3600)
    audit.record(event(AuditAction.GRANT_CREATE, tenant="tenant-a", study=None))
    start = clock.now - timedelta(hours=2)

    def seqs(**filters: object) -> list[int]:
        return [r.seq for r in audit.records(**filters)]  # type: ignore[arg-type]

    assert seqs() == [1, 2, 3]
    assert seqs(tenant="tenant-a") == [1, 3]
    assert seqs(study_uid=OTHER_STUDY) == [2]
    assert seqs(since=start + timedelta(hours=1)) == [2, 3]
    assert seqs(until=start + timedelta(hours=1)) == [1]
    assert seqs(limit=2) == [1, 2]
    record = next(audit.records(tenant="tenant-b"))
    assert record.event == event(tenant="tenant-b", study=OTHER_STUDY)
    assert record.at == start + timedelta(hours=1)
