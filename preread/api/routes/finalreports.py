"""The hospital's final radiology reports in, and the AI's discrepancies with them out.

``POST /api/v1/final-reports`` (scope ``reports:write``) takes a FHIR R4 DiagnosticReport
(:mod:`preread.finalreports.fhir`: status final/amended/corrected/appended, the accession
number as the identifier of type ACSN, the text from ``conclusion`` and text/plain
``presentedForm``), stores it for the token's tenant through
:func:`preread.finalreports.intake.receive` and answers **201** (the accession's first report)
or **200** (a correction: the next version), with the nodules read from it. **422** names what
is wrong with the resource. Like a listing, it needs a grant in force for the token's purpose
of use (403 otherwise, audited); the receipt is audited as ``final_report.receive``.

``GET /api/v1/discrepancies`` (scope ``reports:read``, through the listing's enforcement point)
lists the tenant's compared reports that disagree with the AI (:mod:`preread.finalreports`):
JSON, or ``?format=fhir`` a FHIR Bundle of DetectedIssues (``application/fhir+json``).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, model_validator
from starlette.concurrency import run_in_threadpool

from preread.api import auditing
from preread.api.access import authorized_listing
from preread.api.bodies import RequestBody, has_nul
from preread.api.deps import Services, ServicesDep, require
from preread.finalreports.errors import ReportContentError
from preread.finalreports.exports import (
    DiscrepancyListOut,
    MentionOut,
    ReportSummaryOut,
    mention_out,
    summary_out,
    to_fhir_bundle,
    to_list,
)
from preread.finalreports.fhir import from_diagnostic_report
from preread.finalreports.intake import check_grant, receive
from preread.finalreports.store import FinalReportStore
from preread.finalreports.worklist import tenant_comparisons
from preread.results import NotAuthorizedError
from preread.security import Principal, Scope

router = APIRouter(prefix="/api/v1", tags=["final reports"])
Lister = Annotated[Principal, Depends(authorized_listing)]
FHIR_JSON = "application/fhir+json"


class DiagnosticReportIn(RequestBody):
    """A FHIR R4 DiagnosticReport resource (JSON); checked in full by fhir.resources and
    :mod:`preread.finalreports.fhir`."""

    model_config = ConfigDict(extra="allow")

    resourceType: Literal["DiagnosticReport"]  # FHIR's element name

    @model_validator(mode="before")
    @classmethod
    def _no_nul_anywhere(cls, value: Any) -> Any:
        if has_nul(value):  # the declared fields' check does not see the others
            raise ValueError("the resource contains a NUL byte (\\u0000), which cannot be stored")
        return value


class FinalReportOut(BaseModel):
    """A stored final report: its version, its study (null: none has this accession number
    yet) and the nodules read from it."""

    id: str
    accession_number: str
    version: int
    status: str
    study_instance_uid: str | None
    received_at: dt.datetime
    summary: ReportSummaryOut
    mentions: list[MentionOut]


def _route(request: Request) -> str:
    return str(getattr(request.scope.get("route"), "name", None) or "<unmatched>")


async def report_sender(
    request: Request,
    services: ServicesDep,
    who: Annotated[Principal, Depends(require(Scope.REPORTS_WRITE))],
) -> Principal:
    """The caller, if a grant for its purpose of use is in force for its tenant; a refusal is
    audited (the receipt itself is audited when it is stored)."""
    grants = services.grant_store
    assert grants is not None
    try:
        await run_in_threadpool(check_grant, grants, who.tenant, who.purpose)
    except NotAuthorizedError as exc:
        await services.auditor.arecord(auditing.refused(who, None, str(exc), route=_route(request)))
        raise
    return who


Sender = Annotated[Principal, Depends(report_sender)]


def _store(services: Services) -> FinalReportStore:
    return FinalReportStore(services.store)


@router.post(
    "/final-reports",
    status_code=201,
    response_model=FinalReportOut,
    responses={200: {"description": "a correction: stored as the accession's next version"}},
)
def post_final_report(
    request: Request,
    response: Response,
    services: ServicesDep,
    who: Sender,
    body: DiagnosticReportIn,
) -> FinalReportOut:
    """Store a final report (a FHIR DiagnosticReport) of the tenant's exam."""
    try:
        incoming = from_diagnostic_report(body.model_dump(), sender=who.client_id)
    except ReportContentError as exc:
        raise HTTPException(422, str(exc)) from None
    received = receive(
        _store(services),
        who.tenant,
        incoming,
        actor=who.actor,
        purpose=who.purpose,
        detail={"route": _route(request)},
    )
    response.status_code = 201 if received.created else 200
    report = received.report
    return FinalReportOut(
        id=report.id,
        accession_number=report.accession_number,
        version=report.version,
        status=report.status.value,
        study_instance_uid=report.study_instance_uid,
        received_at=report.received_at,
        summary=summary_out(report.summary),
        mentions=[mention_out(m) for m in report.mentions if m.present],
    )


@router.get(
    "/discrepancies",
    response_model=DiscrepancyListOut,
    responses={200: {"content": {FHIR_JSON: {}}}},
)
def list_discrepancies(
    services: ServicesDep,
    who: Lister,
    fmt: Annotated[
        Literal["json", "fhir"],
        Query(alias="format", description="json, or fhir: a Bundle of DetectedIssues"),
    ] = "json",
) -> Any:
    """The tenant's final reports that disagree with the AI's reading of their study."""
    comparisons = tenant_comparisons(services.store, _store(services), who.tenant)
    now = dt.datetime.now(dt.UTC)
    if fmt == "fhir":
        return Response(to_fhir_bundle(comparisons, generated_at=now), media_type=FHIR_JSON)
    return to_list(who.tenant, comparisons, generated_at=now)
