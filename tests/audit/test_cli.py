"""``preread audit ...`` through typer's test runner, on SQLite (PREREAD_DATA_DIR) and
PostgreSQL (PREREAD_DATABASE_URL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from preread.audit import AuditLog
from preread.audit.cli import audit_app
from preread.store import default_url, make_engine, upgrade
from tests.audit.conftest import fill, rechain, tampering
from tests.store.conftest import FakeClock


@pytest.fixture
def env(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str | None]:
    """The environment the command sees: its data folder (which holds the signed checkpoints
    and their key by default), and the database on PostgreSQL."""
    defaults: dict[str, str | None] = {
        "PREREAD_DATA_DIR": str(tmp_path),
        "PREREAD_AUDIT_CHECKPOINT_FILE": None,
        "PREREAD_AUDIT_CHECKPOINT_KEY_FILE": None,
    }
    if backend == "sqlite":
        upgrade(default_url(tmp_path))
        return {**defaults, "PREREAD_DATABASE_URL": None}
    url = str(request.getfixturevalue("db_url"))
    return {**defaults, "PREREAD_DATABASE_URL": url}


@pytest.fixture
def cli_engine(env: dict[str, str | None]) -> Iterator[Engine]:
    url = env["PREREAD_DATABASE_URL"] or default_url(Path(str(env["PREREAD_DATA_DIR"])))
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def filled(cli_engine: Engine, clock: FakeClock) -> AuditLog:
    audit = AuditLog(cli_engine, clock=clock)
    fill(audit, clock, 3)
    return audit


def run(env: dict[str, str | None], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(audit_app, list(args), env=env)
    return result.exit_code, result.output


def test_verify_an_intact_trail(env: dict[str, str | None], filled: AuditLog) -> None:
    code, output = run(env, "verify")
    assert code == 0, output
    assert "audit trail intact: 3 records" in output
    assert f"head: {filled.checkpoint()}" in output


def test_verify_reports_the_first_problem(
    env: dict[str, str | None], filled: AuditLog, cli_engine: Engine
) -> None:
    with tampering(cli_engine) as conn:
        conn.execute(text("UPDATE audit_events SET outcome = 'refused' WHERE seq = 2"))
    code, output = run(env, "verify")
    assert code == 1
    assert "audit trail broken at record 2 (changed)" in output


def test_verify_against_a_checkpoint_catches_a_cut_tail(
    env: dict[str, str | None], filled: AuditLog, cli_engine: Engine, tmp_path: Path
) -> None:
    code, output = run(env, "verify")
    assert code == 0 and "signed checkpoints: none" in output
    code, output = run(env, "checkpoint")
    head = output.splitlines()[0]
    assert code == 0 and head == str(filled.checkpoint()) and head.startswith("3:")
    checkpoints = tmp_path / "audit-checkpoints.jsonl"
    assert f"signed and appended to {checkpoints} (line 1)" in output
    assert run(env, "verify")[1].endswith(f"signed checkpoints: 1 in {checkpoints}, all held\n")
    with tampering(cli_engine) as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 3"))
    code, output = run(env, "verify")
    assert code == 1 and "record 3 missing" in output and f"line 1 of {checkpoints}" in output
    elsewhere = {**env, "PREREAD_AUDIT_CHECKPOINT_FILE": str(tmp_path / "none.jsonl")}
    assert run(elsewhere, "verify")[0] == 0  # the chain alone cannot see it
    code, output = run(elsewhere, "verify", "--expected-head", head)
    assert code == 1 and "record 3 missing" in output
    code, output = run(env, "verify", "--expected-head", "not-a-checkpoint")
    assert code == 2 and "checkpoint" in output


def test_a_rewritten_and_rechained_trail_fails_verify_and_is_not_signed(
    env: dict[str, str | None], filled: AuditLog, cli_engine: Engine, tmp_path: Path
) -> None:
    assert run(env, "checkpoint")[0] == 0
    with tampering(cli_engine) as conn:  # a superuser (or the SQLite file's holder)
        conn.execute(text("UPDATE audit_events SET outcome = 'refused' WHERE seq = 1"))
        rechain(conn)
    code, output = run(env, "verify")
    assert code == 1
    assert "audit trail broken at record 3 (changed)" in output
    assert f"line 1 of {tmp_path / 'audit-checkpoints.jsonl'}" in output
    code, output = run(env, "checkpoint")
    assert code == 1 and "refusing to sign" in output
    checkpoints = tmp_path / "audit-checkpoints.jsonl"
    assert len(checkpoints.read_text().splitlines()) == 1
    checkpoints.write_text(checkpoints.read_text().replace('"seq":3', '"seq":2'))
    code, output = run(env, "verify")
    assert code == 1 and "broken at line 1: its signature does not verify" in output
    (tmp_path / "secrets" / "audit-checkpoint.key").unlink()
    code, output = run(env, "verify")
    assert code == 2 and "key" in output and "missing" in output


def test_export_writes_a_fhir_bundle(
    env: dict[str, str | None], filled: AuditLog, tmp_path: Path
) -> None:
    out = tmp_path / "audit.json"
    code, output = run(env, "export", "--out", str(out), "--until", "2025-03-01")
    assert code == 0, output
    Bundle.model_validate_json(out.read_bytes())
    assert (
        len(json.loads(out.read_bytes())["entry"]) == 3
    )  # the whole day; the export's own record is of today
    assert f"exported 3 records to {out}" in output
    code, output = run(
        env, "export", "--out", str(out), "--since", "2025-03-02", "--until", "2025-03-03"
    )
    assert code == 0 and "exported 0 records" in output
    code, output = run(env, "export", "--out", str(tmp_path / "no" / "such" / "dir.json"))
    assert code == 2 and "error:" in output
    actions = [r.event.action.value for r in filled.records()]
    assert actions == ["pixels.fetch"] * 3 + ["audit.export"] * 2  # not the failed one
    assert filled.verify().ok


def test_purge_refuses_less_than_six_months(env: dict[str, str | None], filled: AuditLog) -> None:
    code, output = run(env, "purge", "--days", "30")
    assert code == 2 and "six months" in output
    assert filled.verify().checked == 3
    code, output = run(env, "purge")  # the fake clock's records are from 2025: old enough
    assert code == 0 and "purged 3 records before" in output
    result = filled.verify()
    assert result.ok and result.checked == 1  # the purge's own record, chained to the anchor
