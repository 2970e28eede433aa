"""Signing a review: the service functions the web UI calls.

:func:`sign_review`, in this order:

1. the study, for the reviewer's tenant only (another tenant's study is missing:
   :class:`~preread.results.StudyNotFoundError`);
2. the grant: a ``clinical-preread`` grant in force must cover the study
   (:func:`preread.results.authorize`, the check the API's enforcement point makes); else
   :class:`~preread.results.NotAuthorizedError` with the reason, recorded as a refused
   ``review.sign``, and nothing is recorded or stored;
3. the reading: the job the reader reviewed must still be the study's current, done result
   (else :class:`ReviewConflictError`), and the draft must give each of its findings exactly
   one assessment, with added nodules measured on the series it read (:class:`ReviewError`
   naming the finding);
4. the record, in one transaction (:meth:`ReviewStore.sign`): the review with its version and
   the UIDs of its SR and SEG (derived from its id), the study's ``updated_at``, the
   ``preread.reviewed`` webhook messages and the ``review.sign`` audit record;
5. the objects (:func:`store_review`): the series read and the AI SEG are fetched, the review
   SEG (added and modified nodules) and SR built, the store recorded in the audit trail, and
   both stored in the study by STOW-RS (retried; the UIDs are fixed, so a retry stores nothing
   twice). When Orthanc does not take them, :class:`ReviewNotStoredError` carries the recorded
   review; :func:`store_review` stores it later (:meth:`ReviewStore.unstored` lists them).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pydicom
from pydicom.uid import Comprehensive3DSRStorage

from dicom_gateway.errors import GatewayError, OrthancError, ResourceNotFoundError
from dicom_gateway.source import SeriesInfo, StudySource, orthanc_id
from dicom_gateway.volume import assemble_volume
from preread.audit import AuditAction, AuditEvent, AuditLog, Outcome
from preread.domain import Volume
from preread.grants import Grant, GrantStore, Purpose, first_covering
from preread.reports.json import PreReadOut
from preread.reports.series import InstanceRef
from preread.results import NotAuthorizedError, authorize, load_view, study_scope
from preread.reviews.domain import (
    AiFinding,
    Review,
    ReviewDraft,
    Reviewer,
    ReviewTarget,
    check_complete,
)
from preread.reviews.errors import ReviewConflictError, ReviewError, ReviewNotStoredError
from preread.reviews.seg import build_review_seg
from preread.reviews.sources import ReviewSources
from preread.reviews.sr import build_review_sr
from preread.reviews.store import ReviewStore
from preread.store import JobRecord, JobState, JobStore, StudyRecord

__all__ = [
    "STORE_RETRY_DELAYS_S",
    "ReviewContext",
    "ReviewSubject",
    "review_sources",
    "review_subject",
    "review_target",
    "series_volume",
    "sign_review",
    "store_review",
]

log = logging.getLogger(__name__)

STORE_RETRY_DELAYS_S: tuple[float, ...] = (0.5, 2.0)
"""Seconds to wait before each further STOW-RS of a review's SR and SEG."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ReviewContext:
    """What signing needs, built once per process and passed in (the API's ``Services``
    have each part: ``store``, ``grant_store``, ``source``, and an ``AuditLog`` on the
    store's engine)."""

    store: JobStore
    grants: GrantStore
    audit: AuditLog
    source: StudySource
    clock: Callable[[], datetime] = utcnow
    store_retry_delays_s: tuple[float, ...] = STORE_RETRY_DELAYS_S
    reviews: ReviewStore = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "reviews", ReviewStore(self.store))


@dataclass(frozen=True)
class ReviewSubject:
    """What a reader reviews: the study, its current done reading (``job``), the AI result
    (``preread``), the findings to assess (``target``) and the current review, if any (pass
    its id as ``replaces`` when signing)."""

    study: StudyRecord
    job: JobRecord
    preread: PreReadOut
    target: ReviewTarget
    current: Review | None


def review_target(study: StudyRecord, job: JobRecord) -> ReviewTarget:
    """The AI result of a done reading as a review sees it.

    Raises:
        ReviewError: the job has no stored result or SR.
    """
    if job.state is not JobState.DONE or job.result is None or job.outputs.sr is None:
        raise ReviewError(f"the reading {job.id} has no stored result to review ({job.state})")
    preread = PreReadOut.model_validate(job.result)
    return ReviewTarget(
        tenant=study.facts.tenant or "",
        study_instance_uid=study.facts.study_instance_uid,
        job_id=job.id,
        model_id=job.model_id,
        model_version=job.model_version,
        ai_sr_sop_instance_uid=job.outputs.sr.sop_instance_uid,
        findings=tuple(AiFinding(f.label, f.tracking_uid) for f in preread.findings),
    )


def review_subject(
    ctx: ReviewContext, tenant: str, study_uid: str, model_id: str | None = None
) -> ReviewSubject:
    """The tenant's study with its current done reading (of ``model_id``, else the first) and
    its current review. A lookup, like :func:`preread.results.load_view`: the caller's access
    check (grant, audit) comes first.

    Raises:
        StudyNotFoundError, ReportNotReadyError (no done reading), ReviewError.
    """
    view = load_view(ctx.store, tenant, study_uid, model_id)
    job = view.report_job()
    target = review_target(view.study, job)
    current = ctx.reviews.current(tenant, study_uid, job.model_id)
    return ReviewSubject(
        study=view.study,
        job=job,
        preread=PreReadOut.model_validate(job.result),
        target=target,
        current=current,
    )


def series_volume(ctx: ReviewContext, reviewer: Reviewer, subject: ReviewSubject) -> Volume:
    """The series the AI read, as a volume (HU, in the order of the review's masks), for
    :func:`~preread.reviews.measure.measure_added`: a pixel access by the reader, under a
    clinical-preread grant in force (a refusal is audited and raises
    :class:`~preread.results.NotAuthorizedError`), recorded as ``pixels.fetch`` before it
    happens. Fetch it once per study opened: it is the whole series.
    """
    job = subject.job
    if job.series_instance_uid is None:
        raise ReviewError(f"the reading {job.id} names no series")
    grant = _authorize(ctx, reviewer, subject.study, job.id, AuditAction.ACCESS_REFUSED)
    ctx.audit.record(
        AuditEvent(
            actor=f"user:{reviewer.user_id}",
            action=AuditAction.PIXELS_FETCH,
            outcome=Outcome.SUCCESS,
            tenant=reviewer.tenant,
            purpose=Purpose.CLINICAL_PREREAD.value,
            study_instance_uid=subject.study.facts.study_instance_uid,
            detail={"job_id": job.id, "grant_id": grant.id, "series": job.series_instance_uid},
        )
    )
    datasets = ctx.source.series_datasets(
        subject.study.facts.study_instance_uid, job.series_instance_uid
    )
    return assemble_volume(datasets, release_pixel_data=True)


def sign_review(
    ctx: ReviewContext,
    reviewer: Reviewer,
    study_uid: str,
    job_id: str,
    draft: ReviewDraft,
    *,
    replaces: str | None = None,
) -> Review:
    """Sign ``draft``, ``reviewer``'s review of the reading ``job_id`` of ``study_uid`` (see
    the module docstring); ``replaces`` is the current review the reader saw (None: none).

    Returns:
        The review, recorded and stored in the study (``stored_at`` set).

    Raises:
        StudyNotFoundError: no such study for the reviewer's tenant.
        NotAuthorizedError: no clinical-preread grant in force covers the study (the message
            says why; recorded as a refused ``review.sign``; nothing recorded or stored).
        ReviewConflictError: the reading is no longer the study's current result, or another
            review was signed since the reader opened the study.
        ReviewError: the draft is incomplete or does not fit the result (naming the finding).
        ReviewNotStoredError: recorded, but Orthanc did not take the SR/SEG (retry with
            :func:`store_review`).
        StoreError, AuditError: the database or the audit trail failed (nothing recorded).
    """
    view = load_view(ctx.store, reviewer.tenant, study_uid)
    grant = _authorize(ctx, reviewer, view.study, job_id)
    job = next((j for j in view.jobs if j.id == job_id), None)
    if job is None or job.state is not JobState.DONE:
        shown = "gone" if job is None else job.state.value
        raise ReviewConflictError(
            f"the reading {job_id} is not the current result of study {study_uid} ({shown}): "
            "reload the study"
        )
    target = review_target(view.study, job)
    check_complete(target.findings, draft)
    _check_masks(ctx, view.study, job, draft)
    review = ctx.reviews.sign(
        target,
        reviewer,
        draft,
        replaces=replaces,
        at=ctx.clock(),
        audit=ctx.audit,
        grant_id=grant.id,
    )
    log.info("review %s (version %d) of job %s signed", review.id, review.version, job.id)
    return _store(ctx, review, view.study, job, grant)


def store_review(ctx: ReviewContext, tenant: str, review_id: str) -> Review:
    """Store a signed review's SR and SEG in its study (again: the same instances), under a
    clinical-preread grant in force; a review already stored is stored again, harmlessly.

    Raises:
        ReviewNotFoundError, NotAuthorizedError, ReviewNotStoredError, ReviewError.
    """
    review = ctx.reviews.get(tenant, review_id)
    study = ctx.store.study(review.study_instance_uid)
    if study is None or study.facts.tenant != tenant:
        raise ReviewError(f"the study of review {review_id} is no longer recorded")
    grant = _authorize(ctx, review.reviewer, study, review.target.job_id)
    job = ctx.store.get(review.target.job_id)
    return _store(ctx, review, study, job, grant)


def store_unstored(ctx: ReviewContext, limit: int = 50) -> int:
    """Store the SR/SEG of signed reviews that did not reach their study (Orthanc down when
    they were signed), oldest first; returns how many were stored. One that still cannot be
    stored (Orthanc away, the grant gone) stays for the next sweep, logged without patient
    data; the others go on. :meth:`preread.service.Service.tick` runs it at each reconcile."""
    stored = 0
    for review in ctx.reviews.unstored(limit):
        try:
            store_review(ctx, review.tenant, review.id)
        except (ReviewNotStoredError, NotAuthorizedError, ReviewError) as exc:
            log.warning("review %s not stored yet: %s", review.id, type(exc).__name__)
            continue
        stored += 1
    return stored


# --- steps ------------------------------------------------------------------------------------


def _authorize(
    ctx: ReviewContext,
    reviewer: Reviewer,
    study: StudyRecord,
    job_id: str,
    refused_as: AuditAction = AuditAction.REVIEW_SIGN,
) -> Grant:
    """The clinical-preread grant in force for ``study`` (:func:`preread.results.authorize`);
    a refusal names the reason, also for a grant that is no longer in force (revoked, expired),
    and is audited."""
    try:
        return authorize(ctx.grants, study, Purpose.CLINICAL_PREREAD.value)
    except NotAuthorizedError as refused:
        exc = _why_not(ctx, study) or refused
        ctx.audit.record(
            AuditEvent(
                actor=f"user:{reviewer.user_id}",
                action=refused_as,
                outcome=Outcome.REFUSED,
                tenant=reviewer.tenant,
                purpose=Purpose.CLINICAL_PREREAD.value,
                study_instance_uid=study.facts.study_instance_uid,
                detail={"job_id": job_id, "reason": str(exc)},
            )
        )
        raise exc from None


def _why_not(ctx: ReviewContext, study: StudyRecord) -> NotAuthorizedError | None:
    """The refusal with the reason of each of the source's clinical-preread grants, the ones
    no longer in force included (the lookup only sees those in force)."""
    scope = study_scope(study)
    grants = ctx.grants.list(tenant=scope.tenant, purpose=Purpose.CLINICAL_PREREAD)
    if not grants:
        return None
    _, why = first_covering(grants, scope, Purpose.CLINICAL_PREREAD, ctx.clock())
    return NotAuthorizedError(
        f"the purpose of use {Purpose.CLINICAL_PREREAD.value} is not authorized for study "
        f"{study.facts.study_instance_uid}: {why}"
    )


def _check_masks(
    ctx: ReviewContext, study: StudyRecord, job: JobRecord, draft: ReviewDraft
) -> None:
    """Added nodules must have been measured on the series the AI read (its headers only:
    :func:`_slices`, and the Rows and Columns every slice of the series shares)."""
    if not draft.added or job.series_instance_uid is None:
        return
    f = study.facts
    info = ctx.source.series(
        orthanc_id(f.patient_id, f.study_instance_uid, job.series_instance_uid)
    )
    rows, columns = info.sample.rows, info.sample.columns
    expected = (_slices(info), rows, columns)
    for n, added in enumerate(draft.added, start=1):
        if added.mask.grid_shape != expected:
            raise ReviewError(
                f"added nodule {n} was measured on a grid of {added.mask.grid_shape}, the series "
                f"the AI read is {expected}: measure it on that series"
            )


def _slices(info: SeriesInfo) -> int:
    """The slices of the series the AI read, from its header facts: its single-frame images,
    or the frames of its one multi-frame image (Number of Frames, PS3.3 C.7.6.6).

    Raises:
        ReviewError: the series holds several instances, multi-frame ones among them: the
            review's SEG, which holds the added nodules, derives from single-frame images or
            from one multi-frame image (:func:`preread.reports.seg.derivation_images`).
    """
    frames = info.sample.number_of_frames
    if frames == 1:
        return info.instance_count
    if info.instance_count == 1:
        return frames
    raise ReviewError(
        f"the series the AI read holds {info.instance_count} instances, multi-frame ones "
        "among them: a nodule a reader adds is stored in a SEG, which derives from "
        "single-frame images or from one multi-frame image"
    )


def review_sources(
    ctx: ReviewContext, review: Review, study: StudyRecord, job: JobRecord
) -> ReviewSources:
    f = study.facts
    sr, seg = job.outputs.sr, job.outputs.seg
    if job.result is None or sr is None or job.series_instance_uid is None:
        raise ReviewError(f"the reading {job.id} has no stored result")
    images = ctx.source.series_datasets(f.study_instance_uid, job.series_instance_uid)
    ai_seg = None
    if seg is not None:
        data = ctx.source.instance_file(
            f.patient_id, f.study_instance_uid, seg.series_instance_uid, seg.sop_instance_uid
        )
        ai_seg = pydicom.dcmread(io.BytesIO(data))
    previous = None
    if review.supersedes is not None:
        before = ctx.reviews.get(review.tenant, review.supersedes)
        previous = InstanceRef(
            f.study_instance_uid,
            before.sr_series_uid,
            before.sr_sop_instance_uid,
            str(Comprehensive3DSRStorage),
        )
    return ReviewSources(
        preread=PreReadOut.model_validate(job.result),
        images=images,
        ai_seg=ai_seg,
        ai_sr=InstanceRef(
            f.study_instance_uid,
            sr.series_instance_uid,
            sr.sop_instance_uid,
            str(Comprehensive3DSRStorage),
        ),
        previous_sr=previous,
    )


def _store(
    ctx: ReviewContext, review: Review, study: StudyRecord, job: JobRecord, grant: Grant
) -> Review:
    ctx.audit.record(
        AuditEvent(
            actor=f"user:{review.reviewer.user_id}",
            action=AuditAction.RESULTS_STORE,
            outcome=Outcome.SUCCESS,
            tenant=review.tenant,
            purpose=Purpose.CLINICAL_PREREAD.value,
            study_instance_uid=review.study_instance_uid,
            detail={
                "review_id": review.id,
                "job_id": job.id,
                "grant_id": grant.id,
                "sr": review.sr_sop_instance_uid,
                "seg": review.seg_sop_instance_uid,
            },
        )
    )
    try:
        sources = review_sources(ctx, review, study, job)
        seg = build_review_seg(review, sources)
        sr = build_review_sr(review, sources, seg)
        datasets = [e.dataset for e in (seg, sr) if e is not None]
        _stow(ctx, datasets)
    except (GatewayError, ResourceNotFoundError) as exc:
        raise ReviewNotStoredError(review, str(exc)) from exc
    except ReviewError as exc:
        raise ReviewNotStoredError(review, str(exc)) from exc
    return ctx.reviews.mark_stored(review.tenant, review.id, ctx.clock())


def _stow(ctx: ReviewContext, datasets: list[pydicom.Dataset]) -> None:
    """STOW-RS, again after each of the context's delays while Orthanc does not take them; a
    client error (4xx other than 408/409/429) is not retried."""
    delays = ctx.store_retry_delays_s
    for attempt in range(len(delays) + 1):
        try:
            ctx.source.store(datasets)
            return
        except OrthancError as exc:
            status = exc.status
            if status is not None and 400 <= status < 500 and status not in (408, 409, 429):
                raise
            if attempt == len(delays):
                raise
            log.warning("review objects not stored (try %d): %s", attempt + 1, exc)
            time.sleep(delays[attempt])
