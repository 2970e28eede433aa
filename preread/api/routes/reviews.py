"""Radiologists' reviews of a study's pre-reads, for hospital systems.

``GET /api/v1/studies/{uid}/reviews`` lists the study's signed reviews (of one model with
``?model_id=``), newest first, through the one enforcement point (tenant, grant, audit) with
the report scope: what a reviewer decided is part of the report.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from preread.api.access import ModelQuery, StudyAccess, authorized_study
from preread.api.deps import ServicesDep
from preread.reports.review import ReviewOut
from preread.reviews import ReviewStore, review_out
from preread.security import Scope

router = APIRouter(prefix="/api/v1", tags=["reviews"])

ReviewReader = Annotated[
    StudyAccess,
    Depends(
        authorized_study(Scope.REPORTS_READ, detail=lambda _: {"format": "reviews"}, by_model=True)
    ),
]


@router.get("/studies/{study_uid}/reviews", response_model=list[ReviewOut])
async def reviews(
    services: ServicesDep, access: ReviewReader, study_uid: str, model_id: ModelQuery = None
) -> list[ReviewOut]:
    """The study's signed reviews, newest first; ``current`` marks each model's newest."""
    found = await run_in_threadpool(
        ReviewStore(services.store).history, access.who.tenant, access.study_uid, model_id
    )
    newest: set[str] = set()
    out = []
    for review in found:  # newest first: the first of each model is its current one
        current = review.target.model_id not in newest
        newest.add(review.target.model_id)
        out.append(review_out(review, current=current))
    return out
