"""Finished pre-reads as a tenant sees them: the lookups behind the report API.

Every lookup takes the caller's tenant first: caches are keyed by it and database statements
are scoped by it, so a study or job of another tenant takes the same path as a missing one to
the same error (same type, same message, no id in it) — an id cannot be probed, not even by
timing. Whether the caller may *use* a study it owns is :func:`authorize` (grants), applied by
the API's one enforcement point, :mod:`preread.api.access`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from preread.caches import ViewCache
from preread.errors import PrereadError
from preread.grants import Grant, GrantStore, Purpose, StudyScope
from preread.reports import PreReadOut
from preread.reports.context import ReportInput, ReportStudy
from preread.reports.review import ReviewOut
from preread.store import JobNotFoundError, JobRecord, JobState, JobStore, StudyRecord


class StudyNotFoundError(PrereadError):
    """No such study for this tenant."""


class ReportNotReadyError(PrereadError):
    """The study is known but has no finished pre-read (yet)."""


class NotAuthorizedError(PrereadError):
    """No valid grant covers this use of the study for the caller's purpose of use."""


class GrantLookup(Protocol):
    """A :class:`~preread.grants.GrantStore` or a :class:`~preread.caches.GrantCache`."""

    def covering(
        self, study: StudyScope, purpose: Purpose, at: datetime | None = None
    ) -> tuple[Grant | None, str]: ...


def study_scope(study: StudyRecord) -> StudyScope:
    """What a grant's scope is compared with, from the study as the watcher recorded it."""
    return StudyScope.of(study.facts)


def authorize(grants: GrantLookup, study: StudyRecord, purpose_of_use: str) -> Grant:
    """The grant under which ``purpose_of_use`` may use ``study`` now, else
    :class:`NotAuthorizedError` saying why not."""
    uid = study.facts.study_instance_uid
    try:
        wanted = Purpose(purpose_of_use)
    except ValueError:
        raise NotAuthorizedError(f"unknown purpose of use {purpose_of_use!r}") from None
    grant, why = grants.covering(study_scope(study), wanted)
    if grant is None:
        raise NotAuthorizedError(
            f"the purpose of use {wanted.value} is not authorized for study {uid}: {why}"
        )
    return grant


def authorize_listing(grants: GrantStore, tenant: str, purpose_of_use: str) -> None:
    """Refuse a listing of the tenant's studies unless some grant for the purpose is in force
    (each study shown still needs its own grant to be read)."""
    try:
        wanted = Purpose(purpose_of_use)
    except ValueError:
        raise NotAuthorizedError(f"unknown purpose of use {purpose_of_use!r}") from None
    if not grants.list(tenant=tenant, purpose=wanted, active_at=datetime.now(UTC)):
        raise NotAuthorizedError(
            f"no valid {wanted.value} grant for this source: its studies cannot be listed"
        )


NO_STUDY = "no study with this StudyInstanceUID for this tenant"
"""The answer for another tenant's study and for a missing one alike (it names no id)."""


@dataclass(frozen=True)
class StudyView:
    """A study of the caller's tenant and its current jobs (of one model when asked).

    From :class:`~preread.caches.ViewCache` only the finished read is kept: then ``jobs`` is
    that one done job."""

    study: StudyRecord
    jobs: tuple[JobRecord, ...]

    @property
    def done(self) -> JobRecord | None:
        """The finished read that reports show: the newest done job with a result (after a
        promotion or a rollback's re-read, the study's current readings by two versions of a
        model: the later one)."""
        finished = [j for j in self.jobs if j.state is JobState.DONE and j.result]
        return max(finished, key=lambda j: (j.finished_at or j.updated_at, j.id), default=None)

    def report_job(self) -> JobRecord:
        """:attr:`done`, else :class:`ReportNotReadyError` saying why there is none."""
        done = self.done
        if done is not None:
            return done
        uid = self.study.facts.study_instance_uid
        if self.jobs:
            job = self.jobs[0]
            why = f": {job.reason}" if job.reason and job.state is not JobState.FAILED else ""
            raise ReportNotReadyError(
                f"no pre-read of study {uid}: job {job.id} is {job.state.value}{why}"
            )
        raise ReportNotReadyError(f"no pre-read of study {uid} yet")


def cached_view(
    views: ViewCache | None, tenant: str, study_uid: str, model_id: str | None = None
) -> StudyView | None:
    """``tenant``'s finished read of ``study_uid`` if ``views`` keeps it (memory only).

    The tenant is part of the key: another tenant's entries cannot answer, so another
    tenant's study misses here exactly like a missing one."""
    if views is None:
        return None
    hit = views.get((tenant, study_uid, model_id))
    return hit if isinstance(hit, StudyView) else None


def load_view(
    store: JobStore,
    tenant: str,
    study_uid: str,
    model_id: str | None = None,
    *,
    views: ViewCache | None = None,
) -> StudyView:
    """``tenant``'s study ``study_uid`` with its current jobs (of ``model_id``, else all), from
    the database with one tenant-scoped statement: another tenant's study and a missing one run
    the same statement, find nothing alike and raise the same :class:`StudyNotFoundError`.
    A finished read is kept in ``views`` (see :class:`~preread.caches.ViewCache`)."""
    generation = views.generation if views is not None else 0
    found, current = store.study_view(study_uid, model_id, tenant=tenant)
    if found is None:
        raise StudyNotFoundError(NO_STUDY)
    view = StudyView(found, current)
    done = view.done
    if views is not None and done is not None:
        views.put((tenant, study_uid, model_id), StudyView(found, (done,)), generation)
    return view


def tenant_job(store: JobStore, tenant: str, job_id: str) -> tuple[StudyRecord, JobRecord]:
    """``tenant``'s job ``job_id`` and its study (one tenant-scoped statement): another
    tenant's job raises the :class:`JobNotFoundError` of a missing one."""
    found = store.tenant_job(job_id, tenant)
    if found is None:
        raise JobNotFoundError(job_id)
    return found


def report_input(
    study: StudyRecord, job: JobRecord, review: ReviewOut | None = None
) -> ReportInput:
    """What the report formats render, from a done job and its study (and the current review
    of the job, when there is one: :meth:`preread.reviews.ReviewStore.current_of`)."""
    if job.result is None or job.finished_at is None or job.outputs.sr is None:
        raise ReportNotReadyError(f"job {job.id} has no stored result")
    f = study.facts
    return ReportInput(
        study=ReportStudy(
            tenant=f.tenant or "",
            study_instance_uid=f.study_instance_uid,
            patient_id=f.patient_id,
            issuer_of_patient_id=f.issuer_of_patient_id,
            patient_name=f.patient_name,
            patient_birth_date=f.patient_birth_date,
            patient_sex=f.patient_sex,
            accession_number=f.accession_number,
            study_date=f.study_date,
            study_time=f.study_time,
            study_description=f.study_description,
        ),
        preread=PreReadOut.model_validate(job.result),
        job_id=job.id,
        finished_at=job.finished_at,
        sr_sop_instance_uid=job.outputs.sr.sop_instance_uid,
        seg_sop_instance_uid=job.outputs.seg.sop_instance_uid if job.outputs.seg else None,
        review=review,
    )
