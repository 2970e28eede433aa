"""Studies and readings written through the job store's own state machine, for the tests that
need a study with a finished AI reading but no model run (reviews, lifecycle, final reports,
monitoring): a migrated store on each backend, a recorded study, a job taken to ``done``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid

from dicom_gateway.source import orthanc_id
from preread.domain import Finding, ModelRef, NoduleType, PreReadResult
from preread.reports import to_json
from preread.store import (
    JobOutputs,
    JobRecord,
    JobState,
    JobStore,
    JobUpdate,
    StoredObject,
    StudyFacts,
    StudyFingerprint,
)
from tests.store.conftest import BACKENDS, fresh_postgres_database

OWNER = "test-worker"


def migrated_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    """The body of a ``store`` fixture parametrized over :data:`BACKENDS` (real clock)."""
    if request.param == "sqlite":
        with JobStore.create(f"sqlite:///{tmp_path / 'store.db'}") as store:
            store.migrate()
            yield store
        return
    with fresh_postgres_database() as url, JobStore.create(url) as store:
        store.migrate()
        yield store


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    """A migrated job store on SQLite and on PostgreSQL (import it into a conftest)."""
    yield from migrated_store(request, tmp_path)


def finding(
    label: int,
    diameter: float = 8.0,
    *,
    centre: tuple[float, float, float] | None = None,
    side: str = "right",
    nodule_type: NoduleType = "solid",
) -> Finding:
    return Finding(
        label=label,
        center_lps_mm=centre or (-60.0 + 40 * label, 10.0, -120.0),
        long_axis_mm=diameter,
        volume_mm3=0.5 * diameter**3,
        probability=0.9,
        mean_hu=-20.0,
        voxel_count=100,
        lung_side=side,  # type: ignore[arg-type]
        nodule_type=nodule_type,
        axial_long_axis_mm=diameter,
        short_axis_mm=diameter - 1.0,
    )


def recorded_study(
    store: JobStore, tenant: str, *, accession: str = "ACC1", patient: str = "PAT-1"
) -> StudyFacts:
    """A study of ``tenant`` as the watcher records it (no job)."""
    uid = str(generate_uid())
    facts = StudyFacts(
        study_instance_uid=uid,
        orthanc_study_id=orthanc_id(patient, uid),
        tenant=tenant,
        sender_aet="HOSPITAL",
        patient_id=patient,
        issuer_of_patient_id="",
        patient_name="DOE^JANE",
        patient_birth_date="19600101",
        patient_sex="F",
        accession_number=accession,
        study_date="20250110",
        study_time="101500",
        study_description="CT CHEST",
        modalities="CT",
    )
    store.record_study(facts)
    return facts


def finish_reading(
    store: JobStore,
    job: JobRecord,
    model: ModelRef,
    findings: Sequence[Finding],
    *,
    outputs: JobOutputs | None = None,
    acquisition: dict[str, Any] | None = None,
    **result: Any,
) -> JobRecord:
    """``job`` claimed, run and done with ``findings`` (``result``: more PreReadResult fields,
    e.g. ``comparison``). A real reading records an SR (and a SEG when it found something)
    unless ``outputs`` says otherwise; a shadow reading records none."""
    assert store.claim(job.id, OWNER, 60) is not None
    series = str(generate_uid())
    store.advance(job.id, OWNER, JobState.INFERRING, JobUpdate(series_instance_uid=series))
    if outputs is None:
        outputs = JobOutputs() if job.shadow else JobOutputs(
            sr=StoredObject(str(generate_uid()), str(generate_uid())),
            seg=StoredObject(str(generate_uid()), str(generate_uid())) if findings else None,
        )  # fmt: skip
    update = JobUpdate(outputs=outputs, acquisition=acquisition)
    store.advance(job.id, OWNER, JobState.WRITING, update)
    reading = PreReadResult(
        study_instance_uid=job.study_instance_uid,
        series_instance_uid=series,
        frame_of_reference_uid=str(generate_uid()),
        model=model,
        provider="CPUExecutionProvider",
        findings=tuple(findings),
        created=datetime(2025, 1, 10, 12, 0, tzinfo=UTC),
        **result,
    )
    return store.finish_done(job.id, OWNER, to_json(reading, uid_seed=job.id)).job


def read_study(
    store: JobStore,
    facts: StudyFacts,
    model: ModelRef,
    findings: Sequence[Finding],
    *,
    shadow: bool = False,
    **kwargs: Any,
) -> JobRecord:
    """``facts``' study read by ``model`` (in shadow when ``shadow``)."""
    with store.transaction() as tx:
        job = tx.enqueue(
            facts.study_instance_uid,
            facts.orthanc_study_id,
            model,
            StudyFingerprint(10, "x"),
            shadow=shadow,
        ).job
    return finish_reading(store, job, model, findings, **kwargs)
