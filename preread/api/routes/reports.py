"""A study's pre-read in every format a hospital system speaks, by path or by ``Accept``.

``GET /api/v1/studies/{uid}/report`` negotiates (``Accept`` or ``?format=``); the same formats
have paths of their own: ``/report/json``, ``/report/fhir``, ``/report/hl7``, ``/report/html``,
``/report/sr``, ``/report/seg``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from preread.api.access import ModelQuery, StudyAccess, authorized_study, study_access
from preread.api.deps import OAUTH2_SCHEME, Services, ServicesDep, authorized_caller, services_of
from preread.api.ids import MODEL_ID_PATTERN, PATH_IDS, REPORT_FORMATS, UID_PATTERN
from preread.audit import AuditAction
from preread.audit.chain import Json
from preread.reports import PreReadOut
from preread.reports.context import ReportInput
from preread.reports.fhir import FHIR_JSON, fhir_json
from preread.reports.hl7 import HL7_MEDIA_TYPE, Hl7Options, to_oru
from preread.reports.html import HTML_MEDIA_TYPE, to_html
from preread.reports.review import ReportOut, ReviewOut
from preread.results import report_input
from preread.reviews import ReviewStore, review_out
from preread.security import Scope
from preread.store import JobRecord, StudyRecord

router = APIRouter(prefix="/api/v1", tags=["reports"])
DICOM = "application/dicom"
JSON = "application/json"


class Format(StrEnum):
    JSON = "json"
    FHIR = "fhir"
    HL7 = "hl7"
    HTML = "html"
    SR = "sr"
    SEG = "seg"


MEDIA_TYPES: dict[str, Format] = {
    JSON: Format.JSON,
    FHIR_JSON: Format.FHIR,
    "application/json+fhir": Format.FHIR,
    HL7_MEDIA_TYPE: Format.HL7,
    "application/hl7-v2": Format.HL7,
    "text/html": Format.HTML,
    DICOM: Format.SR,
}
_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            JSON: {},
            FHIR_JSON: {},
            HL7_MEDIA_TYPE: {},
            "text/html": {},
            DICOM: {},
        },
        "description": "the pre-read in the requested format",
    },
    404: {"description": "no such study for this tenant, or no finished pre-read yet"},
    406: {"description": "none of the accepted media types is offered"},
}


def negotiate(accept: str | None) -> Format:
    """The format of the first acceptable media type (by q, then order); JSON for ``*/*``."""
    if not accept:
        return Format.JSON
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0 and media:
            ranked.append((-q, index, media.lower()))
    for _, _, media in sorted(ranked):
        if media in MEDIA_TYPES:
            return MEDIA_TYPES[media]
        if media in ("*/*", "application/*"):
            return Format.JSON
        if media == "text/*":
            return Format.HTML
    raise HTTPException(406, f"offered: {', '.join(sorted(MEDIA_TYPES))}")


def _render(services: Services, access: StudyAccess, fmt: Format) -> Response:
    study, job = access.study, access.view.report_job()
    tenant = access.who.tenant
    if fmt in (Format.SR, Format.SEG):
        stored = job.outputs.sr if fmt is Format.SR else job.outputs.seg
        if stored is None:
            raise HTTPException(
                404, f"the pre-read of study {access.study_uid} has no SEG (no findings)"
            )
        if services.source is None:
            raise HTTPException(503, "this PreRead process has no connection to Orthanc")
        data = services.source.instance_file(
            study.facts.patient_id,
            access.study_uid,
            stored.series_instance_uid,
            stored.sop_instance_uid,
        )
        name = f"{fmt.value}-{stored.sop_instance_uid}.dcm"
        return Response(
            data,
            media_type=DICOM,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    assert services.renders is not None
    body = services.renders.get(
        _render_key(study, job, tenant, fmt),
        lambda: _bytes(
            report_input(study, job, current_review(services, tenant, job)), fmt, tenant
        ),
    )
    return Response(body, media_type=_MEDIA[fmt])


def current_review(services: Services, tenant: str, job: JobRecord) -> ReviewOut | None:
    """The radiologist's current review of the reading ``job`` (None: not reviewed). A new
    review moves the study record's ``updated_at``, so it is part of every render key."""
    found = ReviewStore(services.store).current_of(
        tenant, job.study_instance_uid, job.model_id, job.id
    )
    return None if found is None else review_out(found, current=True)


_MEDIA = {
    Format.JSON: JSON,
    Format.FHIR: f"{FHIR_JSON}; fhirVersion=4.3",  # R4B (4.3.0): see preread.reports.fhir
    Format.HL7: HL7_MEDIA_TYPE,
    Format.HTML: HTML_MEDIA_TYPE,
}


def _render_key(study: StudyRecord, job: JobRecord, tenant: str, fmt: Format) -> Hashable:
    # study.updated_at also moves when a review of the study is signed or stored
    # (preread.reviews.store): a new review never meets an old rendering
    return (job.id, job.finished_at, study.updated_at, tenant, fmt.value)


async def _respond(services: Services, access: StudyAccess, fmt: Format) -> Response:
    """From memory on the event loop when the rendering is cached (the common case of a
    report polled again: the enforcement point answered from memory too); else in a thread."""
    renders = services.renders
    if fmt in _MEDIA and renders is not None:
        job = access.view.done
        if job is not None:
            body = renders.peek(_render_key(access.study, job, access.who.tenant, fmt))
            if body is not None:
                return Response(body, media_type=_MEDIA[fmt])
    return await run_in_threadpool(_render, services, access, fmt)


def _bytes(report: ReportInput, fmt: Format, tenant: str) -> bytes:
    if fmt is Format.JSON:
        return ReportOut(**dict(report.preread), review=report.review).model_dump_json().encode()
    if fmt is Format.FHIR:
        return fhir_json(report)
    if fmt is Format.HL7:
        return to_oru(report, Hl7Options(receiving_facility=tenant)).encode()
    return to_html(report).encode()


def requested_format(request: Request) -> Format:
    """The format a report route was asked for: its path, else ``?format=``, else ``Accept``
    (406 when none is offered)."""
    for given in (request.path_params.get("fmt"), request.query_params.get("format")):
        if given in _FORMATS:
            return Format(given)
    return negotiate(request.headers.get("accept"))


_FORMATS = frozenset(f.value for f in Format)
MODEL_ID = PATH_IDS["model_id"]


def _audited_format(request: Request) -> Mapping[str, Json]:
    return {"format": requested_format(request).value}


ReportReader = Annotated[
    StudyAccess,
    Depends(authorized_study(Scope.REPORTS_READ, detail=_audited_format, by_model=True)),
]


@router.get("/studies/{study_uid}/report", responses=_DOC, response_class=Response)
async def report(
    request: Request,
    access: ReportReader,
    study_uid: str,
    format: Annotated[Format | None, Query(description="overrides Accept")] = None,
    model_id: ModelQuery = None,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    """The current pre-read of a study, in the format asked for by ``Accept`` or ``format``."""
    return await _respond(services_of(request), access, requested_format(request))


async def _report_as_access(request: Request) -> StudyAccess:
    """``GET .../report/{fmt}``'s one dependency, on the request alone (after the router's
    path-id check of ``study_uid`` and ``fmt``, 404): ``?model_id=`` checked as FastAPI would
    (422 naming it), then the enforcement point (:func:`preread.api.access.study_access`: caller,
    tenant, purpose, grant, audit), as for every route that touches a study.

    The report route a hospital system polls is the API's hot path: FastAPI's own handling of
    its declared parameters (two path parameters, one an enum, a query with a pattern, the
    bearer scheme's sub-dependency) cost it about 170-200 µs of CPU per request, a third of
    it (measured with ``bench/api_reports.py``'s server, 2026-12-06). The OpenAPI document
    still declares the parameters and the OAuth2 scheme (:data:`_REPORT_AS_OPENAPI`), and the
    route-table checks read the path's ``{names}`` (:func:`preread.api.ids.path_param_names`)."""
    model_id = request.query_params.get("model_id")
    if model_id is not None and not MODEL_ID.accepts(model_id):
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "model_id"), "input": model_id,
              "msg": f"model_id must be {MODEL_ID.description}"}]
        )  # fmt: skip
    services = services_of(request)
    who = await authorized_caller(request, request.headers.get("authorization"), Scope.REPORTS_READ)
    return await study_access(
        request, services, who, model_id, AuditAction.REPORT_READ, None, _audited_format
    )


_REPORT_AS_OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "name": "study_uid",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "maxLength": 64, "pattern": UID_PATTERN},
        },
        {
            "name": "fmt",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "enum": list(REPORT_FORMATS)},
        },
        {
            "name": "model_id",
            "in": "query",
            "required": False,
            "description": "model id (default: first)",
            "schema": {"type": "string", "maxLength": 128, "pattern": MODEL_ID_PATTERN},
        },
    ],
    "security": [{OAUTH2_SCHEME: []}],
}


@router.get(
    "/studies/{study_uid}/report/{fmt}",
    responses=_DOC,
    response_class=Response,
    openapi_extra=_REPORT_AS_OPENAPI,
)
async def report_as(
    request: Request, access: Annotated[StudyAccess, Depends(_report_as_access)]
) -> Response:
    """The current pre-read of a study in one format (``json``, ``fhir``, ``hl7``, ``html``,
    ``sr``, ``seg``)."""
    return await _respond(services_of(request), access, Format(request.path_params["fmt"]))


@router.get("/studies/{study_uid}/preread", response_model=ReportOut)
async def preread_json(
    services: ServicesDep,
    access: Annotated[
        StudyAccess,
        Depends(
            authorized_study(
                Scope.REPORTS_READ, detail=lambda _: {"format": Format.JSON.value}, by_model=True
            )
        ),
    ],
    study_uid: str,
    model_id: ModelQuery = None,
) -> PreReadOut:
    """The current pre-read as PreRead JSON, with the radiologist's current review of it (the
    same as ``/report/json``)."""
    job = access.view.report_job()
    review = await run_in_threadpool(current_review, services, access.who.tenant, job)
    return ReportOut(**dict(PreReadOut.model_validate(job.result)), review=review)
