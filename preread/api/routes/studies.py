"""Studies and jobs of the caller's tenant; (re)analysis on request. Every route reaches its
study through the enforcement point (:mod:`preread.api.access`): tenant, grant, audit."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from preread.api.access import (
    ModelQuery,
    StudyAccess,
    authorized_listing,
    authorized_study,
)
from preread.api.deps import ServicesDep
from preread.api.idempotency import MAX_KEY_LENGTH, request_hash
from preread.api.ids import IDEMPOTENCY_KEY_PATTERN
from preread.api.schemas import AnalyzeOut, JobOut, StudyDetailOut, StudyOut, StudyPageOut
from preread.audit import AuditAction
from preread.grants import Purpose
from preread.security import Principal, Scope
from preread.store import JobState, StudyFilter

router = APIRouter(prefix="/api/v1", tags=["studies"])
DICOM_DATE = re.compile(r"^\d{8}$")
StudyUid = Annotated[str, Path(description="a StudyInstanceUID")]
StudyReader = Annotated[StudyAccess, Depends(authorized_study(Scope.REPORTS_READ))]
Lister = Annotated[Principal, Depends(authorized_listing)]


def _date(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    compact = value.replace("-", "")
    if not DICOM_DATE.match(compact):
        raise HTTPException(422, f"{name} must be a date YYYY-MM-DD or YYYYMMDD, got {value!r}")
    return compact


@router.get("/studies", response_model=StudyPageOut)
def list_studies(
    services: ServicesDep,
    who: Lister,
    state: Annotated[list[JobState] | None, Query(description="current job state")] = None,
    model_id: ModelQuery = None,
    study_date_from: Annotated[str | None, Query(description="YYYY-MM-DD, inclusive")] = None,
    study_date_to: Annotated[str | None, Query(description="YYYY-MM-DD, inclusive")] = None,
    has_findings: Annotated[bool | None, Query(description="a done job found nodules")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> StudyPageOut:
    """The tenant's studies, most recently changed first, filtered (403 unless a grant for
    the token's purpose of use is in force for the tenant)."""
    where = StudyFilter(
        tenant=who.tenant,
        states=tuple(state or ()),
        model_id=model_id,
        study_date_from=_date(study_date_from, "study_date_from"),
        study_date_to=_date(study_date_to, "study_date_to"),
        has_findings=has_findings,
    )
    page = services.store.list_studies(where=where, limit=limit, offset=offset)
    return StudyPageOut(
        items=[StudyOut.of(s) for s in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/studies/{study_uid}", response_model=StudyDetailOut)
def get_study(services: ServicesDep, access: StudyReader, study_uid: StudyUid) -> StudyDetailOut:
    """One study with its current jobs and its earlier readings."""
    study = access.study
    history = services.store.history(access.study_uid)
    current = [j for j in history if j.is_current]
    counts = [j.findings_count for j in current if j.findings_count is not None]
    f = study.facts
    return StudyDetailOut(
        study_instance_uid=f.study_instance_uid,
        patient_id=f.patient_id,
        accession_number=f.accession_number,
        study_date=f.study_date,
        study_description=f.study_description,
        updated_at=max([study.updated_at, *(j.updated_at for j in current)]),
        has_findings=any(c > 0 for c in counts) if counts else None,
        jobs=[JobOut.of(j) for j in current],
        history=[JobOut.of(j) for j in history if not j.is_current],
    )


@router.post(
    "/studies/{study_uid}/analyze",
    response_model=AnalyzeOut,
    status_code=202,
    responses={422: {"description": "Idempotency-Key reused for another request"}},
)
async def analyze_study(
    request: Request,
    services: ServicesDep,
    access: Annotated[
        StudyAccess,
        Depends(
            authorized_study(
                Scope.STUDIES_ANALYZE,
                AuditAction.ANALYSIS_REQUEST,
                purpose=Purpose.CLINICAL_PREREAD,
            )
        ),
    ],
    study_uid: StudyUid,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=MAX_KEY_LENGTH,
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="makes retries safe (visible ASCII)",
        ),
    ] = None,
) -> Any:
    """Request the (re)analysis of a study: queues what its current images need and retries
    failed jobs. A study whose current jobs already read its current images is not read again
    (same images, same model version: same result); its jobs are returned. Needs a token for
    the purpose of use ``clinical-preread`` and a grant in force for it that covers the study
    (403 otherwise, audited like the request itself)."""
    who = access.who
    analyze = services.analyze
    if analyze is None:
        raise HTTPException(503, "this PreRead process does not run analyses")
    body = await request.body()

    def handler() -> tuple[int, dict[str, Any]]:
        jobs = analyze(study_uid)
        out = AnalyzeOut(study_instance_uid=study_uid, jobs=[JobOut.of(j) for j in jobs])
        return 202, json.loads(out.model_dump_json())

    if idempotency_key is None:
        status, answer = await run_in_threadpool(handler)
    else:
        keys = services.idempotency
        assert keys is not None
        fingerprint = request_hash("POST", request.url.path, body)
        replay = await run_in_threadpool(
            keys.run, who.client_id, idempotency_key, fingerprint, handler
        )
        status, answer = replay.status_code, replay.body
    return JSONResponse(answer, status_code=status)


@router.get("/jobs/{job_id}", response_model=JobOut)
async def get_job(
    access: StudyReader, job_id: Annotated[str, Path(description="a job id (UUID)")]
) -> JobOut:
    """One job of the tenant (its study's grant is checked and the read audited)."""
    assert access.job is not None
    return JobOut.of(access.job)
