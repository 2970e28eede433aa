"""A migrated job store (SQLite and PostgreSQL) and studies with a finished pre-read written
through the store's own state machine, for the review tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from dicom_gateway.source import orthanc_id
from preread.domain import Comparison, Finding, ModelRef, PreReadResult
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

MODEL = ModelRef("lung-nodule", "2.1.0", "PreRead Lung Nodule", "cd" * 32)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    if request.param == "sqlite":
        with JobStore.create(f"sqlite:///{tmp_path / 'reviews.db'}") as store:
            store.migrate()
            yield store
        return
    with fresh_postgres_database() as url, JobStore.create(url) as store:
        store.migrate()
        yield store


def finding(label: int, diameter: float) -> Finding:
    return Finding(
        label=label,
        center_lps_mm=(-60.0 + 40 * label, 10.0, -120.0),
        long_axis_mm=diameter,
        volume_mm3=0.5 * diameter**3,
        probability=0.9,
        mean_hu=-20.0,
        voxel_count=100,
        lung_side="right",
        nodule_type="solid",
        axial_long_axis_mm=diameter,
        short_axis_mm=diameter - 1.0,
    )


def done_study(
    store: JobStore,
    tenant: str,
    findings: int = 2,
    *,
    patient: str = "PAT-1",
    comparison: Comparison | None = None,
) -> tuple[StudyFacts, JobRecord]:
    """A study of ``tenant`` whose current job is done with ``findings`` findings (and
    ``comparison``, the comparison with priors, when given)."""
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
        accession_number="ACC1",
        study_date="20250110",
        study_time="101500",
        study_description="CT CHEST",
        modalities="CT",
    )
    store.record_study(facts)
    job = store.enqueue(uid, facts.orthanc_study_id, MODEL, StudyFingerprint(10, "x")).job
    owner = "test-worker"
    assert store.claim(job.id, owner, 60) is not None
    series = str(generate_uid())
    store.advance(job.id, owner, JobState.INFERRING, JobUpdate(series_instance_uid=series))
    outputs = JobOutputs(
        sr=StoredObject(str(generate_uid()), str(generate_uid())),
        seg=StoredObject(str(generate_uid()), str(generate_uid())) if findings else None,
    )
    store.advance(job.id, owner, JobState.WRITING, JobUpdate(outputs=outputs))
    result = PreReadResult(
        study_instance_uid=uid,
        series_instance_uid=series,
        frame_of_reference_uid=str(generate_uid()),
        model=MODEL,
        provider="CPUExecutionProvider",
        findings=tuple(finding(n, 6.0 + 2 * n) for n in range(1, findings + 1)),
        created=datetime(2025, 1, 10, 12, 0, tzinfo=UTC),
        comparison=comparison,
    )
    return facts, store.finish_done(job.id, owner, to_json(result, uid_seed=job.id)).job
