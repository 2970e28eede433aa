"""The signed-in pages: the worklist at ``/ui/``.

Every route of :data:`router` is CSRF-checked (:func:`~preread.ui.csrf.require_csrf` on the
router), asks for its reader (:data:`~preread.ui.auth.PageReader`: 303 to the sign-in page
without a session) and goes through the enforcement point (:mod:`preread.ui.access`): the
worklist needs a clinical-preread grant of the reader's tenant in force, and each view of it is
audited (it shows patients' names).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from preread.api.deps import ServicesDep
from preread.store import JobState
from preread.ui.access import ReaderListing
from preread.ui.csrf import require_csrf
from preread.ui.templates import render
from preread.worklist import MAX_PAGE_SIZE, Reviewed, Worklist, WorklistQuery, WorklistSort

router = APIRouter(prefix="/ui", dependencies=[Depends(require_csrf)], include_in_schema=False)

DICOM_DATE = r"^\d{8}$"
SHOWN_STATES = (
    JobState.DONE,
    JobState.QUEUED,
    JobState.FAILED,
    JobState.NOT_APPLICABLE,
    JobState.NOT_AUTHORIZED,
)


@router.get("/", name="ui_worklist")
async def worklist(
    request: Request,
    services: ServicesDep,
    who: ReaderListing,
    sort: WorklistSort = WorklistSort.PRIORITY,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
    state: JobState | None = None,
    reviewed: Reviewed = Reviewed.ANY,
    min_findings: Annotated[int | None, Query(ge=0, le=10_000)] = None,
    date_from: Annotated[str | None, Query(pattern=DICOM_DATE)] = None,
    date_to: Annotated[str | None, Query(pattern=DICOM_DATE)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> HTMLResponse:
    """The reader's tenant's studies with AI results, most urgent first (largest solid
    nodule), filterable by state, review, findings and study date; paged."""
    query = WorklistQuery(
        tenant=who.tenant,
        sort=sort,
        descending=order == "desc",
        states=(state,) if state else (),
        reviewed=reviewed,
        min_findings=min_findings,
        date_from=date_from,
        date_to=date_to,
        page=page,
        page_size=page_size,
    )
    result = await run_in_threadpool(Worklist(services.store).page, query)
    params = {
        "sort": sort.value,
        "order": order,
        "state": state.value if state else "",
        "reviewed": reviewed.value,
        "min_findings": "" if min_findings is None else str(min_findings),
        "date_from": date_from or "",
        "date_to": date_to or "",
        "page_size": str(page_size),
    }

    def link(**changes: str) -> str:
        merged = {**params, **changes}
        return "/ui/?" + urlencode({k: v for k, v in merged.items() if v})

    return render(
        request,
        "worklist.html",
        {
            "page": result,
            "params": params,
            "link": link,
            "sorts": list(WorklistSort),
            "states": SHOWN_STATES,
            "reviewed_options": list(Reviewed),
        },
    )
