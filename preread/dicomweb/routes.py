"""The routes at ``/dicomweb``: what OHIF 3.13 asks of its DICOMweb data source, read only.

=================================================================  ===========================
``GET /dicomweb/studies``                                           QIDO-RS search for studies
``GET …/studies/{study_uid}/series``                                QIDO-RS series of a study
``GET …/studies/{study_uid}/instances``                             QIDO-RS instances of a study
``GET …/studies/{study_uid}/series/{series_uid}/instances``         QIDO-RS instances of a series
``GET …/studies/{study_uid}/metadata``                              WADO-RS metadata (study)
``GET …/studies/{study_uid}/series/{series_uid}/metadata``          WADO-RS metadata (series)
``GET …/series/{series_uid}/instances/{instance_uid}/metadata``     WADO-RS metadata (instance)
``GET …/series/{series_uid}/instances/{instance_uid}``              WADO-RS instance (a SEG whole)
``GET …/instances/{instance_uid}/frames/{frames}``                  WADO-RS frames (pixels)
``GET …/instances/{instance_uid}/bulk/{tag_path}``                  bulk data (Orthanc's form)
=================================================================  ===========================

Every route needs a signed-in reader (the ``preread_session`` cookie: 401 without one); only
GET is answered (405 otherwise), so there is no CSRF to check. Path ids are checked against
their formats first (:mod:`preread.api.ids`: 404 when malformed).

* The **study search** goes through :func:`~preread.api.access.listing_access` (a
  clinical-preread grant of the reader's tenant in force, else 403; each search audited) and
  answers only the tenant's studies that PreRead knows and whose grant covers them
  (:mod:`preread.dicomweb.search`): another tenant's StudyInstanceUID answers ``[]``.
* Every **study route** goes through :func:`~preread.api.access.study_access` with the
  reader's principal (:func:`preread.ui.access.reader_principal`): another tenant's study and
  an unknown one 404 alike, a grant not in force 403, the refusal audited — on every request.
  A granted access is audited as ``pixels.fetch`` once per reader session and study per
  :data:`~preread.dicomweb.ledger.WINDOW_S` (:mod:`preread.dicomweb.ledger`). A series or
  instance of another study under an allowed study's path is 404: Orthanc checks that each
  path names a real hierarchy ("not both in study … and in series …").

Then the request goes to Orthanc (:class:`~preread.dicomweb.relay.Relay`): JSON answers with
Orthanc's URLs made PreRead's, pixels streamed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from dicom_gateway.client import DicomwebEndpoint
from preread.api.access import StudyAccess, listing_access, study_access
from preread.api.deps import Services, ServicesDep
from preread.api.ids import check_path_ids
from preread.audit import AuditAction
from preread.audit.chain import Json
from preread.dicomweb.errors import DicomwebError
from preread.dicomweb.ledger import AccessLedger
from preread.dicomweb.relay import ANSWER_HEADERS, PUBLIC_ROOT, Relay, accept_of, json_answer
from preread.dicomweb.search import Search, allowed_studies
from preread.grants import Purpose
from preread.ui.access import reader_principal
from preread.ui.auth import XhrReader, current_session

__all__ = ["Proxy", "install", "router"]

DICOM_JSON = "application/dicom+json"
PIXELS = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
INSTANCE = 'multipart/related; type="application/dicom"'
_STUDY_UID = "0020000D"

router = APIRouter(prefix=PUBLIC_ROOT, include_in_schema=False)


@dataclass
class Proxy:
    """What the routes share: the relay to Orthanc and the audit ledger."""

    relay: Relay
    ledger: AccessLedger


def _proxy(request: Request) -> Proxy:
    proxy: Proxy = request.app.state.dicomweb
    return proxy


def _route(request: Request) -> str:
    return str(getattr(request.scope.get("route"), "name", None) or "dicomweb")


async def viewed_study(request: Request, services: ServicesDep, reader: XhrReader) -> StudyAccess:
    """A dependency: the route's ``{study_uid}`` for the signed-in reader, through the
    enforcement point as ``pixels.fetch``, recorded once per session and study per window."""
    session = current_session(request, services)
    assert session is not None  # xhr_reader found it, or answered 401
    ledger = _proxy(request).ledger
    uid = str(request.path_params["study_uid"])
    due = ledger.claim(session.id, uid)

    def detail(_: Request) -> dict[str, Json]:
        return {"via": "dicomweb", "session_id": session.id, "audit_window_s": ledger.window_s}

    try:
        return await study_access(
            request,
            services,
            reader_principal(reader),
            None,
            AuditAction.PIXELS_FETCH,
            Purpose.CLINICAL_PREREAD,
            detail,
            audit_success=due,
        )
    except BaseException:
        if due:  # not recorded: the next request records it
            ledger.release(session.id, uid)
        raise


ViewedStudy = Annotated[StudyAccess, Depends(viewed_study)]


async def _json(request: Request, path: str, params: list[tuple[str, str]]) -> Response:
    accept = accept_of(request.headers, DICOM_JSON)
    answer = await _proxy(request).relay.json(path, params, accept, route=_route(request))
    return await _written(answer)


async def _written(answer: Any) -> Response:
    if isinstance(answer, list) and len(answer) > 100:
        return await run_in_threadpool(json_answer, answer)
    return json_answer(answer)


async def _pixels(request: Request, path: str, default_accept: str = PIXELS) -> Response:
    accept = accept_of(request.headers, default_accept)
    return await _proxy(request).relay.stream(path, accept, route=_route(request))


@router.get("/studies", name="dicomweb_search_studies")
async def search_studies(request: Request, services: ServicesDep, reader: XhrReader) -> Response:
    """QIDO-RS Search for Studies (PS3.18 §10.6), over the reader's tenant's studies only."""
    who = await listing_access(request, services, reader_principal(reader))
    search = Search.parse(request.query_params)
    allowed = await run_in_threadpool(allowed_studies, services, who, search)
    if not allowed:
        return json_answer([])
    accept = accept_of(request.headers, DICOM_JSON)
    relay = _proxy(request).relay
    found = await relay.json(
        "/studies", search.study_params(allowed), accept, route=_route(request)
    )
    shown = set(allowed)
    kept = [s for s in found if isinstance(s, dict) and _study_uid(s) in shown]
    return await _written(kept)


def _study_uid(study: dict[str, Any]) -> str | None:
    element = study.get(_STUDY_UID)
    values = element.get("Value") if isinstance(element, dict) else None
    return values[0] if isinstance(values, list) and values and isinstance(values[0], str) else None


@router.get("/studies/{study_uid}/series", name="dicomweb_search_series")
async def search_series(request: Request, study_uid: str, _: ViewedStudy) -> Response:
    """QIDO-RS Search for Series of a study."""
    return await _json(
        request, f"/studies/{study_uid}/series", Search.parse(request.query_params).params()
    )


@router.get("/studies/{study_uid}/instances", name="dicomweb_search_study_instances")
async def search_study_instances(request: Request, study_uid: str, _: ViewedStudy) -> Response:
    """QIDO-RS Search for Instances of a study."""
    params = Search.parse(request.query_params).params()
    return await _json(request, f"/studies/{study_uid}/instances", params)


@router.get("/studies/{study_uid}/series/{series_uid}/instances", name="dicomweb_search_instances")
async def search_instances(
    request: Request, study_uid: str, series_uid: str, _: ViewedStudy
) -> Response:
    """QIDO-RS Search for Instances of a series."""
    params = Search.parse(request.query_params).params()
    return await _json(request, f"/studies/{study_uid}/series/{series_uid}/instances", params)


@router.get("/studies/{study_uid}/metadata", name="dicomweb_study_metadata")
async def study_metadata(request: Request, study_uid: str, _: ViewedStudy) -> Response:
    """WADO-RS Retrieve Study Metadata (PS3.18 §10.4)."""
    return await _json(request, f"/studies/{study_uid}/metadata", [])


@router.get("/studies/{study_uid}/series/{series_uid}/metadata", name="dicomweb_series_metadata")
async def series_metadata(
    request: Request, study_uid: str, series_uid: str, _: ViewedStudy
) -> Response:
    """WADO-RS Retrieve Series Metadata."""
    return await _json(request, f"/studies/{study_uid}/series/{series_uid}/metadata", [])


@router.get(
    "/studies/{study_uid}/series/{series_uid}/instances/{instance_uid}/metadata",
    name="dicomweb_instance_metadata",
)
async def instance_metadata(
    request: Request, study_uid: str, series_uid: str, instance_uid: str, _: ViewedStudy
) -> Response:
    """WADO-RS Retrieve Instance Metadata."""
    path = f"/studies/{study_uid}/series/{series_uid}/instances/{instance_uid}/metadata"
    return await _json(request, path, [])


@router.get(
    "/studies/{study_uid}/series/{series_uid}/instances/{instance_uid}",
    name="dicomweb_instance",
)
async def instance(
    request: Request, study_uid: str, series_uid: str, instance_uid: str, _: ViewedStudy
) -> Response:
    """WADO-RS Retrieve Instance (PS3.18 §10.4): the whole instance, streamed (OHIF fetches a
    multi-frame SEG so, before falling back to its frames one by one)."""
    path = f"/studies/{study_uid}/series/{series_uid}/instances/{instance_uid}"
    return await _pixels(request, path, INSTANCE)


@router.get(
    "/studies/{study_uid}/series/{series_uid}/instances/{instance_uid}/frames/{frames}",
    name="dicomweb_frames",
)
async def frames(
    request: Request,
    study_uid: str,
    series_uid: str,
    instance_uid: str,
    frames: str,
    _: ViewedStudy,
) -> Response:
    """WADO-RS Retrieve Frames (PS3.18 §10.4.1.1.3): the pixels, streamed."""
    path = f"/studies/{study_uid}/series/{series_uid}/instances/{instance_uid}/frames/{frames}"
    return await _pixels(request, path)


@router.get(
    "/studies/{study_uid}/series/{series_uid}/instances/{instance_uid}/bulk/{tag_path:path}",
    name="dicomweb_bulk",
)
async def bulk(
    request: Request,
    study_uid: str,
    series_uid: str,
    instance_uid: str,
    tag_path: str,
    _: ViewedStudy,
) -> Response:
    """Bulk data at the ``BulkDataURI`` Orthanc writes into metadata (a SEG's pixels), streamed."""
    path = f"/studies/{study_uid}/series/{series_uid}/instances/{instance_uid}/bulk/{tag_path}"
    return await _pixels(request, path)


async def _refused(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DicomwebError)
    return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=ANSWER_HEADERS)


def endpoint_of(services: Services) -> DicomwebEndpoint | None:
    """Orthanc's DICOMweb, from the study source (None: a folder, no DICOMweb)."""
    endpoint = getattr(services.source, "dicomweb_endpoint", None)
    return endpoint if isinstance(endpoint, DicomwebEndpoint) else None


def install(app: FastAPI, services: Services) -> Proxy:
    """Add the ``/dicomweb`` routes to ``app``, relayed to the DICOMweb of ``services``'
    Orthanc, with one pooled HTTP client while the app runs (its lifespan)."""
    proxy = Proxy(Relay(endpoint_of(services)), AccessLedger())
    app.state.dicomweb = proxy
    app.include_router(router, dependencies=[Depends(check_path_ids)])
    app.add_exception_handler(DicomwebError, _refused)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(running: Any) -> AsyncIterator[Any]:
        async with inner(running) as state, proxy.relay.running():
            yield state

    app.router.lifespan_context = lifespan
    return proxy
