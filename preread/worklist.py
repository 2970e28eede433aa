"""The radiologists' worklist: a tenant's studies with AI results, sorted, filtered and paged.

One row per study and model: the study's current (not superseded) job, its findings' count and
sizes (``jobs.largest_finding_mm``/``largest_solid_mm``, written when the job is done) and
whether a radiologist has signed a review of that very result (:mod:`preread.reviews`).

The default order is **priority**: the largest nodule with a solid component first (solid or
part-solid), then the largest finding of any type, then the newest study — what a radiologist
reads first. Lung-RADS and growth join the key once follow-up reading exists. Every query is
scoped by the tenant first; another tenant's studies are not in any page. Paging is by offset
(a worklist is read a page or two deep; ``bench/worklist.py`` measures 10,000 studies).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import InstrumentedAttribute, Session, defer, sessionmaker
from sqlalchemy.sql.elements import UnaryExpression

from preread.store import JobStore
from preread.store.database import READ_ONLY
from preread.store.errors import StoreError
from preread.store.schema import JobRow, ReviewRow, StudyRow
from preread.store.states import JobState

MAX_PAGE_SIZE = 200


class WorklistSort(StrEnum):
    PRIORITY = "priority"
    DATE = "date"
    FINDINGS = "findings"
    LARGEST = "largest"
    STATE = "state"


class Reviewed(StrEnum):
    ANY = "any"
    YES = "yes"
    NO = "no"


@dataclass(frozen=True)
class WorklistQuery:
    """What one page shows. Dates are DICOM dates (``YYYYMMDD``), inclusive."""

    tenant: str
    sort: WorklistSort = WorklistSort.PRIORITY
    descending: bool = True
    states: tuple[JobState, ...] = ()
    reviewed: Reviewed = Reviewed.ANY
    min_findings: int | None = None
    date_from: str | None = None
    date_to: str | None = None
    page: int = 1
    page_size: int = 50

    def __post_init__(self) -> None:
        if not self.tenant:
            raise ValueError("a worklist belongs to a tenant")
        if self.page < 1:
            raise ValueError(f"page must be >= 1, got {self.page}")
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, got {self.page_size}")
        if self.min_findings is not None and self.min_findings < 0:
            raise ValueError(f"min_findings must be >= 0, got {self.min_findings}")
        for name in ("date_from", "date_to"):
            value = getattr(self, name)
            if value is not None and not (len(value) == 8 and value.isdigit()):
                raise ValueError(f"{name} must be a date YYYYMMDD, got {value!r}")


@dataclass(frozen=True)
class WorklistRow:
    study_instance_uid: str
    patient_name: str
    patient_id: str
    accession_number: str
    study_date: str
    study_description: str
    job_id: str
    model_id: str
    model_version: str
    state: JobState
    findings_count: int | None
    largest_finding_mm: float | None
    largest_solid_mm: float | None
    finished_at: datetime | None
    review_version: int | None  # the newest signed review of this result; None: not reviewed
    reviewer_name: str | None
    reviewed_at: datetime | None


@dataclass(frozen=True)
class WorklistPage:
    rows: tuple[WorklistRow, ...]
    total: int
    query: WorklistQuery

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.query.page_size))


class Worklist:
    """Pages of a tenant's worklist, read from a :class:`~preread.store.JobStore`'s database."""

    def __init__(self, jobs: JobStore) -> None:
        self._reader = sessionmaker(
            jobs.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )

    def page(self, query: WorklistQuery) -> WorklistPage:
        with self._reading() as session:
            return worklist_page(session, query)

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        try:
            with self._reader.begin() as session:
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(f"reading the worklist failed: {exc}") from exc


def worklist_page(session: Session, query: WorklistQuery) -> WorklistPage:
    """One page of ``query`` (the tenant's condition comes first in every statement)."""
    reviewed = exists().where(ReviewRow.job_id == JobRow.id)
    where: list[ColumnElement[bool]] = [
        StudyRow.tenant == query.tenant,
        JobRow.state != JobState.SUPERSEDED.value,
        JobRow.shadow.is_(False),  # a shadow reading is never on a worklist
    ]
    if query.states:
        where.append(JobRow.state.in_([s.value for s in query.states]))
    if query.reviewed is Reviewed.YES:
        where.append(reviewed)
    elif query.reviewed is Reviewed.NO:
        where.append(~reviewed)
    if query.min_findings is not None:
        where.append(JobRow.findings_count >= query.min_findings)
    if query.date_from:
        where.append(StudyRow.study_date >= query.date_from)
    if query.date_to:
        where.append(StudyRow.study_date <= query.date_to)
    joined = and_(StudyRow.study_instance_uid == JobRow.study_instance_uid)
    total = session.scalar(
        select(func.count()).select_from(JobRow).join(StudyRow, joined).where(*where)
    )
    rows = session.execute(
        select(JobRow, StudyRow)
        .options(defer(JobRow.result), defer(JobRow.timings))  # the worklist shows neither
        .join(StudyRow, joined)
        .where(*where)
        .order_by(*_order(query))
        .limit(query.page_size)
        .offset((query.page - 1) * query.page_size)
    ).all()
    reviews = _newest_reviews(session, [job.id for job, _ in rows])
    return WorklistPage(
        tuple(_row(job, study, reviews.get(job.id)) for job, study in rows),
        int(total or 0),
        query,
    )


def _order(query: WorklistQuery) -> list[UnaryExpression[Any]]:
    def directed(column: InstrumentedAttribute[Any]) -> UnaryExpression[Any]:
        ordered = column.desc() if query.descending else column.asc()
        return ordered.nulls_last()

    newest = [directed(StudyRow.study_date), directed(StudyRow.study_time)]
    keys: list[UnaryExpression[Any]]
    if query.sort is WorklistSort.PRIORITY:
        keys = [directed(JobRow.largest_solid_mm), directed(JobRow.largest_finding_mm), *newest]
    elif query.sort is WorklistSort.DATE:
        keys = newest
    elif query.sort is WorklistSort.FINDINGS:
        keys = [directed(JobRow.findings_count), *newest]
    elif query.sort is WorklistSort.LARGEST:
        keys = [directed(JobRow.largest_finding_mm), *newest]
    else:
        keys = [directed(JobRow.state), *newest]
    return [*keys, JobRow.id.asc()]  # a total order: pages never repeat or skip a row


def _newest_reviews(session: Session, job_ids: list[str]) -> dict[str, ReviewRow]:
    if not job_ids:
        return {}
    newest: dict[str, ReviewRow] = {}
    for row in session.scalars(select(ReviewRow).where(ReviewRow.job_id.in_(job_ids))):
        if row.job_id not in newest or row.version > newest[row.job_id].version:
            newest[row.job_id] = row
    return newest


def _row(job: JobRow, study: StudyRow, review: ReviewRow | None) -> WorklistRow:
    return WorklistRow(
        study_instance_uid=study.study_instance_uid,
        patient_name=study.patient_name,
        patient_id=study.patient_id,
        accession_number=study.accession_number,
        study_date=study.study_date,
        study_description=study.study_description,
        job_id=job.id,
        model_id=job.model_id,
        model_version=job.model_version,
        state=JobState(job.state),
        findings_count=job.findings_count,
        largest_finding_mm=job.largest_finding_mm,
        largest_solid_mm=job.largest_solid_mm,
        finished_at=job.finished_at,
        review_version=review.version if review else None,
        reviewer_name=review.reviewer_name if review else None,
        reviewed_at=review.signed_at if review else None,
    )
