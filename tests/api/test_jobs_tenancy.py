"""``run_job`` and tenants: a job whose study was never recorded (queued before the studies
table existed) records it from the source first; a sender of no tenant is not read."""

from __future__ import annotations

from preread.domain import ModelRef
from preread.jobs import JobContext, run_job
from preread.store import JobState, StudyFingerprint
from tests.api.conftest import Api
from training.phantom_dicom import write_phantom_study
from training.phantoms import generate_phantom

MODEL = ModelRef("lung-nodule", "1.0.0", "PreRead Lung Nodule UNet", "ab" * 32)


def _never(model_id: str, version: str) -> object:
    raise AssertionError("a study of no tenant must not reach the model")


def test_unrecorded_study_is_recorded_and_a_sender_of_no_tenant_is_not_read(api: Api) -> None:
    files = write_phantom_study(
        generate_phantom(5, matrix=48, max_slices=10), api.folder, patient_id="PAT-NT"
    )
    source = api.services.source
    assert source is not None
    orthanc_study = source.find_study(files.study_instance_uid)
    assert orthanc_study is not None
    job = api.store.enqueue(
        files.study_instance_uid, orthanc_study, MODEL, StudyFingerprint(10, "x")
    ).job  # as a job queued under schema 0001: no study record
    assert api.store.study(files.study_instance_uid) is None
    ctx = JobContext(
        store=api.store,
        source=source,
        predictor_for=_never,  # type: ignore[arg-type]
        owner="test",
        grants=api.grants,
        audit=api.grants.audit,
        tenant_of=lambda _sender: None,  # e.g. PREREAD_DEFAULT_TENANT="" and no mapping
    )
    finished = run_job(job.id, ctx)
    assert finished is not None
    assert finished.job.state is JobState.NOT_APPLICABLE
    assert finished.job.reason_code == "no_tenant"
    assert "belongs to no tenant" in (finished.job.reason or "")
    recorded = api.store.study(files.study_instance_uid)
    assert recorded is not None and recorded.tenant is None
    assert recorded.facts.patient_id == "PAT-NT"
    # nobody sees it
    headers = api.token("default")
    listed = api.client.get("/api/v1/studies", headers=headers).json()
    assert listed["total"] == 0
