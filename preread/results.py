"""Finished pre-reads as a tenant sees them: the lookups behind the report API.

Every lookup takes the caller's tenant. A study or job of another tenant raises exactly the
error a missing one does (same type, same message), so that an id cannot be probed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from preread.caches import ViewCache
from preread.errors import PrereadError
from preread.grants import Grant, GrantStore, Purpose, StudyScope
from preread.reports import PreReadOut
from preread.reports.context import ReportInput, ReportStudy
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


def tenant_study(store: JobStore, tenant: str, study_uid: str) -> StudyRecord:
    study = store.study(study_uid)
    if study is None or study.tenant != tenant:
        raise StudyNotFoundError(f"no study {study_uid}")
    return study


def tenant_job(store: JobStore, tenant: str, job_id: str) -> JobRecord:
    try:
        job = store.get(job_id)
    except JobNotFoundError:
        raise JobNotFoundError(job_id) from None
    study = store.study(job.study_instance_uid)
    if study is None or study.tenant != tenant:
        raise JobNotFoundError(job_id)
    return job


def current_report(
    store: JobStore,
    tenant: str,
    study_uid: str,
    model_id: str | None = None,
    *,
    views: ViewCache | None = None,
) -> tuple[StudyRecord, JobRecord]:
    """The study and its current done job (of ``model_id``, else the first model's).

    ``views`` remembers finished reads between calls (see :class:`ViewCache`); the tenant is
    checked on every call, cached or not.
    """
    key = (study_uid, model_id)
    hit = views.get(key) if views is not None else None
    if isinstance(hit, tuple):
        study, job = hit
        if study.tenant != tenant:
            raise StudyNotFoundError(f"no study {study_uid}")
        return study, job
    generation = views.generation if views is not None else 0
    found, current = store.study_view(study_uid, model_id)
    if found is None or found.tenant != tenant:
        raise StudyNotFoundError(f"no study {study_uid}")
    study = found
    done = [j for j in current if j.state is JobState.DONE and j.result is not None]
    if not done:
        if current:
            job = current[0]
            why = f": {job.reason}" if job.reason and job.state is not JobState.FAILED else ""
            raise ReportNotReadyError(
                f"no pre-read of study {study_uid}: job {job.id} is {job.state.value}{why}"
            )
        raise ReportNotReadyError(f"no pre-read of study {study_uid} yet")
    if views is not None:
        views.put(key, (study, done[0]), generation)
    return study, done[0]


def report_input(study: StudyRecord, job: JobRecord) -> ReportInput:
    """What the report formats render, from a done job and its study."""
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
    )
