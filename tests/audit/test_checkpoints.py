"""Signed checkpoints in a file outside the database: what someone who can bypass the audit
triggers (a superuser, the SQLite file's holder) does to the trail is caught against them; the
file itself refuses edits; a purge past retention keeps them valid. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import stat
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from preread.audit import (
    AuditAction,
    AuditLog,
    CheckpointError,
    CheckpointFile,
    CheckpointsTampered,
    ProblemKind,
    VerifyResult,
    verify_signed,
)
from preread.audit.checkpoints import CheckpointSchedule, TrailDoesNotVerify, sign_head
from tests.audit.conftest import event, fill, rechain, tampering
from tests.store.conftest import FakeClock


@pytest.fixture
def book(tmp_path: Path) -> CheckpointFile:
    return CheckpointFile(tmp_path / "out" / "checkpoints.jsonl", tmp_path / "keys" / "cp.key")


def verify(audit: AuditLog, book: CheckpointFile, clock: FakeClock) -> VerifyResult:
    return verify_signed(audit, book.read(), now=clock.now)


def test_a_rewritten_and_rechained_trail_fails_naming_the_checkpoint(
    audit: AuditLog, clock: FakeClock, engine: Engine, book: CheckpointFile
) -> None:
    fill(audit, clock, 2)
    sign_head(audit, book, clock.now)
    fill(audit, clock, 2)
    sign_head(audit, book, clock.now)
    with tampering(engine) as conn:  # the attacker changes record 2 and re-chains the rest
        conn.execute(text("UPDATE audit_events SET actor = 'someone-else' WHERE seq = 2"))
        assert rechain(conn) == 4
    assert audit.verify().ok  # the unkeyed chain alone cannot tell
    result = verify(audit, book, clock)
    assert result.first_problem is not None
    assert (result.first_problem.seq, result.first_problem.kind) == (2, ProblemKind.CHANGED)
    assert f"line 1 of {book.path}" in result.message
    assert "history was rewritten" in result.message


def test_a_cut_tail_and_a_wiped_trail_fail_against_the_checkpoint(
    audit: AuditLog, clock: FakeClock, engine: Engine, book: CheckpointFile
) -> None:
    fill(audit, clock, 3)
    sign_head(audit, book, clock.now)
    with tampering(engine) as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 3"))
    result = verify(audit, book, clock)
    assert result.first_problem is not None
    assert (result.first_problem.kind, result.first_problem.missing) == (
        ProblemKind.REMOVED,
        (3, 3),
    )
    assert "line 1 of" in result.message
    with tampering(engine) as conn:  # everything gone, two new records in their place
        conn.execute(text("DELETE FROM audit_events"))
    fill(audit, clock, 2)
    assert audit.verify().ok
    assert not verify(audit, book, clock).ok


def test_an_anchor_moved_by_a_superuser_inside_retention_is_caught(
    audit: AuditLog, clock: FakeClock, engine: Engine, book: CheckpointFile
) -> None:
    fill(audit, clock, 2)
    sign_head(audit, book, clock.now)
    fill(audit, clock, 2)
    second = list(audit.records())[1]
    with tampering(engine) as conn:  # insert-anchor-then-delete, triggers bypassed
        conn.execute(
            text(
                "INSERT INTO audit_anchor (id, after_seq, after_hash, updated_at)"
                " VALUES (1, :seq, :hash, :at)"
            ),
            {"seq": second.seq, "hash": second.hash, "at": clock.now},
        )
        conn.execute(text("DELETE FROM audit_events WHERE seq <= 2"))
    assert audit.verify().ok  # the chain starts at the forged anchor
    result = verify(audit, book, clock)
    assert result.first_problem is not None
    assert result.first_problem.kind is ProblemKind.REMOVED
    assert "inside the retention period" in result.message and "line 1 of" in result.message
    clock.advance(86400 * 365)  # a year later the same records could have been purged
    assert verify(audit, book, clock).ok


def test_purge_past_retention_records_itself_and_the_checkpoints_still_hold(
    audit: AuditLog, clock: FakeClock, book: CheckpointFile
) -> None:
    fill(audit, clock, 2, step_s=86400 * 100)  # day 0 and 100
    sign_head(audit, book, clock.now)  # record 2 (day 100) signed at day 200
    fill(audit, clock, 2, step_s=86400 * 100)  # day 200 and 300
    sign_head(audit, book, clock.now)  # record 4 signed at day 400
    assert audit.purge(180, clock.now) == 3  # days 0-200: the first checkpoint is purged
    records = list(audit.records())
    assert [r.seq for r in records] == [4, 5]
    assert records[-1].event.action is AuditAction.AUDIT_PURGE
    result = verify(audit, book, clock)
    assert result.ok and result.anchor.seq == 3, result.message
    audit.record(event())
    sign_head(audit, book, clock.now)
    assert verify(audit, book, clock).ok and len(book.read()) == 3


def test_the_file_refuses_edits_removed_lines_and_another_key(
    audit: AuditLog, clock: FakeClock, book: CheckpointFile, tmp_path: Path
) -> None:
    for _ in range(3):
        fill(audit, clock, 1)
        sign_head(audit, book, clock.now)
    assert stat.S_IMODE(book.key_path.stat().st_mode) == 0o600  # created by the first one
    assert stat.S_IMODE(book.path.stat().st_mode) == 0o600
    lines = book.path.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]

    forged = json.loads(lines[1])
    forged["seq"] = 1  # e.g. to point a checkpoint at what a rewritten trail holds
    cases = {
        "edited": [lines[0], json.dumps(forged), lines[2]],
        "removed": [lines[0], lines[2]],
        "garbage": [lines[0], "{not json"],
    }
    for name, content in cases.items():
        book.path.write_text("\n".join(content) + "\n")
        with pytest.raises(CheckpointsTampered, match="line 2") as caught:
            book.read()
        assert caught.value.line == 2, name
        with pytest.raises(CheckpointsTampered):  # nothing is appended to a broken file
            book.append(audit.checkpoint(), None, clock.now)
    book.path.write_text("\n".join(lines) + "\n")
    assert len(book.read()) == 3

    other = CheckpointFile(book.path, tmp_path / "other.key")
    other.key_path.write_text("x" * 64)
    with pytest.raises(CheckpointsTampered, match=r"line 1.*signature"):
        other.read()
    missing = CheckpointFile(book.path, tmp_path / "missing.key")
    with pytest.raises(CheckpointError, match="missing"):
        missing.read()  # a key is never created for a file signed with another one
    assert not missing.key_path.exists()
    other.key_path.write_text("short")
    with pytest.raises(CheckpointError, match="shorter than 32 bytes"):
        other.read()


def test_no_file_means_no_checkpoints(
    audit: AuditLog, clock: FakeClock, book: CheckpointFile
) -> None:
    fill(audit, clock, 1)
    assert book.read() == [] and not book.key_path.exists()
    assert verify(audit, book, clock).ok
    clock.advance(timedelta(days=1).total_seconds())
    sign_head(audit, book, clock.now)
    (point,) = book.read()
    assert (point.seq, point.line, point.prev) == (1, 1, "")
    assert point.at == clock.now and point.record_at == clock.now - timedelta(days=1, minutes=1)


def test_the_schedule_signs_a_moved_head_each_interval_and_never_a_tampered_trail(
    audit: AuditLog,
    clock: FakeClock,
    engine: Engine,
    book: CheckpointFile,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What the service's loop and the watch leader run (PREREAD_AUDIT_CHECKPOINT_INTERVAL_S):
    a checkpoint per interval when records were added, none when nothing was, and none, with
    an ERROR, once the trail has been rewritten."""
    ticks = [0.0]
    schedule = CheckpointSchedule(audit, book, 60.0, clock=lambda: ticks[0])
    fill(audit, clock, 3)
    assert schedule.run_if_due(clock.now) is None and book.read() == []  # not due yet
    ticks[0] = 61.0
    schedule.poll()  # what the loops call: the same work, in a thread beside them
    deadline = time.monotonic() + 30
    while not book.read():
        assert time.monotonic() < deadline, "the scheduled checkpoint was not signed"
        time.sleep(0.05)
    (first,) = book.read()
    assert (first.seq, first.line) == (3, 1)
    schedule.poll()  # not due again: nothing started
    ticks[0] = 130.0
    assert schedule.run_if_due(clock.now) is None  # nothing recorded since: no new line
    fill(audit, clock, 2)
    ticks[0] = 140.0
    assert schedule.run_if_due(clock.now) is None  # recorded, but not due
    ticks[0] = 200.0
    second = schedule.run_if_due(clock.now)
    assert second is not None and (second.seq, second.line) == (5, 2)
    with tampering(engine) as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'someone-else' WHERE seq = 4"))
        rechain(conn)
    fill(audit, clock, 1)
    ticks[0] = 300.0
    with caplog.at_level("ERROR", logger="preread.audit.checkpoints"):
        assert schedule.run_if_due(clock.now) is None
    assert "scheduled audit checkpoint not taken" in caplog.text
    assert "history was rewritten" in caplog.text
    assert [p.seq for p in book.read()] == [3, 5]  # the rewritten trail is not vouched for
    with pytest.raises(TrailDoesNotVerify):
        sign_head(audit, book, clock.now)
