"""The jobs of one (study, model id, model version) key over time: finding the current one,
making a new one, superseding one with its successor."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from preread.store.errors import StoreError
from preread.store.schema import JobRow
from preread.store.states import JobState, check_transition

Key = tuple[str, str, str]
"""(StudyInstanceUID, model id, model version)."""


def current_row(session: Session, key: Key) -> JobRow | None:
    """The key's current (not superseded) job, locked for update; ``None`` when there is none."""
    study, model_id, version = key
    stmt = (
        select(JobRow)
        .where(
            JobRow.study_instance_uid == study,
            JobRow.model_id == model_id,
            JobRow.model_version == version,
            JobRow.state != JobState.SUPERSEDED.value,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.scalars(stmt).one_or_none()


def insert_job(
    session: Session,
    key: Key,
    orthanc_study_id: str,
    token: str,
    now: datetime,
    *,
    supersedes: str | None,
    shadow: bool = False,
) -> JobRow | None:
    """A new queued job for ``key``, or ``None`` when a concurrent writer made the key's current
    job first (the unique index refused ours; only a savepoint is rolled back)."""
    study, model_id, version = key
    row = JobRow(
        id=str(uuid.uuid4()),
        study_instance_uid=study,
        orthanc_study_id=orthanc_study_id,
        model_id=model_id,
        model_version=version,
        state=JobState.QUEUED.value,
        attempts=0,
        study_fingerprint=token,
        timings={},
        created_at=now,
        updated_at=now,
        supersedes_job_id=supersedes,
        shadow=shadow,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return None
    return row


def supersede(
    session: Session,
    old: JobRow,
    token: str,
    orthanc_study_id: str,
    now: datetime,
    *,
    shadow: bool | None = None,
) -> JobRow:
    """Mark the finished current job ``old`` superseded by a new queued job reading ``token``
    (a shadow reading when ``shadow``; None: as ``old`` was).

    The caller holds ``old``'s row lock (it came from :func:`current_row` or a locked read).
    """
    check_transition(old.id, JobState(old.state), JobState.SUPERSEDED)
    old.state = JobState.SUPERSEDED.value
    old.rerun_fingerprint = None
    old.updated_at = now
    session.flush()  # the index must see the old job leave before the new one arrives
    key = (old.study_instance_uid, old.model_id, old.model_version)
    new = insert_job(
        session,
        key,
        orthanc_study_id,
        token,
        now,
        supersedes=old.id,
        shadow=bool(old.shadow) if shadow is None else shadow,
    )
    if new is None:  # cannot happen while we hold the current row's lock
        raise StoreError(f"job {old.id} was superseded but its successor could not be made")
    old.superseded_by = new.id
    session.flush()
    return new


def comparison_retries(session: Session, row: JobRow, reason_code: str) -> int:
    """How many times ``row``'s content was read again because its comparison with the priors
    was unavailable: its predecessors, newest first, that read the same content and ended with
    ``reason_code`` (a reading of other content ends the count)."""
    n = 0
    previous = row.supersedes_job_id
    while previous is not None:
        old = session.get(JobRow, previous)
        if (
            old is None
            or old.study_fingerprint != row.study_fingerprint
            or old.reason_code != reason_code
        ):
            break
        n += 1
        previous = old.supersedes_job_id
    return n
