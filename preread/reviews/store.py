"""Signed reviews in the job store's database (table ``reviews``), tenant-scoped.

A review is written once, by :meth:`ReviewStore.sign`, in one transaction of the job store
with everything that goes with it: the review's row (its version one more than the study's and
model's newest, ``supersedes`` naming that one — a second review never overwrites the first),
the study record's ``updated_at`` (which announces the change to every cache keyed by it: the
API's view cache, through the store's change notifications, and the rendered reports, whose
key holds it), the ``preread.reviewed`` webhook messages (the outbox) and the ``review.sign``
audit record. Only ``stored_at`` changes later (:meth:`ReviewStore.mark_stored`, again with the
study's ``updated_at``).

Every lookup takes the caller's tenant and scopes its statement by it: another tenant's review
is missing (:class:`ReviewNotFoundError`), the same way.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, exists, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, aliased, sessionmaker

from preread.audit import AuditAction, AuditEvent, AuditLog, Outcome
from preread.audit.chain import Json
from preread.grants import Purpose
from preread.reviews.codec import decode_content, encode_content
from preread.reviews.domain import (
    AiFinding,
    Review,
    ReviewDraft,
    Reviewer,
    ReviewTarget,
)
from preread.reviews.errors import ReviewConflictError, ReviewNotFoundError
from preread.reviews.uids import added_tracking_uid, review_uid
from preread.store import JobState, JobStore, StoreError
from preread.store.database import READ_ONLY
from preread.store.schema import JobRow, ReviewRow, StudyRow
from preread.webhooks.outbox import enqueue_event, iso_utc

__all__ = ["REVIEWED", "ReviewStore", "reviewed_payload"]

REVIEWED = "preread.reviewed"
"""The webhook event of a signed review."""


def reviewed_payload(review: Review, now: datetime) -> dict[str, Any]:
    """The Standard Webhooks payload of a signed review: which review of which reading, its
    version and verdict counts, and where an authorized client reads the rest. No patient
    identifier, and no reviewer name (the API gives it to authorized clients)."""
    uid = review.study_instance_uid
    return {
        "type": REVIEWED,
        "timestamp": iso_utc(now),
        "data": {
            "review_id": review.id,
            "version": review.version,
            "supersedes": review.supersedes,
            "job_id": review.target.job_id,
            "study_instance_uid": uid,
            "model": {"id": review.target.model_id, "version": review.target.model_version},
            "assessments": {k: review.count(k) for k in ("accepted", "rejected", "modified")},
            "added": len(review.added),
            "links": {
                "reviews": f"/api/v1/studies/{uid}/reviews",
                "report": f"/api/v1/studies/{uid}/report",
            },
        },
    }


class ReviewStore:
    """Reviews on a :class:`~preread.store.JobStore`'s database (writes in its transactions,
    so its change notifications see them)."""

    def __init__(self, jobs: JobStore) -> None:
        self.jobs = jobs
        self._reader = sessionmaker(
            jobs.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )

    # --- writing ----------------------------------------------------------------------------

    def sign(
        self,
        target: ReviewTarget,
        reviewer: Reviewer,
        draft: ReviewDraft,
        *,
        replaces: str | None,
        at: datetime,
        audit: AuditLog,
        grant_id: str,
    ) -> Review:
        """Record ``draft`` as the newest review of ``target`` by ``reviewer`` (see the module
        docstring), signed ``at``.

        ``replaces`` is the current review the reader saw (None: none): when another review
        was signed meanwhile, or the reading is no longer the study's current result,
        :class:`ReviewConflictError`. The draft must be complete
        (:func:`~preread.reviews.domain.check_complete`; the service checks it).

        Raises:
            ReviewConflictError, StoreError, AuditError (nothing is recorded then).
        """
        review_id = str(uuid.uuid4())
        added = tuple(
            n if n.tracking_uid else replace(n, tracking_uid=str(added_tracking_uid(review_id, i)))
            for i, n in enumerate(draft.added, start=1)
        )
        segmented = bool(added) or any(a.kind == "modified" for a in draft.assessments)
        with self._writing() as session:
            self._check_reading(session, target)
            newest = session.scalars(
                _newest(target.study_instance_uid, target.model_id).with_for_update()
            ).first()
            current = None if newest is None else newest.id
            if current != replaces:
                raise ReviewConflictError(
                    f"study {target.study_instance_uid} has "
                    + ("no review yet" if current is None else f"review {current} now")
                    + (
                        ""
                        if replaces is None
                        else f", not {replaces} which this review was to supersede"
                    )
                    + ": reload the study and review again"
                )
            review = Review(
                id=review_id,
                target=target,
                reviewer=reviewer,
                signed_at=at,
                version=1 if newest is None else newest.version + 1,
                supersedes=current,
                assessments=draft.assessments,
                added=added,
                sr_series_uid=str(review_uid(review_id, "sr-series")),
                sr_sop_instance_uid=str(review_uid(review_id, "sr-instance")),
                seg_series_uid=str(review_uid(review_id, "seg-series")) if segmented else None,
                seg_sop_instance_uid=(
                    str(review_uid(review_id, "seg-instance")) if segmented else None
                ),
            )
            session.add(_row(review))
            try:
                session.flush()
            except IntegrityError as exc:  # a concurrent signature took this version
                raise ReviewConflictError(
                    f"another review of study {target.study_instance_uid} was signed at the "
                    "same time: reload the study and review again"
                ) from exc
            _touch_study(session, target.study_instance_uid, at)
            enqueue_event(
                session,
                tenant=target.tenant,
                event_type=REVIEWED,
                payload=reviewed_payload(review, at),
                now=at,
            )
            audit.record(sign_event(review, grant_id), session=session)
            return review

    def mark_stored(self, tenant: str, review_id: str, at: datetime) -> Review:
        """Record that the review's SR and SEG are in the study (the first time only)."""
        with self._writing() as session:
            row = _get(session, tenant, review_id, lock=True)
            if row.stored_at is None:
                row.stored_at = at
                _touch_study(session, row.study_instance_uid, at)
                session.flush()
            return _review(row)

    # --- reading ----------------------------------------------------------------------------

    def get(self, tenant: str, review_id: str) -> Review:
        """One of the tenant's reviews; :class:`ReviewNotFoundError` otherwise."""
        with self._reading() as session:
            return _review(_get(session, tenant, review_id))

    def history(
        self, tenant: str, study_uid: str, model_id: str | None = None
    ) -> builtins.list[Review]:
        """The tenant's reviews of a study (of one model when given), newest first."""
        stmt = (
            select(ReviewRow)
            .where(ReviewRow.tenant == tenant, ReviewRow.study_instance_uid == study_uid)
            .order_by(ReviewRow.signed_at.desc(), ReviewRow.version.desc(), ReviewRow.id)
        )
        if model_id is not None:
            stmt = stmt.where(ReviewRow.model_id == model_id)
        with self._reading() as session:
            return [_review(r) for r in session.scalars(stmt)]

    def current(self, tenant: str, study_uid: str, model_id: str) -> Review | None:
        """The newest review of the study's results of ``model_id`` (None: never reviewed)."""
        stmt = _newest(study_uid, model_id).where(ReviewRow.tenant == tenant)
        with self._reading() as session:
            row = session.scalars(stmt).first()
            return None if row is None else _review(row)

    def current_of(self, tenant: str, study_uid: str, model_id: str, job_id: str) -> Review | None:
        """The current review if it reviews the reading ``job_id`` (a newer reading of the
        study is unreviewed until someone reviews it)."""
        found = self.current(tenant, study_uid, model_id)
        return found if found is not None and found.target.job_id == job_id else None

    def signed(
        self,
        tenant: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        model_id: str | None = None,
        current_only: bool = False,
    ) -> Iterator[Review]:
        """The tenant's reviews signed in ``[since, until)``, oldest first (the learning loop
        reads verdicts this way); ``current_only``: only each study's and model's newest."""
        stmt = (
            select(ReviewRow)
            .where(ReviewRow.tenant == tenant)
            .order_by(ReviewRow.signed_at, ReviewRow.id)
        )
        if since is not None:
            stmt = stmt.where(ReviewRow.signed_at >= since)
        if until is not None:
            stmt = stmt.where(ReviewRow.signed_at < until)
        if model_id is not None:
            stmt = stmt.where(ReviewRow.model_id == model_id)
        if current_only:
            later = aliased(ReviewRow)
            stmt = stmt.where(
                ~exists().where(
                    later.study_instance_uid == ReviewRow.study_instance_uid,
                    later.model_id == ReviewRow.model_id,
                    later.version > ReviewRow.version,
                )
            )
        with self._reading() as session:
            rows = list(session.scalars(stmt))
        return (_review(r) for r in rows)

    def unstored(self, limit: int = 50) -> builtins.list[Review]:
        """Signed reviews whose SR/SEG are not in their study yet, oldest first (for a sweep
        that stores them: :func:`preread.reviews.service.store_review`)."""
        stmt = (
            select(ReviewRow)
            .where(ReviewRow.stored_at.is_(None))
            .order_by(ReviewRow.signed_at, ReviewRow.id)
            .limit(limit)
        )
        with self._reading() as session:
            return [_review(r) for r in session.scalars(stmt)]

    def is_current(self, review: Review) -> bool:
        """Whether no later review of the same study and model exists."""
        newest = self.current(review.tenant, review.study_instance_uid, review.target.model_id)
        return newest is not None and newest.id == review.id

    # --- sessions ---------------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        with self.jobs.transaction() as tx:
            yield tx.session

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        try:
            with self._reader.begin() as session:
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(f"reading reviews failed: {exc}") from exc

    @staticmethod
    def _check_reading(session: Session, target: ReviewTarget) -> None:
        state = session.scalar(
            select(JobRow.state).where(JobRow.id == target.job_id).with_for_update()
        )
        if state != JobState.DONE.value:
            raise ReviewConflictError(
                f"the reading {target.job_id} of study {target.study_instance_uid} is "
                f"{state or 'gone'}, no longer the study's current result: reload the study"
            )


def _newest(study_uid: str, model_id: str) -> Select[ReviewRow]:
    return (
        select(ReviewRow)
        .where(ReviewRow.study_instance_uid == study_uid, ReviewRow.model_id == model_id)
        .order_by(ReviewRow.version.desc())
        .limit(1)
    )


def _get(session: Session, tenant: str, review_id: str, *, lock: bool = False) -> ReviewRow:
    stmt = select(ReviewRow).where(ReviewRow.id == review_id, ReviewRow.tenant == tenant)
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalars(stmt).one_or_none()
    if row is None:
        raise ReviewNotFoundError(review_id)
    return row


def _touch_study(session: Session, study_uid: str, at: datetime) -> None:
    """Move the study record's ``updated_at`` forward (always: the render key must change)."""
    study = session.get(StudyRow, study_uid, with_for_update=True)
    if study is not None:
        study.updated_at = max(at, study.updated_at + timedelta(microseconds=1))
        session.flush()


def sign_event(review: Review, grant_id: str) -> AuditEvent:
    """The ``review.sign`` audit record of a review (no patient identifier)."""
    detail: dict[str, Json] = {
        "review_id": review.id,
        "job_id": review.target.job_id,
        "model": f"{review.target.model_id} {review.target.model_version}",
        "version": review.version,
        "supersedes": review.supersedes,
        "grant_id": grant_id,
        "accepted": review.count("accepted"),
        "rejected": review.count("rejected"),
        "modified": review.count("modified"),
        "added": len(review.added),
        "sr": review.sr_sop_instance_uid,
        "seg": review.seg_sop_instance_uid,
    }
    return AuditEvent(
        actor=f"user:{review.reviewer.user_id}",
        action=AuditAction.REVIEW_SIGN,
        outcome=Outcome.SUCCESS,
        tenant=review.tenant,
        purpose=Purpose.CLINICAL_PREREAD.value,
        study_instance_uid=review.study_instance_uid,
        detail=detail,
    )


def _row(review: Review) -> ReviewRow:
    t = review.target
    return ReviewRow(
        id=review.id,
        tenant=t.tenant,
        study_instance_uid=t.study_instance_uid,
        model_id=t.model_id,
        model_version=t.model_version,
        job_id=t.job_id,
        ai_sr_sop_uid=t.ai_sr_sop_instance_uid,
        version=review.version,
        supersedes_id=review.supersedes,
        reviewer_id=review.reviewer.user_id,
        reviewer_name=review.reviewer.name,
        signed_at=review.signed_at,
        content=encode_content(review.assessments, review.added),
        sr_series_uid=review.sr_series_uid,
        sr_sop_uid=review.sr_sop_instance_uid,
        seg_series_uid=review.seg_series_uid,
        seg_sop_uid=review.seg_sop_instance_uid,
        stored_at=review.stored_at,
    )


def _review(row: ReviewRow) -> Review:
    assessments, added = decode_content(row.content)
    return Review(
        id=row.id,
        target=ReviewTarget(
            tenant=row.tenant,
            study_instance_uid=row.study_instance_uid,
            job_id=row.job_id,
            model_id=row.model_id,
            model_version=row.model_version,
            ai_sr_sop_instance_uid=row.ai_sr_sop_uid,
            findings=tuple(
                sorted(
                    (AiFinding(a.finding_number, a.tracking_uid) for a in assessments),
                    key=lambda f: f.number,
                )
            ),
        ),
        reviewer=Reviewer(row.reviewer_id, row.reviewer_name, row.tenant),
        signed_at=row.signed_at,
        version=row.version,
        supersedes=row.supersedes_id,
        assessments=assessments,
        added=added,
        sr_series_uid=row.sr_series_uid,
        sr_sop_instance_uid=row.sr_sop_uid,
        seg_series_uid=row.seg_series_uid,
        seg_sop_instance_uid=row.seg_sop_uid,
        stored_at=row.stored_at,
    )
