"""The study review page: ``/ui/studies/{study_uid}`` and the pictures and actions under it.

=========================================================  ====================================
``GET  /ui/studies/{uid}``                                 the page: findings, key images,
                                                           verdict form, current review
``GET  /ui/studies/{uid}/key-images/{plane}.png?finding``  a finding's axial, coronal or
                                                           sagittal key image (PNG)
``GET  /ui/studies/{uid}/slice.png?index|finding``         an axial slice to add a nodule on
``POST /ui/studies/{uid}/added``                           measure a nodule at a clicked point
``POST /ui/studies/{uid}/review``                          sign the review (the form), then 303
                                                           back to the page
``GET  /ui/static/review.js``                              the page's keyboard and viewer
=========================================================  ====================================

Every study route goes through the enforcement point (:func:`preread.ui.access.reader_study`:
tenant → clinical-preread grant → audit) and is CSRF-checked (the router's
:func:`~preread.ui.csrf.require_csrf`). **Audit**: each request is one ``report.read`` record
naming its route and what it showed (``view``: the page, a key image with its plane and
finding, a slice, a measurement, a signature); the pixels are fetched from Orthanc once per
reading and process (``pixels.fetch``, :mod:`preread.ui.pixels`, kept in
:class:`~preread.volume_cache.VolumeCache`), and a signature adds ``review.sign`` and
``results.store`` (:func:`preread.reviews.sign_review`). The verdicts themselves are recorded
with the signed review, which ``review.sign`` names.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dicom_gateway.errors import GatewayError, ResourceNotFoundError
from preread.accounts import Reader
from preread.api.access import StudyAccess
from preread.api.bodies import RequestBody
from preread.api.deps import Services, ServicesDep
from preread.api.ids import UUID_PATTERN
from preread.audit.chain import Json
from preread.domain import NoduleType
from preread.reports.json import PreReadOut
from preread.results import NotAuthorizedError, ReportNotReadyError
from preread.reviews import (
    AddedNodule,
    ReviewConflictError,
    ReviewContext,
    ReviewDraft,
    Reviewer,
    ReviewError,
    ReviewNotStoredError,
    ReviewSubject,
    measure_added,
    review_subject,
    review_target,
    sign_review,
)
from preread.ui.access import PageRefused, reader_study
from preread.ui.auth import PageReader
from preread.ui.csrf import require_csrf
from preread.ui.pixels import StudyPixels, load_study_pixels, type_rule
from preread.ui.planes import Plane, key_png, slice_png
from preread.ui.review_form import Choice, ReviewForm, assessments, prefill, read_form
from preread.ui.review_page import page_context, point_text, same_reading
from preread.ui.templates import render

router = APIRouter(prefix="/ui", dependencies=[Depends(require_csrf)], include_in_schema=False)
_T = TypeVar("_T")
IMAGE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _view(name: str, *params: str) -> Callable[[Request], Mapping[str, Json]]:
    """What the audit record of a request adds: which view, and its parameters."""

    def detail(request: Request) -> Mapping[str, Json]:
        out: dict[str, Json] = {"view": name}
        for p in params:
            value = request.path_params.get(p, request.query_params.get(p))
            if value is not None:
                out[p] = str(value)[:32]
        return out

    return detail


PageAccess = Annotated[StudyAccess, Depends(reader_study(detail=_view("review")))]
KeyImageAccess = Annotated[
    StudyAccess, Depends(reader_study(detail=_view("key image", "plane", "finding")))
]
SliceAccess = Annotated[StudyAccess, Depends(reader_study(detail=_view("slice", "index")))]
MeasureAccess = Annotated[StudyAccess, Depends(reader_study(detail=_view("measure")))]
SignAccess = Annotated[StudyAccess, Depends(reader_study(detail=_view("sign")))]


class AddClick(RequestBody):
    """Where the reader clicked: axial slice ``index`` (0: the most superior) and the
    ``row`` / ``column`` in it, in voxels (fractions allowed), as ``slice.png`` shows it."""

    index: int = Field(ge=0, le=100_000)
    row: float = Field(ge=-1, le=100_000)
    column: float = Field(ge=-1, le=100_000)


class AddedOut(BaseModel):
    """A nodule measured at the reader's click, for confirmation; ``point`` goes into the
    form's ``added`` field (the click, measured again when signing)."""

    point: str
    centre_lps_mm: tuple[float, float, float]
    index: int = Field(description="the axial slice through its centre")
    long_axis_mm: float
    short_axis_mm: float
    long_axis_3d_mm: float
    volume_mm3: float
    mean_hu: float
    nodule_type: NoduleType
    solid_component_long_axis_mm: float | None
    images: dict[str, str] = Field(description="plane -> PNG data URL, the extent contoured")


# --- helpers ------------------------------------------------------------------------------


def _context(services: Services) -> ReviewContext:
    if services.source is None or services.grant_store is None:
        raise PageRefused(503, "This PreRead has no DICOM source: studies cannot be reviewed.")
    return ReviewContext(
        services.store, services.grant_store, services.auditor.audit, services.source
    )


def _reviewer(reader: Reader) -> Reviewer:
    """The reader as the reviews know them: by username, so that the signature's audit
    records name the same actor (``user:<username>``) as every other record of theirs."""
    return Reviewer(reader.username, reader.display_name or reader.username, reader.tenant)


def _subject_of(access: StudyAccess) -> ReviewSubject:
    """What the checked view holds, without reading the store again (no current review)."""
    job = access.view.report_job()
    preread = PreReadOut.model_validate(job.result)
    return ReviewSubject(access.study, job, preread, review_target(access.study, job), None)


def _pixels(services: Services, reader: Reader, access: StudyAccess) -> StudyPixels:
    """The reading's pixels, from the process's cache or Orthanc (502 when Orthanc has
    lost the series)."""
    ctx = _context(services)
    subject = _subject_of(access)
    assert services.volumes is not None
    try:
        pixels: StudyPixels = services.volumes.get(
            reader.tenant,
            ("review", subject.job.id),
            lambda: load_study_pixels(ctx, _reviewer(reader), subject),
        )
    except ResourceNotFoundError as exc:
        raise HTTPException(502, "the series the AI read is not in Orthanc any more") from exc
    return pixels


def _prefill(subject: ReviewSubject) -> dict[int, Choice]:
    """The current review's choices, when it reviews this reading."""
    return prefill(subject.current) if same_reading(subject) else {}


async def _threaded(fn: Callable[..., _T], *args: Any) -> _T:
    return await run_in_threadpool(fn, *args)


def _png(data: bytes) -> Response:
    return Response(data, media_type="image/png", headers=IMAGE_HEADERS)


def _data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


# --- the page -----------------------------------------------------------------------------


async def _subject(services: Services, access: StudyAccess) -> ReviewSubject:
    ctx = _context(services)
    try:
        return await _threaded(review_subject, ctx, access.who.tenant, access.study_uid)
    except ReportNotReadyError as exc:
        raise PageRefused(404, f"Nothing to review yet: {exc}") from exc
    except ReviewError as exc:
        raise PageRefused(409, f"This study cannot be reviewed: {exc}") from exc


@router.get("/studies/{study_uid}", name="ui_review")
async def review_page(
    request: Request,
    services: ServicesDep,
    access: PageAccess,
    study_uid: str,
    signed: Annotated[str | None, Query(pattern=UUID_PATTERN)] = None,
) -> HTMLResponse:
    """The study's AI findings to review, each with its key images and measurements."""
    subject = await _subject(services, access)
    context = page_context(subject, choices=_prefill(subject), signed=signed)
    return render(request, "review.html", context)


# --- pictures -----------------------------------------------------------------------------


@router.get("/studies/{study_uid}/key-images/{plane}.png", name="ui_review_key_image")
async def key_image(
    services: ServicesDep,
    reader: PageReader,
    access: KeyImageAccess,
    study_uid: str,
    plane: Plane,
    finding: Annotated[int, Query(ge=1, le=1_000_000)],
) -> Response:
    """AI finding ``finding``'s key image in ``plane`` (lung window, its contour drawn)."""
    pixels = await _threaded(_pixels, services, reader, access)
    found = next((f for f in pixels.preread.findings if f.label == finding), None)
    if found is None:
        raise HTTPException(404, f"the AI result has no finding {finding}")
    data = await _threaded(
        key_png, pixels.oriented, plane, found.center_lps_mm, pixels.voxels(found.label)
    )
    return _png(data)


@router.get("/studies/{study_uid}/slice.png", name="ui_review_slice")
async def axial_slice(
    services: ServicesDep,
    reader: PageReader,
    access: SliceAccess,
    study_uid: str,
    index: Annotated[int | None, Query(ge=0, le=100_000)] = None,
    finding: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> Response:
    """Axial slice ``index`` (0: the most superior; beyond the last: the last), or the one
    through AI finding ``finding``'s centre, or the middle one; the AI contours drawn. The
    headers ``X-Preread-Slice``, ``X-Preread-Slices`` and ``X-Preread-Grid`` (slices, rows,
    columns) say where it lies, for clicks (``POST …/added``)."""
    pixels = await _threaded(_pixels, services, reader, access)
    oriented = pixels.oriented
    if index is None and finding is not None:
        found = next((f for f in pixels.preread.findings if f.label == finding), None)
        if found is None:
            raise HTTPException(404, f"the AI result has no finding {finding}")
        z = round(float(oriented.from_lps(found.center_lps_mm)[0]))
        index = oriented.axial_index(min(max(z, 0), oriented.slices - 1))
    chosen = oriented.slices // 2 if index is None else min(index, oriented.slices - 1)
    data = await _threaded(slice_png, oriented, chosen, list(pixels.findings.values()))
    nz, ny, nx = oriented.shape
    headers = {
        **IMAGE_HEADERS,
        "X-Preread-Slice": str(chosen),
        "X-Preread-Slices": str(nz),
        "X-Preread-Grid": f"{nz},{ny},{nx}",
    }
    return Response(data, media_type="image/png", headers=headers)


# --- adding a nodule ----------------------------------------------------------------------


def _measure(
    services: Services, pixels: StudyPixels, lps: tuple[float, float, float]
) -> AddedNodule:
    rule = type_rule(
        services.settings.models_dir, pixels.preread.model.id, pixels.preread.model.version
    )
    return measure_added(pixels.volume, lps, type_rule=rule)


def _added_out(pixels: StudyPixels, added: AddedNodule) -> AddedOut:
    oriented = pixels.oriented
    mask = added.mask
    source = np.argwhere(mask.array) + np.asarray(mask.offset_kji)
    voxels = np.rint(oriented.from_source(source)).astype(np.int32)
    images = {p.value: _data_url(key_png(oriented, p, added.centre_lps_mm, voxels)) for p in Plane}
    z = round(float(oriented.from_lps(added.centre_lps_mm)[0]))
    return AddedOut(
        point=",".join(f"{v:.2f}" for v in added.click_lps_mm),
        centre_lps_mm=added.centre_lps_mm,
        index=oriented.axial_index(min(max(z, 0), oriented.slices - 1)),
        long_axis_mm=added.long_axis_mm,
        short_axis_mm=added.short_axis_mm,
        long_axis_3d_mm=added.long_axis_3d_mm,
        volume_mm3=added.volume_mm3,
        mean_hu=added.mean_hu,
        nodule_type=added.nodule_type,
        solid_component_long_axis_mm=added.solid_component_long_axis_mm,
        images=images,
    )


@router.post("/studies/{study_uid}/added", name="ui_review_measure", response_model=AddedOut)
async def measure(
    services: ServicesDep,
    reader: PageReader,
    access: MeasureAccess,
    study_uid: str,
    click: AddClick,
) -> AddedOut:
    """The nodule at the reader's click, its extent found from the pixels, for confirmation;
    422 naming what is there instead when nothing nodule-like is (``NoNoduleHereError``)."""
    pixels = await _threaded(_pixels, services, reader, access)
    oriented = pixels.oriented
    if click.index >= oriented.slices:
        raise HTTPException(422, f"the series has {oriented.slices} slices")
    lps = oriented.to_lps([oriented.axial_index(click.index), click.row, click.column])
    added = await _threaded(_measure, services, pixels, lps)
    return await _threaded(_added_out, pixels, added)


# --- signing ------------------------------------------------------------------------------


def _page(
    request: Request,
    subject: ReviewSubject,
    form: ReviewForm,
    status: int,
    *,
    error: str | None = None,
    conflict: str | None = None,
    keep_choices: bool = True,
) -> HTMLResponse:
    choices = form.choices if keep_choices else _prefill(subject)
    context = page_context(
        subject,
        choices=choices,
        clicks=[point_text(c) for c in form.clicks] if keep_choices else (),
        keep=form.keep if keep_choices else None,
        error=error,
        conflict=conflict,
    )
    return render(request, "review.html", context, status_code=status)


def _conflict(subject: ReviewSubject, form: ReviewForm) -> str | None:
    """Why the form no longer fits the study, in the reader's words (None: it fits)."""
    if form.job_id != subject.job.id:
        return (
            "The study was read again by the AI since you opened it: these are the new "
            "findings. Your review was not signed; review them and sign again."
        )
    current = subject.current
    if form.replaces != (current.id if current else None):
        if current is None:
            return "The review you were replacing is gone. Your review was not signed."
        return (
            f"{current.reviewer.name} signed review version {current.version} at "
            f"{current.signed_at:%Y-%m-%d %H:%M} UTC while you were reviewing. Your review was "
            "not signed: your choices are kept below; look at theirs (above), then sign to "
            "replace it."
        )
    return None


def _draft(
    services: Services,
    reader: Reader,
    access: StudyAccess,
    subject: ReviewSubject,
    form: ReviewForm,
) -> ReviewDraft:
    earlier = subject.current.added if subject.current and same_reading(subject) else ()
    kept = tuple(n for n in earlier if n.tracking_uid in form.keep)
    measured: tuple[AddedNodule, ...] = ()
    if form.clicks:
        pixels = _pixels(services, reader, access)
        measured = tuple(_measure(services, pixels, click) for click in form.clicks)
    return ReviewDraft(assessments(subject.target, form), kept + measured)


@router.post("/studies/{study_uid}/review", name="ui_review_sign", response_model=None)
async def sign(
    request: Request,
    services: ServicesDep,
    reader: PageReader,
    access: SignAccess,
    study_uid: str,
) -> Response:
    """Sign the reader's review (the form; :mod:`preread.ui.review_form`) and go back to the
    page, which shows it; a conflict (someone signed meanwhile, the study was read again), an
    incomplete form or a refusal is the page again saying so (409, 422, 403)."""
    subject = await _subject(services, access)
    try:
        form = read_form((await request.form()).multi_items())
    except ReviewError as exc:
        return _page(request, subject, ReviewForm(), 422, error=str(exc), keep_choices=False)
    problem = _conflict(subject, form)
    if problem is not None:
        same_reading = form.job_id == subject.job.id
        fresh = ReviewForm(subject.job.id, None, form.choices, form.clicks, form.keep)
        return _page(request, subject, fresh, 409, conflict=problem, keep_choices=same_reading)
    try:
        draft = await _threaded(_draft, services, reader, access, subject, form)
        ctx = _context(services)
        review = await _threaded(
            functools.partial(sign_review, replaces=form.replaces),
            ctx,
            _reviewer(reader),
            access.study_uid,
            form.job_id,
            draft,
        )
    except ReviewNotStoredError as exc:
        review = exc.review  # signed; the page says its SR is not in the study yet
    except ReviewConflictError as exc:
        fresh_subject = await _subject(services, access)
        return _page(request, fresh_subject, form, 409, conflict=f"Not signed: {exc}")
    except ReviewError as exc:
        return _page(request, subject, form, 422, error=f"Not signed: {exc}")
    except NotAuthorizedError as exc:
        raise PageRefused(403, f"Not authorized: {exc}") from exc
    except (GatewayError, ResourceNotFoundError) as exc:
        raise PageRefused(502, "Orthanc did not answer as expected: not signed.") from exc
    return RedirectResponse(f"/ui/studies/{access.study_uid}?signed={review.id}", 303)


# --- the script ---------------------------------------------------------------------------


@functools.cache
def _script() -> bytes:
    return resources.files("preread.ui").joinpath("static/review.js").read_bytes()


@router.get("/static/review.js", name="ui_review_script")
def script() -> Response:
    """The review page's script (keyboard, slice viewer, signing dialog)."""
    return Response(
        _script(),
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
