"""A study's pre-read in every format a hospital system speaks, by path or by ``Accept``.

``GET /api/v1/studies/{uid}/report`` negotiates (``Accept`` or ``?format=``); the same formats
have paths of their own: ``/report/json``, ``/report/fhir``, ``/report/hl7``, ``/report/html``,
``/report/sr``, ``/report/seg``.
"""

from __future__ import annotations

from collections.abc import Hashable
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from preread.api.auditing import aauthorize_read, authorize_read
from preread.api.deps import ReportsReader, Services, ServicesDep
from preread.caches import GrantCache
from preread.reports import PreReadOut
from preread.reports.context import ReportInput
from preread.reports.fhir import FHIR_JSON, fhir_json
from preread.reports.hl7 import HL7_MEDIA_TYPE, Hl7Options, to_oru
from preread.reports.html import HTML_MEDIA_TYPE, to_html
from preread.results import current_report, report_input
from preread.security import Principal
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


def _render(
    services: Services, who: Principal, study_uid: str, fmt: Format, model_id: str | None
) -> Response:
    tenant = who.tenant
    study, job = current_report(services.store, tenant, study_uid, model_id, views=services.views)
    authorize_read(services, who, study, format=fmt.value, job_id=job.id)
    if fmt in (Format.SR, Format.SEG):
        stored = job.outputs.sr if fmt is Format.SR else job.outputs.seg
        if stored is None:
            raise HTTPException(404, f"the pre-read of study {study_uid} has no SEG (no findings)")
        if services.source is None:
            raise HTTPException(503, "this PreRead process has no connection to Orthanc")
        data = services.source.instance_file(
            study.facts.patient_id, study_uid, stored.series_instance_uid, stored.sop_instance_uid
        )
        name = f"{fmt.value}-{stored.sop_instance_uid}.dcm"
        return Response(
            data,
            media_type=DICOM,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    assert services.renders is not None
    body = services.renders.get(
        _render_key(study, job, tenant, fmt), lambda: _bytes(report_input(study, job), fmt, tenant)
    )
    return Response(body, media_type=_MEDIA[fmt])


_MEDIA = {
    Format.JSON: JSON,
    Format.FHIR: f"{FHIR_JSON}; fhirVersion=4.3",  # R4B (4.3.0): see preread.reports.fhir
    Format.HL7: HL7_MEDIA_TYPE,
    Format.HTML: HTML_MEDIA_TYPE,
}


def _render_key(study: StudyRecord, job: JobRecord, tenant: str, fmt: Format) -> Hashable:
    return (job.id, job.finished_at, study.updated_at, tenant, fmt.value)


async def _respond(
    services: Services, who: Principal, study_uid: str, fmt: Format, model_id: str | None
) -> Response:
    """From memory on the event loop when the study's finished read, its grants and its
    rendering are cached (the common case of a report polled again); else in a thread."""
    views, renders, grants = services.views, services.renders, services.grants
    tenant = who.tenant
    if views is not None and renders is not None and isinstance(grants, GrantCache):
        hit = views.get((study_uid, model_id))
        if fmt in _MEDIA and isinstance(hit, tuple) and hit[0].tenant == tenant:
            body = renders.peek(_render_key(hit[0], hit[1], tenant, fmt))
            if body is not None and grants.active():
                await aauthorize_read(services, who, hit[0], format=fmt.value, job_id=hit[1].id)
                return Response(body, media_type=_MEDIA[fmt])
    return await run_in_threadpool(_render, services, who, study_uid, fmt, model_id)


def _bytes(report: ReportInput, fmt: Format, tenant: str) -> bytes:
    if fmt is Format.JSON:
        return report.preread.model_dump_json().encode()
    if fmt is Format.FHIR:
        return fhir_json(report)
    if fmt is Format.HL7:
        return to_oru(report, Hl7Options(receiving_facility=tenant)).encode()
    return to_html(report).encode()


ModelQuery = Annotated[str | None, Query(max_length=128, description="model id (default: first)")]


@router.get("/studies/{study_uid}/report", responses=_DOC, response_class=Response)
async def report(
    services: ServicesDep,
    who: ReportsReader,
    study_uid: str,
    format: Annotated[Format | None, Query(description="overrides Accept")] = None,
    model_id: ModelQuery = None,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    """The current pre-read of a study, in the format asked for by ``Accept`` or ``format``."""
    fmt = format or negotiate(accept)
    return await _respond(services, who, study_uid, fmt, model_id)


@router.get("/studies/{study_uid}/report/{fmt}", responses=_DOC, response_class=Response)
async def report_as(
    services: ServicesDep,
    who: ReportsReader,
    study_uid: str,
    fmt: Format,
    model_id: ModelQuery = None,
) -> Response:
    """The current pre-read of a study in one format (``json``, ``fhir``, ``hl7``, ``html``,
    ``sr``, ``seg``)."""
    return await _respond(services, who, study_uid, fmt, model_id)


@router.get("/studies/{study_uid}/preread", response_model=PreReadOut)
async def preread_json(
    services: ServicesDep, who: ReportsReader, study_uid: str, model_id: ModelQuery = None
) -> PreReadOut:
    """The current pre-read as PreRead JSON (the same as ``/report/json``)."""

    def lookup() -> JobRecord:
        study, job = current_report(
            services.store, who.tenant, study_uid, model_id, views=services.views
        )
        authorize_read(services, who, study, format="json", job_id=job.id)
        return job

    job = await run_in_threadpool(lookup)
    return PreReadOut.model_validate(job.result)
