"""``/ui/discrepancies``: the tenant's final radiology reports that disagree with the AI's
reading of their study (:mod:`preread.finalreports`), a worklist for the quality team: the
study (a link to its review page), the accession number, the model version, and each
disagreement in one sentence. The export is the API's ``GET /api/v1/discrepancies`` (JSON or
FHIR).

It names studies, so it goes through the enforcement point like the worklist: a
clinical-preread grant of the reader's tenant in force, each view audited
(:data:`~preread.ui.access.ReaderListing`).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from preread.api.deps import ServicesDep
from preread.finalreports.store import FinalReportStore
from preread.finalreports.worklist import ComparisonState, StudyComparison, tenant_comparisons
from preread.store import JobStore
from preread.ui.access import ReaderListing
from preread.ui.csrf import require_csrf
from preread.ui.templates import render

router = APIRouter(prefix="/ui", dependencies=[Depends(require_csrf)], include_in_schema=False)


def _comparisons(store: JobStore, tenant: str) -> list[StudyComparison]:
    return tenant_comparisons(store, FinalReportStore(store), tenant)


@router.get("/discrepancies", name="ui_discrepancies")
async def discrepancies(
    request: Request, services: ServicesDep, who: ReaderListing, everything: bool = False
) -> HTMLResponse:
    """The reports that disagree with the AI (``everything``: every report received, with its
    state: compared, no study yet, no AI reading yet)."""
    comparisons = await run_in_threadpool(_comparisons, services.store, who.tenant)
    shown = [c for c in comparisons if everything or c.discrepancies]
    waiting = sum(c.state is not ComparisonState.COMPARED for c in comparisons)
    return render(
        request,
        "discrepancies.html",
        {
            "rows": shown,
            "everything": everything,
            "received": len(comparisons),
            "waiting": waiting,
        },
    )
