"""Reading the job store: pure conversions from rows to records, and the queries."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from preread.store.errors import JobNotFoundError
from preread.store.records import (
    JobOutputs,
    JobPage,
    JobRecord,
    SeriesDecision,
    StoredObject,
    StudyFacts,
    StudyFilter,
    StudyFingerprint,
    StudyPage,
    StudyRecord,
    StudySummary,
    TenantJob,
)
from preread.store.schema import (
    BackfillItemRow,
    JobRow,
    SeriesDecisionRow,
    StudyRow,
    WatcherStateRow,
)
from preread.store.states import JobState


def _stored(series: str | None, sop: str | None, orthanc: str | None) -> StoredObject | None:
    if series is None or sop is None:
        return None
    return StoredObject(series, sop, orthanc)


def job_record(row: JobRow) -> JobRecord:
    """The record of a job row (a detached, immutable copy)."""
    timings: dict[str, Any] = dict(row.timings or {})
    return JobRecord(
        id=row.id,
        study_instance_uid=row.study_instance_uid,
        orthanc_study_id=row.orthanc_study_id,
        model_id=row.model_id,
        model_version=row.model_version,
        state=JobState(row.state),
        attempts=row.attempts,
        fingerprint=StudyFingerprint.from_token(row.study_fingerprint),
        rerun_fingerprint=(
            None
            if row.rerun_fingerprint is None
            else StudyFingerprint.from_token(row.rerun_fingerprint)
        ),
        series_instance_uid=row.series_instance_uid,
        reason=row.reason,
        reason_code=row.reason_code,
        provider_requested=row.provider_requested,
        provider_used=row.provider_used,
        provider_warning=row.provider_warning,
        timings={str(k): float(v) for k, v in timings.items()},
        result=None if row.result is None else dict(row.result),
        findings_count=row.findings_count,
        outputs=JobOutputs(
            sr=_stored(row.sr_series_uid, row.sr_sop_uid, row.orthanc_sr_series_id),
            seg=_stored(row.seg_series_uid, row.seg_sop_uid, row.orthanc_seg_series_id),
            sc=tuple(
                StoredObject(row.sc_series_uid, sop, row.orthanc_sc_series_id)
                for sop in (row.sc_sop_uids or "").split()
                if row.sc_series_uid
            ),
            kos=_stored(row.kos_series_uid, row.kos_sop_uid, row.orthanc_kos_series_id),
        ),
        outputs_removed_at=row.outputs_removed_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        supersedes=row.supersedes_job_id,
        superseded_by=row.superseded_by,
        shadow=bool(row.shadow),
    )


def job_row(session: Session, job_id: str, *, lock: bool = False) -> JobRow:
    """The row of job ``job_id``, read afresh (and locked for update when ``lock``)."""
    stmt = select(JobRow).where(JobRow.id == job_id).execution_options(populate_existing=True)
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalars(stmt).one_or_none()
    if row is None:
        raise JobNotFoundError(job_id)
    return row


def get_job(session: Session, job_id: str) -> JobRecord:
    return job_record(job_row(session, job_id))


def current_for_study(
    session: Session,
    study_instance_uid: str,
    model_id: str | None = None,
    *,
    include_shadow: bool = False,
) -> tuple[JobRecord, ...]:
    """The current job of each model version for the study, by model id and version (shadow
    readings only when ``include_shadow``)."""
    stmt = select(JobRow).where(
        JobRow.study_instance_uid == study_instance_uid, JobRow.state != JobState.SUPERSEDED.value
    )
    if not include_shadow:
        stmt = stmt.where(JobRow.shadow.is_(False))
    if model_id is not None:
        stmt = stmt.where(JobRow.model_id == model_id)
    rows = session.scalars(stmt.order_by(JobRow.model_id, JobRow.model_version)).all()
    return tuple(job_record(r) for r in rows)


def history(
    session: Session, study_instance_uid: str, model_id: str | None = None
) -> tuple[JobRecord, ...]:
    """Every job of the study, superseded ones included, oldest first."""
    stmt = select(JobRow).where(JobRow.study_instance_uid == study_instance_uid)
    if model_id is not None:
        stmt = stmt.where(JobRow.model_id == model_id)
    rows = session.scalars(stmt.order_by(JobRow.created_at, JobRow.id)).all()
    return tuple(job_record(r) for r in rows)


def list_studies(
    session: Session,
    where: StudyFilter,
    *,
    limit: int = 50,
    offset: int = 0,
) -> StudyPage:
    """Studies matching ``where``, newest change first, each with all its current jobs (of
    ``where.model_id`` only, when given) and its study record (None for a study known only by
    its jobs)."""
    if limit < 1 or offset < 0:
        raise ValueError(f"limit must be >= 1 and offset >= 0, got {limit}, {offset}")
    scope = [JobRow.state != JobState.SUPERSEDED.value]
    if not where.include_shadow:
        scope.append(JobRow.shadow.is_(False))
    if where.model_id is not None:
        scope.append(JobRow.model_id == where.model_id)
    match = list(scope)
    if where.states:
        match.append(JobRow.state.in_([JobState(s).value for s in where.states]))
    if where.has_findings is not None:
        match.append(JobRow.state == JobState.DONE.value)
        match.append(
            JobRow.findings_count > 0 if where.has_findings else JobRow.findings_count == 0
        )
    stmt = select(JobRow.study_instance_uid, func.max(JobRow.updated_at).label("last"))
    if where.tenant is not None or where.study_date_from or where.study_date_to:
        stmt = stmt.join(StudyRow, StudyRow.study_instance_uid == JobRow.study_instance_uid)
        if where.tenant is not None:
            match.append(StudyRow.tenant == where.tenant)
        if where.study_date_from:
            match.append(StudyRow.study_date >= where.study_date_from)
        if where.study_date_to:
            match.append(StudyRow.study_date <= where.study_date_to)
    studies = stmt.where(*match).group_by(JobRow.study_instance_uid).subquery()
    total = session.scalar(select(func.count()).select_from(studies)) or 0
    uids = session.scalars(
        select(studies.c.study_instance_uid)
        .order_by(studies.c.last.desc(), studies.c.study_instance_uid)
        .limit(limit)
        .offset(offset)
    ).all()
    rows = session.scalars(
        select(JobRow)
        .where(*scope, JobRow.study_instance_uid.in_(uids))
        .order_by(JobRow.model_id, JobRow.model_version)
    ).all()
    records = {
        r.study_instance_uid: study_record(r)
        for r in session.scalars(select(StudyRow).where(StudyRow.study_instance_uid.in_(uids)))
    }
    jobs: dict[str, list[JobRecord]] = {uid: [] for uid in uids}
    for row in rows:
        jobs[row.study_instance_uid].append(job_record(row))
    items = tuple(
        StudySummary(
            study_instance_uid=uid,
            orthanc_study_id=max(js, key=lambda j: j.updated_at).orthanc_study_id,
            updated_at=max(j.updated_at for j in js),
            jobs=tuple(js),
            study=records.get(uid),
        )
        for uid, js in jobs.items()
        if js
    )
    return StudyPage(items=items, total=total, limit=limit, offset=offset)


def list_jobs(
    session: Session,
    *,
    states: Collection[JobState] = (),
    tenant: str | None = None,
    limit: int = 50,
) -> JobPage:
    """Jobs in ``states`` (default: every current one, i.e. all but superseded) of ``tenant``'s
    studies (None: every tenant's, for operators), newest change first, each with its study's
    tenant."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    match: list[ColumnElement[bool]] = [
        JobRow.state.in_([JobState(s).value for s in states])
        if states
        else JobRow.state != JobState.SUPERSEDED.value
    ]
    if tenant is not None:
        match.append(StudyRow.tenant == tenant)
    joined = select(JobRow, StudyRow.tenant).outerjoin(
        StudyRow, StudyRow.study_instance_uid == JobRow.study_instance_uid
    )
    total = session.scalar(select(func.count()).select_from(joined.where(*match).subquery())) or 0
    rows = session.execute(
        joined.where(*match).order_by(JobRow.updated_at.desc(), JobRow.id).limit(limit)
    ).all()
    items = tuple(TenantJob(job_record(row), owner) for row, owner in rows)
    return JobPage(items=items, total=total, limit=limit)


def study_record(row: StudyRow) -> StudyRecord:
    return StudyRecord(
        facts=StudyFacts(
            study_instance_uid=row.study_instance_uid,
            orthanc_study_id=row.orthanc_study_id,
            tenant=row.tenant,
            sender_aet=row.sender_aet,
            patient_id=row.patient_id,
            issuer_of_patient_id=row.issuer_of_patient_id,
            patient_name=row.patient_name,
            patient_birth_date=row.patient_birth_date,
            patient_sex=row.patient_sex,
            accession_number=row.accession_number,
            study_date=row.study_date,
            study_time=row.study_time,
            study_description=row.study_description,
            modalities=row.modalities,
        ),
        first_seen_at=row.first_seen_at,
        updated_at=row.updated_at,
    )


def get_study(session: Session, study_instance_uid: str) -> StudyRecord | None:
    """The study record, or None when the watcher never recorded the study."""
    row = session.get(StudyRow, study_instance_uid)
    return None if row is None else study_record(row)


def study_view(
    session: Session, study_instance_uid: str, model_id: str | None = None, *, tenant: str
) -> tuple[StudyRecord | None, tuple[JobRecord, ...]]:
    """The study record and its current jobs (of ``model_id`` when given), in one statement
    (what every report request needs: the tenant and the current result), if the study is
    ``tenant``'s: another tenant's study and a missing one run the same statement and find
    nothing alike."""
    on = [
        JobRow.study_instance_uid == StudyRow.study_instance_uid,
        JobRow.state != JobState.SUPERSEDED.value,
        JobRow.shadow.is_(False),  # a shadow reading never reaches a client
    ]
    if model_id is not None:
        on.append(JobRow.model_id == model_id)
    rows = session.execute(
        select(StudyRow, JobRow)
        .outerjoin(JobRow, and_(*on))
        .where(StudyRow.study_instance_uid == study_instance_uid, StudyRow.tenant == tenant)
        .order_by(JobRow.model_id, JobRow.model_version)
    ).all()
    if not rows:
        return None, ()
    study = study_record(rows[0][0])
    return study, tuple(job_record(job) for _, job in rows if job is not None)


def tenant_job(session: Session, job_id: str, tenant: str) -> tuple[StudyRecord, JobRecord] | None:
    """The job and its study, in one statement, if the study is ``tenant``'s (another
    tenant's job and a missing one alike: None)."""
    row = session.execute(
        select(StudyRow, JobRow)
        .join(JobRow, JobRow.study_instance_uid == StudyRow.study_instance_uid)
        .where(JobRow.id == job_id, StudyRow.tenant == tenant, JobRow.shadow.is_(False))
    ).first()
    return None if row is None else (study_record(row[0]), job_record(row[1]))


def study_tenant(session: Session, study_instance_uid: str) -> str | None:
    """The tenant the study belongs to (None: unknown study, or a sender of no tenant)."""
    return session.scalar(
        select(StudyRow.tenant).where(StudyRow.study_instance_uid == study_instance_uid)
    )


def counts_by_state(session: Session, model_id: str | None = None) -> dict[JobState, int]:
    """How many jobs are in each state (every state listed, superseded ones included)."""
    stmt = select(JobRow.state, func.count()).group_by(JobRow.state)
    if model_id is not None:
        stmt = stmt.where(JobRow.model_id == model_id)
    counts = dict.fromkeys(JobState, 0)
    for state, count in session.execute(stmt):
        counts[JobState(state)] = count
    return counts


def held_by_backfill(session: Session, study_instance_uid: str) -> bool:
    """Whether a backfill moved the study into PreRead's Orthanc to read it and holds it (the
    watcher then leaves it to the backfill: :mod:`preread.backfill`)."""
    held = select(BackfillItemRow.study_instance_uid).where(
        BackfillItemRow.study_instance_uid == study_instance_uid,
        BackfillItemRow.moved.is_(True),
    )
    return session.execute(held.limit(1)).first() is not None


def decisions(session: Session, job_id: str) -> tuple[SeriesDecision, ...]:
    """The series decisions recorded for the job, in the order the rules gave them."""
    rows = session.scalars(
        select(SeriesDecisionRow)
        .where(SeriesDecisionRow.job_id == job_id)
        .order_by(SeriesDecisionRow.position)
    ).all()
    return tuple(SeriesDecision(r.series_instance_uid, r.eligible, r.reason) for r in rows)


def outputs_to_remove(session: Session, job_id: str) -> tuple[JobRecord, ...]:
    """The jobs ``job_id`` superseded (directly or down the chain, and jobs of another version
    it replaced: :meth:`Transaction.replace_reading`), nearest first, whose
    outputs are still in Orthanc: remove them once the new results are stored, then call
    :meth:`Transaction.mark_outputs_removed`."""
    found: list[JobRecord] = []
    seen = {job_id}
    waiting = _predecessors(session, job_row(session, job_id))
    while waiting:
        row = waiting.pop(0)
        if row.id in seen:
            continue
        seen.add(row.id)
        record = job_record(row)
        if record.outputs and record.outputs_removed_at is None:
            found.append(record)
        waiting.extend(_predecessors(session, row))
    return tuple(found)


def _predecessors(session: Session, row: JobRow) -> list[JobRow]:
    """The jobs ``row`` replaced: the one it supersedes (same model version), then those of
    other versions that name it as their successor (a rollback's re-read), oldest first."""
    out = [job_row(session, row.supersedes_job_id)] if row.supersedes_job_id else []
    others = session.scalars(
        select(JobRow).where(JobRow.superseded_by == row.id).order_by(JobRow.created_at, JobRow.id)
    ).all()
    return [*out, *(r for r in others if r.id != row.supersedes_job_id)]


def get_cursor(session: Session, name: str) -> int | None:
    """The watcher cursor ``name`` (e.g. the last processed Orthanc change seq), if set."""
    value = session.scalar(select(WatcherStateRow.value).where(WatcherStateRow.key == name))
    return None if value is None else int(value)
