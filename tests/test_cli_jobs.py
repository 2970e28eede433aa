"""``preread jobs list|show|retry`` through typer's test runner on the main CLI, on a real job
store: SQLite and PostgreSQL (``PREREAD_DATABASE_URL``), jobs brought to their states by the
store's own state machine."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from preread.audit import AuditAction, AuditLog, Outcome
from preread.cli import app
from preread.domain import ModelRef
from preread.store import (
    JobRecord,
    JobState,
    JobStore,
    SeriesDecision,
    StudyFacts,
    StudyFingerprint,
)
from tests.store.conftest import backend, db_url, postgres_url

__all__ = ["backend", "db_url", "postgres_url"]

MODEL = ModelRef("lung-nodule", "1.0.0", "PreRead Lung Nodule UNet", "ab" * 32)
OWNER = "test-worker"
PATIENT = ("PAT-7781", "DOE^JANE", "19600101", "ACC-55")  # what no output may show


@dataclass
class Scene:
    env: dict[str, str | None]
    store: JobStore
    failed: JobRecord
    refused: JobRecord
    done: JobRecord
    not_applicable: JobRecord

    def run(self, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["jobs", *args], env=self.env)
        return result.exit_code, result.output


def _study(store: JobStore, n: int, tenant: str) -> JobRecord:
    uid = f"1.2.826.0.1.3680043.8.498.{n}"
    patient_id, name, birth, accession = PATIENT
    store.record_study(
        StudyFacts(
            study_instance_uid=uid,
            orthanc_study_id=f"orthanc-{n}",
            tenant=tenant,
            sender_aet="HOSPITAL",
            patient_id=patient_id,
            issuer_of_patient_id="",
            patient_name=name,
            patient_birth_date=birth,
            patient_sex="F",
            accession_number=accession,
            study_date="20250110",
            study_time="101500",
            study_description="CT CHEST",
        )
    )
    job = store.enqueue(uid, f"orthanc-{n}", MODEL, StudyFingerprint(10, "x")).job
    assert store.claim(job.id, OWNER, 60) is not None
    return job


@pytest.fixture
def scene(db_url: str, tmp_path: Path) -> Iterator[Scene]:
    env: dict[str, str | None] = {
        "PREREAD_DATA_DIR": str(tmp_path),
        "PREREAD_DATABASE_URL": db_url,
        "COLUMNS": "250",
    }
    store = JobStore.create(db_url)
    failed = store.finish_failed(
        _study(store, 1, "hosp-a").id, OWNER, "Orthanc answered 503 to WADO-RS", "fetch_failed"
    ).job
    refused = store.finish_not_authorized(
        _study(store, 2, "hosp-b").id, OWNER, "no grant for clinical-preread covers the study"
    ).job
    job = _study(store, 3, "hosp-a")
    store.advance(job.id, OWNER, JobState.INFERRING)
    store.advance(job.id, OWNER, JobState.WRITING)
    done = store.finish_done(job.id, OWNER, {"findings": []}).job
    verdict = SeriesDecision("1.2.826.0.1.3680043.8.498.99", False, "slice thickness 5.0 mm > 2.5")
    not_applicable = store.finish_not_applicable(
        _study(store, 4, "hosp-a").id, OWNER, "no series meets the rules", [verdict]
    ).job
    try:
        yield Scene(env, store, failed, refused, done, not_applicable)
    finally:
        store.close()


def _no_patient_data(output: str) -> None:
    for value in PATIENT:
        assert value not in output


def test_list_shows_every_job_with_the_reason_of_failed_and_refused_ones(scene: Scene) -> None:
    code, out = scene.run("list")
    assert code == 0, out
    assert "4 of 4" in out
    for job in (scene.failed, scene.refused, scene.done, scene.not_applicable):
        assert job.id in out and job.state.value in out
    assert "fetch_failed: Orthanc answered 503 to WADO-RS" in out
    assert "no grant for clinical-preread covers the study" in out
    _no_patient_data(out)

    code, out = scene.run("list", "--state", "failed", "--state", "not_authorized")
    assert code == 0, out
    assert "2 of 2" in out and scene.failed.id in out and scene.refused.id in out
    assert scene.done.id not in out

    code, out = scene.run("list", "--tenant", "hosp-b")
    assert code == 0 and "1 of 1" in out and scene.refused.id in out, out
    code, out = scene.run("list", "--limit", "1")
    assert code == 0 and "1 of 4" in out, out
    code, out = scene.run("list", "--tenant", "hosp-c")
    assert code == 0 and "no jobs match" in out, out
    code, out = scene.run("list", "--tenant", "Hosp\x00")
    assert code == 2 and "tenant" in out, out
    code, out = scene.run("list", "--state", "broken")
    assert code == 2, out


def test_show_names_the_study_the_reason_and_the_series_verdicts(scene: Scene) -> None:
    code, out = scene.run("show", scene.failed.id)
    assert code == 0, out
    assert scene.failed.study_instance_uid in out
    assert "fetch_failed: Orthanc answered 503 to WADO-RS" in out
    assert "hosp-a" in out and "failed  (can be retried)" in out
    _no_patient_data(out)
    code, out = scene.run("show", scene.not_applicable.id)
    assert code == 0, out
    assert "not eligible: slice thickness 5.0 mm > 2.5" in out
    _no_patient_data(out)
    for bad in ("x\x00", "../../etc", scene.failed.id.upper()):
        code, out = scene.run("show", bad)
        assert code == 2 and "is not a job id" in out, (bad, out)
    code, out = scene.run("show", "00000000-0000-0000-0000-000000000000")
    assert code == 2 and "no job 00000000-0000-0000-0000-000000000000" in out, out


def test_retry_queues_failed_and_refused_jobs_only_and_every_command_is_audited(
    scene: Scene,
) -> None:
    audit = AuditLog(scene.store.engine)
    code, out = scene.run("retry", scene.failed.id)
    assert code == 0, out
    assert f"job {scene.failed.id} queued again (was failed: fetch_failed" in out
    again = scene.store.get(scene.failed.id)
    assert again.state is JobState.QUEUED and again.attempts == 0
    code, out = scene.run("retry", scene.refused.id)
    assert code == 0 and "unless a grant in force covers its study" in out, out
    assert scene.store.get(scene.refused.id).state is JobState.QUEUED

    for job, why in (
        (scene.done, "it is done"),
        (scene.not_applicable, "it is not_applicable"),
        (scene.failed, "it is queued"),  # retried above
    ):
        code, out = scene.run("retry", job.id)
        assert code == 2, out
        assert f"error: job {job.id} is not retried: {why}" in out
    assert scene.store.get(scene.done.id).state is JobState.DONE
    assert scene.run("retry", "not-a-job")[0] == 2

    scene.run("list", "--tenant", "hosp-a")
    scene.run("show", scene.done.id)
    records = [r.event for r in audit.records()]
    retries = [
        (e.outcome, e.detail["job_id"], e.study_instance_uid, e.tenant)
        for e in records
        if e.action is AuditAction.ANALYSIS_REQUEST
    ]
    assert retries == [
        (Outcome.SUCCESS, scene.failed.id, scene.failed.study_instance_uid, "hosp-a"),
        (Outcome.SUCCESS, scene.refused.id, scene.refused.study_instance_uid, "hosp-b"),
        (Outcome.REFUSED, scene.done.id, scene.done.study_instance_uid, "hosp-a"),
        (Outcome.REFUSED, scene.not_applicable.id, scene.not_applicable.study_instance_uid,
         "hosp-a"),
        (Outcome.REFUSED, scene.failed.id, scene.failed.study_instance_uid, "hosp-a"),
    ]  # fmt: skip
    reads = [e for e in records if e.action is AuditAction.REPORT_READ]
    assert [(e.detail["command"], e.tenant, e.study_instance_uid) for e in reads] == [
        ("jobs list", "hosp-a", None),
        ("jobs show", "hosp-a", scene.done.study_instance_uid),
    ]
    assert all(e.actor.startswith("cli") for e in records)
    assert audit.verify().ok
