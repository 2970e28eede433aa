"""The FastAPI app: studies, their pre-reads and jobs, under ``/api/v1``.

Handlers only translate: they call the job store and map PreRead's errors to HTTP in one place
(:func:`_errors`). The store is passed in to :func:`create_app`; nothing is built at import time.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from preread.api.schemas import HealthOut, JobOut, PreReadOut, StudyOut, StudyPageOut
from preread.store import JobNotFoundError, JobState, JobStore, StoreError


def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


StoreDep = Annotated[JobStore, Depends(get_store)]
router = APIRouter(prefix="/api/v1")


@router.get("/studies", response_model=StudyPageOut)
def list_studies(
    store: StoreDep,
    state: Annotated[list[JobState] | None, Query(description="current job state")] = None,
    model_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> StudyPageOut:
    page = store.list_studies(states=state, model_id=model_id, limit=limit, offset=offset)
    return StudyPageOut(
        items=[
            StudyOut(
                study_instance_uid=s.study_instance_uid,
                updated_at=s.updated_at,
                jobs=[JobOut.of(j) for j in s.jobs],
            )
            for s in page.items
        ],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/studies/{study_uid}/preread", response_model=PreReadOut)
def study_preread(store: StoreDep, study_uid: str, model_id: str | None = None) -> PreReadOut:
    """The current pre-read of a study (404 until a job for it is done)."""
    jobs = [j for j in store.current_for_study(study_uid, model_id) if j.state is JobState.DONE]
    if not jobs or jobs[0].result is None:
        current = store.current_for_study(study_uid, model_id)
        detail = (
            f"no pre-read yet: job {current[0].id} is {current[0].state.value}"
            if current
            else "unknown study"
        )
        raise HTTPException(404, detail)
    return PreReadOut.model_validate(jobs[0].result)


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(store: StoreDep, job_id: str) -> JobOut:
    return JobOut.of(store.get(job_id))


def create_app(store: JobStore, *, title: str = "PreRead") -> FastAPI:
    app = FastAPI(
        title=title,
        summary="AI pre-reads of CT studies: AI-generated, preliminary results",
        version="0.1.0",
    )
    app.state.store = store
    app.include_router(router)

    @app.get("/healthz", response_model=HealthOut)
    def healthz() -> HealthOut:
        return HealthOut(status="ok")

    _errors(app)
    return app


def _errors(app: FastAPI) -> None:
    @app.exception_handler(JobNotFoundError)
    async def not_found(_: Request, exc: JobNotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(StoreError)
    async def store_error(_: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": "the job store is unavailable"}, status_code=503)
