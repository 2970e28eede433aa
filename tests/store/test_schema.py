"""The job store's schema: migrations from empty, migrations == ORM metadata, the state
machine's table, SQLite's connection settings."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from preread.store import JobState, JobStore, make_engine, upgrade
from preread.store.migrate import current_revision, downgrade, head_revision
from preread.store.schema import Base
from preread.store.states import FINISHED, IN_PROGRESS, TRANSITIONS, can_transition

TABLES = {
    "jobs",
    "series_decisions",
    "watcher_state",
    "studies",
    "api_clients",
    "idempotency_keys",
    "webhooks",
    "webhook_deliveries",
    "grants",
    "audit_events",
    "audit_anchor",
    "users",
    "user_sessions",
    "reviews",
    "oidc_identities",
    "oidc_logins",
    "backfill_runs",
    "model_stages",
    "backfill_items",
    "final_reports",
    "monitoring_alerts",
    "alembic_version",
}


def test_migrate_from_empty(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert set(inspect(engine).get_table_names()) == TABLES
        assert current_revision(engine) == head_revision()
        with JobStore.from_engine(engine) as store:
            store.migrate()  # again: nothing to do
        assert current_revision(engine) == head_revision()
        downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    finally:
        engine.dispose()


def test_concurrent_migrations(empty_url: str) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            upgrade(empty_url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    engine = make_engine(empty_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_migrations_match_the_orm_metadata(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
        assert diff == []
        indexes = {ix["name"]: ix for ix in inspect(engine).get_indexes("jobs")}
        assert indexes["uq_jobs_current"]["unique"]
    finally:
        engine.dispose()


def test_current_index_is_partial(db_url: str) -> None:
    """Superseded jobs of the same key may pile up; current ones may not."""
    engine = make_engine(db_url)
    row = (
        "INSERT INTO jobs (id, study_instance_uid, orthanc_study_id, model_id, model_version,"
        " state, attempts, study_fingerprint, timings, created_at, updated_at)"
        " VALUES (:id, 's', 'o', 'm', 'v', :state, 0, 'f', '{}', :t, :t)"
    )
    t = "2025-01-01 00:00:00"
    try:
        with engine.begin() as conn:
            for i in range(2):
                conn.execute(text(row), {"id": f"old{i}", "state": "superseded", "t": t})
            conn.execute(text(row), {"id": "cur", "state": "done", "t": t})
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(row), {"id": "cur2", "state": "queued", "t": t})
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM jobs"))
    finally:
        engine.dispose()


def test_sqlite_connection_settings(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'x.db'}", busy_timeout_s=7)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 7000
    finally:
        engine.dispose()


def test_alembic_command_line(tmp_path: Path) -> None:
    ini = Path(__file__).resolve().parents[2] / "preread" / "store" / "alembic.ini"
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    alembic = [sys.executable, "-m", "alembic", "-c", str(ini), "-x", f"url={url}"]
    env = {k: v for k, v in os.environ.items() if k != "PREREAD_DATABASE_URL"}
    subprocess.run([*alembic, "upgrade", "head"], check=True, capture_output=True, env=env)
    engine = make_engine(url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_state_machine_table() -> None:
    assert set(TRANSITIONS) == set(JobState)
    assert TRANSITIONS[JobState.SUPERSEDED] == frozenset()
    for state in FINISHED:
        assert can_transition(state, JobState.SUPERSEDED)
    for state in IN_PROGRESS:  # a lost lease sends a job back, or to a new owner
        assert can_transition(state, JobState.QUEUED)
        assert can_transition(state, JobState.FETCHING)
        assert not can_transition(state, JobState.SUPERSEDED)
    assert not can_transition(JobState.QUEUED, JobState.DONE)
    assert not can_transition(JobState.FETCHING, JobState.DONE)


def test_upgrade_from_the_previous_revision_keeps_the_jobs(empty_url: str) -> None:
    """0001 (the pipeline's schema) with a finished job → head: the job and its result stay,
    the new tables are empty, and the downgrade goes back without loss of the jobs."""
    engine = make_engine(empty_url)
    try:
        upgrade(engine, "0001")
        assert current_revision(engine) == "0001"
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO jobs (id, study_instance_uid, orthanc_study_id, model_id,"
                    " model_version, state, attempts, study_fingerprint, timings, result,"
                    " created_at, updated_at) VALUES ('j1', '1.2.3', 'o1', 'm', '1.0.0', 'done',"
                    " 1, '3@x', '{}', '{\"findings\": []}', :t, :t)"
                ),
                {"t": "2025-01-01 00:00:00"},
            )
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert set(inspect(engine).get_table_names()) == TABLES
        with JobStore.from_engine(engine) as store:
            job = store.get("j1")
            assert job.state is JobState.DONE and job.result == {"findings": []}
            assert job.findings_count is None  # unknown until read again
            assert store.study("1.2.3") is None  # no tenant yet: the reconcile sweep records it
        downgrade(engine, "0001")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM jobs")).scalar() == 1
        assert "studies" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()
