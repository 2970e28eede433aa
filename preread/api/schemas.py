"""Response shapes of the API (separate from the store's records and the ORM)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from preread.reports.json import PreReadOut
from preread.store import JobRecord


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
    study_instance_uid: str
    updated_at: datetime
    jobs: list[JobOut]


class StudyPageOut(BaseModel):
    items: list[StudyOut]
    total: int
    limit: int
    offset: int


class HealthOut(BaseModel):
    status: str


__all__ = ["HealthOut", "JobOut", "PreReadOut", "StoredOut", "StudyOut", "StudyPageOut"]
