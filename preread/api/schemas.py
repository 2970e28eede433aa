"""Response shapes of the API (separate from the store's records and the ORM)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from preread.reports.json import PreReadOut
from preread.store import JobRecord, StudySummary


class StoredOut(BaseModel):
    series_instance_uid: str
    sop_instance_uid: str


class JobOut(BaseModel):
    id: str
    study_instance_uid: str
    model_id: str
    model_version: str
    state: str
    attempts: int
    series_instance_uid: str | None
    reason: str | None = Field(description="why the job failed or was not applicable")
    reason_code: str | None
    provider_requested: str | None
    provider_used: str | None = Field(description="execution provider that actually ran")
    provider_warning: str | None
    timings: dict[str, float]
    sr: StoredOut | None
    seg: StoredOut | None
    created_at: datetime
    finished_at: datetime | None
    supersedes: str | None
    superseded_by: str | None

    @classmethod
    def of(cls, job: JobRecord) -> JobOut:
        def stored(obj: object) -> StoredOut | None:
            if obj is None:
                return None
            return StoredOut(
                series_instance_uid=obj.series_instance_uid,  # type: ignore[attr-defined]
                sop_instance_uid=obj.sop_instance_uid,  # type: ignore[attr-defined]
            )

        return cls(
            id=job.id,
            study_instance_uid=job.study_instance_uid,
            model_id=job.model_id,
            model_version=job.model_version,
            state=job.state.value,
            attempts=job.attempts,
            series_instance_uid=job.series_instance_uid,
            reason=job.reason,
            reason_code=job.reason_code,
            provider_requested=job.provider_requested,
            provider_used=job.provider_used,
            provider_warning=job.provider_warning,
            timings=dict(job.timings),
            sr=stored(job.outputs.sr),
            seg=stored(job.outputs.seg),
            created_at=job.created_at,
            finished_at=job.finished_at,
            supersedes=job.supersedes,
            superseded_by=job.superseded_by,
        )


class StudyOut(BaseModel):
    """A study of the caller's tenant with its current jobs (one per model version)."""

    study_instance_uid: str
    patient_id: str | None = Field(description="as the modality sent it; null if not recorded")
    accession_number: str | None
    study_date: str | None = Field(description="DICOM DA, YYYYMMDD")
    study_description: str | None
    updated_at: datetime
    has_findings: bool | None = Field(
        description="whether a current done job found something (null: none done yet)"
    )
    jobs: list[JobOut]

    @classmethod
    def of(cls, summary: StudySummary) -> StudyOut:
        facts = summary.study.facts if summary.study else None
        counts = [j.findings_count for j in summary.jobs if j.findings_count is not None]
        return cls(
            study_instance_uid=summary.study_instance_uid,
            patient_id=facts.patient_id if facts else None,
            accession_number=facts.accession_number if facts else None,
            study_date=facts.study_date if facts else None,
            study_description=facts.study_description if facts else None,
            updated_at=summary.updated_at,
            has_findings=any(c > 0 for c in counts) if counts else None,
            jobs=[JobOut.of(j) for j in summary.jobs],
        )


class StudyDetailOut(StudyOut):
    """One study: its current jobs and every earlier reading (superseded jobs)."""

    history: list[JobOut]


class AnalyzeOut(BaseModel):
    """The jobs of a study after an analysis request (queued, running or already done)."""

    study_instance_uid: str
    jobs: list[JobOut]


class ModelVersionOut(BaseModel):
    id: str
    version: str
    name: str
    sha256: str
    stage: Literal["candidate", "shadow", "active", "retired"] = Field(
        description="active: its results are the ones served; shadow: it reads the same studies "
        "and nothing it finds leaves PreRead; candidate: installed, unused; retired: withdrawn"
    )


class StageOut(BaseModel):
    changed_at: datetime | None
    changed_by: str | None = Field(description="who approved the last move")
    reason: str | None
    replaced: str | None = Field(description="the version it replaced when promoted")
    promotion_gate: dict[str, Any] | None = Field(
        description="the promotion gate's figures (reviewed studies read in shadow, held-out)"
    )


class ModelDetailOut(ModelVersionOut):
    card: dict[str, Any] = Field(description="the model card (model.yaml)")
    evaluation: dict[str, Any] = Field(description="held-out evaluation (evaluation.json)")
    lifecycle: StageOut


class ReadyOut(BaseModel):
    status: str
    checks: dict[str, str]


class StudyPageOut(BaseModel):
    items: list[StudyOut]
    total: int
    limit: int
    offset: int


class HealthOut(BaseModel):
    status: str


__all__ = [
    "AnalyzeOut",
    "HealthOut",
    "JobOut",
    "ModelDetailOut",
    "ModelVersionOut",
    "PreReadOut",
    "ReadyOut",
    "StoredOut",
    "StudyDetailOut",
    "StudyOut",
    "StudyPageOut",
]
