"""Everything that changes the job store, inside one database transaction.

Concurrency: every change reads the job row it is about to change with ``SELECT … FOR UPDATE``
(PostgreSQL; SQLite transactions that write start with ``BEGIN IMMEDIATE`` and so run one at a
time), claims are one conditional ``UPDATE … RETURNING``, and the partial unique index
``uq_jobs_current`` is the last word on "one current job per study and model version": an
insert that loses a race to it is rolled back to a savepoint and the winner is read instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from preread.store import lineage, queries
from preread.store.errors import LeaseLostError, StoreError
from preread.store.records import (
    EnqueueResult,
    FinishResult,
    JobOutputs,
    JobRecord,
    JobUpdate,
    ModelKey,
    SeriesVerdict,
    StudyFacts,
    StudyFingerprint,
    StudyRecord,
    Sweep,
)
from preread.store.schema import (
    JobRow,
    ReviewRow,
    SeriesDecisionRow,
    StudyRow,
    WatcherStateRow,
)
from preread.store.sizes import largest_sizes
from preread.store.states import FINISHED, IN_PROGRESS, JobState, check_transition

Clock = Callable[[], datetime]
log = logging.getLogger(__name__)

_ENQUEUE_TRIES = 5
#: the ``reason_code`` of a done job read without its comparison with the priors (retried)
COMPARISON_UNAVAILABLE = "comparison_unavailable"
#: ... and of one whose retries are spent (no longer looked at by the sweep)
COMPARISON_GAVE_UP = "comparison_unavailable_final"
#: the comparison cannot be made from these studies (the cause is in them): never retried
COMPARISON_NOT_POSSIBLE = "comparison_not_possible"
_EVENTS = {  # the webhook event of each final state
    JobState.DONE: "preread.completed",
    JobState.FAILED: "preread.failed",
    JobState.NOT_APPLICABLE: "preread.not_applicable",
    JobState.NOT_AUTHORIZED: "preread.not_authorized",
}
_IN_PROGRESS = [s.value for s in IN_PROGRESS]


def utcnow() -> datetime:
    return datetime.now(UTC)


def database_now(session: Session) -> datetime:
    """The time on the database's clock (PostgreSQL ``clock_timestamp()``, aware UTC); on
    SQLite, whose file only one machine writes, this process's clock."""
    if session.get_bind().dialect.name != "postgresql":
        return utcnow()
    now = session.scalar(select(func.clock_timestamp()))
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise StoreError(f"the database's clock gave {now!r}, not an aware time")
    return now.astimezone(UTC)


class Transaction:
    """The job store's operations within one transaction: all of them happen, or none.

    Get one from :meth:`JobStore.transaction`; :class:`JobStore` has the same methods, each in a
    transaction of its own. Times come from ``clock`` (aware UTC), by default (None) from the
    database's (:func:`database_now`): leases compare times written by different machines,
    and one clock for all of them means a worker or leader whose clock is off can neither
    take a live lease nor lose its own.
    """

    def __init__(self, session: Session, *, clock: Clock | None, max_attempts: int) -> None:
        self.session = session
        self._clock = clock
        self._max_attempts = max_attempts

    def _now(self) -> datetime:
        now = database_now(self.session) if self._clock is None else self._clock()
        if now.tzinfo is None:
            raise StoreError(f"the store's clock gave a naive datetime {now!r}")
        return now.astimezone(UTC)

    # --- enqueueing -------------------------------------------------------------------------

    def enqueue(
        self,
        study_instance_uid: str,
        orthanc_study_id: str,
        model: ModelKey,
        fingerprint: StudyFingerprint,
        *,
        shadow: bool = False,
    ) -> EnqueueResult:
        """Make sure the study, as ``fingerprint`` describes it, is (or will be) read by ``model``.

        * no current job: a new queued job (``created``);
        * the current job already reads this fingerprint: nothing changes;
        * the study changed and the current job is *queued*: it now reads the new fingerprint
          (``refreshed``); no worker has looked at the study yet;
        * … is *running* (fetching, inferring, writing): ``rerun_requested``; the run goes on
          (its result is still one reading of the study) and when it finishes, the finish call
          supersedes it with a new queued job for the newest fingerprint (its ``follow_up``);
          if its lease expires first, the retry reads the newest fingerprint;
        * … is *finished* (done, failed, not_applicable): it is superseded (kept in the history)
          by a new queued job (``created``, ``superseded``) that points back to it.

        ``shadow``: a reading by a version in shadow (:mod:`preread.lifecycle`). A version
        promoted from shadow reads its studies for real: its current shadow job of the study is
        replaced (queued: it becomes a real one; finished: superseded by a real one; running:
        left to finish, and the next call, e.g. the watcher's reconcile, replaces it). A real
        job never turns into a shadow one.
        """
        key = (study_instance_uid, model.id, model.version)
        token = fingerprint.token
        for _ in range(_ENQUEUE_TRIES):
            now = self._now()
            row = lineage.current_row(self.session, key)
            if row is None:
                new = lineage.insert_job(
                    self.session, key, orthanc_study_id, token, now, supersedes=None, shadow=shadow
                )
                if new is None:
                    log.info("enqueue %s: lost the race to another writer; reading its job", key)
                    continue
                return EnqueueResult(queries.job_record(new), created=True)
            state = JobState(row.state)
            promoted = bool(row.shadow) and not shadow  # the shadow version went live
            if promoted and state is JobState.QUEUED:
                row.shadow = False
            if promoted and state in IN_PROGRESS:  # the next reconcile reads it for real
                return EnqueueResult(queries.job_record(row), created=False)
            if promoted and state in FINISHED:
                new = lineage.supersede(
                    self.session, row, token, orthanc_study_id, now, shadow=False
                )
                return EnqueueResult(
                    queries.job_record(new), created=True, superseded=queries.job_record(row)
                )
            if token == (row.rerun_fingerprint or row.study_fingerprint):
                return EnqueueResult(
                    queries.job_record(row),
                    created=False,
                    rerun_requested=row.rerun_fingerprint is not None,
                )
            if state is JobState.QUEUED:
                row.study_fingerprint = token
                row.orthanc_study_id = orthanc_study_id
                row.updated_at = now
                self.session.flush()
                return EnqueueResult(queries.job_record(row), created=False, refreshed=True)
            if state in IN_PROGRESS:
                row.rerun_fingerprint = token
                row.updated_at = now
                self.session.flush()
                return EnqueueResult(queries.job_record(row), created=False, rerun_requested=True)
            new = lineage.supersede(self.session, row, token, orthanc_study_id, now)
            return EnqueueResult(
                queries.job_record(new), created=True, superseded=queries.job_record(row)
            )
        raise StoreError(f"could not enqueue {key}: {_ENQUEUE_TRIES} races lost in a row")

    # --- leases -----------------------------------------------------------------------------

    def claim(self, job_id: str, owner: str, lease_s: float) -> JobRecord | None:
        """Take the job to run it: a queued job, or one whose worker's lease expired (if it has
        attempts left), moves to ``fetching`` with ``attempts`` + 1 and a lease for ``owner``
        until now + ``lease_s``.

        ``None`` when another worker holds a live lease or the job is finished or superseded: a
        redelivered task finds its job done this way and does nothing. A retry after an expired
        lease reads the newest fingerprint and keeps the outputs the previous attempt recorded
        (replace or remove them). Raises :class:`JobNotFoundError` for an unknown id.
        """
        _check_lease(lease_s)
        now = self._now()
        expired = and_(
            JobRow.state.in_(_IN_PROGRESS),
            JobRow.lease_expires_at < now,
            JobRow.attempts < self._max_attempts,
        )
        stmt = (
            update(JobRow)
            .where(JobRow.id == job_id, or_(JobRow.state == JobState.QUEUED.value, expired))
            .values(
                state=JobState.FETCHING.value,
                attempts=JobRow.attempts + 1,
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_s),
                started_at=now,
                finished_at=None,
                updated_at=now,
                study_fingerprint=func.coalesce(JobRow.rerun_fingerprint, JobRow.study_fingerprint),
                rerun_fingerprint=None,
            )
            .returning(JobRow.id)
            .execution_options(synchronize_session=False)
        )
        claimed = self.session.execute(stmt).scalar_one_or_none()
        row = queries.job_row(self.session, job_id)  # raises JobNotFoundError
        return None if claimed is None else queries.job_record(row)

    def renew_lease(self, job_id: str, owner: str, lease_s: float) -> datetime:
        """Extend ``owner``'s lease to now + ``lease_s``; returns the new expiry.

        Raises :class:`LeaseLostError` when ``owner`` no longer holds the job.
        """
        _check_lease(lease_s)
        row = self._held(job_id, owner, None)
        row.lease_expires_at = self._now() + timedelta(seconds=lease_s)
        self.session.flush()
        return row.lease_expires_at

    def _held(self, job_id: str, owner: str, target: JobState | None) -> JobRow:
        """The locked row of a job ``owner`` holds, checked for the move to ``target``."""
        row = queries.job_row(self.session, job_id, lock=True)
        state = JobState(row.state)
        if state in IN_PROGRESS and row.lease_owner != owner:
            raise LeaseLostError(job_id, owner, row.lease_owner, state.value)
        if target is not None:
            check_transition(job_id, state, target)
        elif state not in IN_PROGRESS:
            raise LeaseLostError(job_id, owner, None, state.value)
        return row

    def requeue_expired(self) -> Sweep:
        """Jobs whose worker's lease expired go back to ``queued`` (reading the newest
        fingerprint), or to ``failed`` (reason code ``lease_expired``) once they used
        ``max_attempts``. Run it periodically; it skips rows other transactions hold."""
        now = self._now()
        stmt = (
            select(JobRow)
            .where(JobRow.state.in_(_IN_PROGRESS), JobRow.lease_expires_at < now)
            .order_by(JobRow.lease_expires_at)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
        requeued: list[JobRecord] = []
        failed: list[JobRecord] = []
        follow_ups: list[JobRecord] = []
        for row in self.session.scalars(stmt).all():
            lost = (
                f"the lease of worker {row.lease_owner!r} expired while {row.state}"
                f" (attempt {row.attempts} of {self._max_attempts})"
            )
            if row.attempts >= self._max_attempts:
                finished = self._finish(row, JobState.FAILED, now, lost, "lease_expired")
                failed.append(finished.job)
                if finished.follow_up is not None:
                    follow_ups.append(finished.follow_up)
                continue
            check_transition(row.id, JobState(row.state), JobState.QUEUED)
            row.state = JobState.QUEUED.value
            row.lease_expires_at = None
            row.reason = f"{lost}; queued again"
            row.reason_code = "lease_expired"
            if row.rerun_fingerprint is not None:
                row.study_fingerprint, row.rerun_fingerprint = row.rerun_fingerprint, None
            row.updated_at = now
            self.session.flush()
            requeued.append(queries.job_record(row))
        return Sweep(tuple(requeued), tuple(failed), tuple(follow_ups))

    # --- progress ---------------------------------------------------------------------------

    def advance(
        self, job_id: str, owner: str, state: JobState, changes: JobUpdate | None = None
    ) -> JobRecord:
        """Move a job ``owner`` holds to ``inferring`` or ``writing``, recording ``changes``.

        Raises :class:`IllegalTransitionError` (naming both states) for a move the state
        machine does not allow, :class:`LeaseLostError` when another worker holds the job, and
        :class:`StoreError` for a final state (use the ``finish_*`` methods).
        """
        target = JobState(state)
        row = self._held(job_id, owner, target)
        if target not in (JobState.INFERRING, JobState.WRITING):
            raise StoreError(
                f"job {job_id}: advance() moves to inferring or writing, not {target.value}"
                " (claim, the finish_* methods and requeue_expired do the rest)"
            )
        row.state = target.value
        self._apply(row, changes)
        return queries.job_record(row)

    def record(self, job_id: str, owner: str, changes: JobUpdate) -> JobRecord:
        """Record ``changes`` on a job ``owner`` holds, without moving it."""
        row = self._held(job_id, owner, None)
        self._apply(row, changes)
        return queries.job_record(row)

    def _apply(self, row: JobRow, changes: JobUpdate | None) -> None:
        if changes is not None:
            for name in (
                "series_instance_uid",
                "provider_requested",
                "provider_used",
                "provider_warning",
            ):
                value = getattr(changes, name)
                if value is not None:
                    setattr(row, name, value)
            if changes.timings:
                row.timings = {**row.timings, **{k: float(v) for k, v in changes.timings.items()}}
            if changes.acquisition is not None:
                row.acquisition = dict(changes.acquisition)
            if changes.outputs is not None:
                outputs = changes.outputs
                if not changes.replace_outputs:
                    outputs = queries.job_record(row).outputs.merged(outputs)
                _set_outputs(row, outputs)
        row.updated_at = self._now()
        self.session.flush()

    def record_decisions(self, job_id: str, decisions: Sequence[SeriesVerdict]) -> None:
        """Record the series selection rules' verdicts for the job (replacing earlier ones)."""
        queries.job_row(self.session, job_id)  # raises JobNotFoundError
        self.session.execute(delete(SeriesDecisionRow).where(SeriesDecisionRow.job_id == job_id))
        self.session.add_all(
            SeriesDecisionRow(
                job_id=job_id,
                series_instance_uid=d.series_instance_uid,
                position=i,
                eligible=d.eligible,
                reason=d.reason,
            )
            for i, d in enumerate(decisions)
        )
        self.session.flush()

    # --- finishing --------------------------------------------------------------------------

    def finish_done(
        self,
        job_id: str,
        owner: str,
        result: Mapping[str, Any],
        changes: JobUpdate | None = None,
    ) -> FinishResult:
        """``writing`` → ``done`` with the PreRead ``result`` (JSON) and what was written."""
        row = self._held(job_id, owner, JobState.DONE)
        self._apply(row, changes)
        row.result = dict(result)
        comparison = row.result.get("comparison")
        if isinstance(comparison, dict) and comparison.get("status") == "unavailable":
            why = comparison.get("reason") or "no reason recorded"
            if comparison.get("retryable") is False:
                return self._finish(
                    row,
                    JobState.DONE,
                    self._now(),
                    f"read without the comparison with the patient's priors ({why}); not read "
                    "again: the cause is in the studies",
                    COMPARISON_NOT_POSSIBLE,
                )
            return self._finish(
                row,
                JobState.DONE,
                self._now(),
                f"read without the comparison with the patient's priors ({why}); "
                "read again later (PREREAD_COMPARISON_RETRIES)",
                COMPARISON_UNAVAILABLE,
            )
        return self._finish(row, JobState.DONE, self._now(), None, None)

    def finish_failed(
        self,
        job_id: str,
        owner: str,
        reason: str,
        reason_code: str,
        changes: JobUpdate | None = None,
    ) -> FinishResult:
        """→ ``failed``; ``reason`` says why for a person (naming the series), ``reason_code``
        for a program (e.g. ``series_unreadable``, ``provider_unavailable``)."""
        row = self._held(job_id, owner, JobState.FAILED)
        self._apply(row, changes)
        return self._finish(row, JobState.FAILED, self._now(), reason, reason_code)

    def finish_not_applicable(
        self,
        job_id: str,
        owner: str,
        reason: str,
        decisions: Sequence[SeriesVerdict],
        reason_code: str = "no_eligible_series",
    ) -> FinishResult:
        """→ ``not_applicable``: no series of the study suits the model (``decisions`` say why)."""
        row = self._held(job_id, owner, JobState.NOT_APPLICABLE)
        self.record_decisions(job_id, decisions)
        return self._finish(row, JobState.NOT_APPLICABLE, self._now(), reason, reason_code)

    def finish_not_authorized(self, job_id: str, owner: str, reason: str) -> FinishResult:
        """→ ``not_authorized``: no valid grant covers reading this study (nothing was fetched)."""
        row = self._held(job_id, owner, JobState.NOT_AUTHORIZED)
        return self._finish(row, JobState.NOT_AUTHORIZED, self._now(), reason, "not_authorized")

    def _finish(
        self,
        row: JobRow,
        state: JobState,
        now: datetime,
        reason: str | None,
        reason_code: str | None,
    ) -> FinishResult:
        row.state = state.value
        row.reason = reason
        row.reason_code = reason_code
        row.finished_at = now
        row.updated_at = now
        row.lease_expires_at = None
        if state is JobState.DONE:
            findings = (row.result or {}).get("findings")
            row.findings_count = len(findings) if isinstance(findings, list) else None
            row.largest_finding_mm, row.largest_solid_mm = largest_sizes(row.result)
        self.session.flush()
        if row.rerun_fingerprint is None:
            self._announce(row, state, now)
            return FinishResult(queries.job_record(row))
        follow_up = lineage.supersede(
            self.session, row, row.rerun_fingerprint, row.orthanc_study_id, now
        )
        return FinishResult(queries.job_record(row), queries.job_record(follow_up))

    def _announce(self, row: JobRow, state: JobState, now: datetime) -> None:
        """Queue the webhook messages of a job that reached a final state, in this transaction
        (the persisted outbox: the message exists if and only if the state change does).
        A shadow reading announces nothing."""
        # Imported here, not at the top: the outbox imports the store (database, records,
        # schema), and importing any preread.store module runs preread/store/__init__, which
        # imports this module, so a top-level import is a cycle whenever the outbox is
        # imported first.
        from preread.webhooks.outbox import enqueue_event, event_payload

        if row.shadow:
            return
        tenant = queries.study_tenant(self.session, row.study_instance_uid)
        if tenant is None:
            return
        event = _EVENTS[state]
        payload = event_payload(queries.job_record(row), event, now)
        enqueue_event(self.session, tenant=tenant, event_type=event, payload=payload, now=now)

    # --- studies ----------------------------------------------------------------------------

    def held_by_backfill(self, study_instance_uid: str) -> bool:
        """See :func:`preread.store.queries.held_by_backfill`."""
        return queries.held_by_backfill(self.session, study_instance_uid)

    def record_study(self, facts: StudyFacts) -> StudyRecord:
        """Insert or refresh what is known of a study. A study keeps the tenant it was first
        recorded with (a StudyInstanceUID sent later by another tenant's sender does not move
        it; that is logged)."""
        now = self._now()
        stmt = select(StudyRow).where(StudyRow.study_instance_uid == facts.study_instance_uid)
        row = self.session.scalars(stmt.with_for_update()).one_or_none()
        values = {f.name: getattr(facts, f.name) for f in fields(facts)}
        if row is None:
            row = StudyRow(**values, first_seen_at=now, updated_at=now)
            self.session.add(row)
        else:
            tenant = row.tenant if row.tenant is not None else facts.tenant
            if row.tenant is not None and facts.tenant not in (None, row.tenant):
                log.warning(
                    "study %s was first recorded for another tenant; it stays there",
                    row.orthanc_study_id,
                )
            for name, value in values.items():
                setattr(row, name, value)
            row.tenant = tenant
            row.updated_at = now
        self.session.flush()
        return queries.study_record(row)

    def retry(self, job_id: str) -> JobRecord:
        """``failed`` or ``not_authorized`` → ``queued`` with its attempts reset (an
        operator's "try again", or a grant that now covers the study)."""
        row = queries.job_row(self.session, job_id, lock=True)
        check_transition(job_id, JobState(row.state), JobState.QUEUED)
        row.state = JobState.QUEUED.value
        row.attempts = 0
        row.updated_at = self._now()
        self.session.flush()
        return queries.job_record(row)

    def retry_comparisons(
        self, first_delay_s: float, max_retries: int, limit: int = 50
    ) -> list[JobRecord]:
        """Read again the studies whose reading is done but whose comparison with the priors
        was unavailable (the PACS down, a prior not retrievable): each such current job, once
        ``first_delay_s · 2^n`` has passed since it finished (``n``: the times it was read again
        for this already), is superseded by a queued job of the same content, at most
        ``max_retries`` times. The new reading replaces the old one's SR/SEG when it is stored
        (never both in the study). A result a radiologist has reviewed is left as it is: its
        review names that result. Returns the new queued jobs (to dispatch)."""
        if max_retries <= 0:
            return []
        now = self._now()
        reviewed = select(ReviewRow.job_id)
        rows = self.session.scalars(
            select(JobRow)
            .where(
                JobRow.state == JobState.DONE.value,
                JobRow.reason_code == COMPARISON_UNAVAILABLE,
                JobRow.finished_at <= now - timedelta(seconds=first_delay_s),
                JobRow.id.not_in(reviewed),
            )
            .order_by(JobRow.finished_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        out: list[JobRecord] = []
        for row in rows:
            tries = lineage.comparison_retries(self.session, row, COMPARISON_UNAVAILABLE)
            if tries >= max_retries:  # spent: out of the sweep's query, so never in its way
                row.reason_code = COMPARISON_GAVE_UP
                row.reason = f"{row.reason}; not read again: {tries} tries made"
                continue
            finished = row.finished_at or row.updated_at
            if finished + timedelta(seconds=first_delay_s * 2**tries) > now:
                continue
            new = lineage.supersede(
                self.session, row, row.study_fingerprint, row.orthanc_study_id, now
            )
            log.info(
                "job %s: comparison unavailable, read again as job %s (try %d of %d)",
                row.id,
                new.id,
                tries + 1,
                max_retries,
            )
            out.append(queries.job_record(new))
        return out

    def replace_reading(self, job_id: str, model: ModelKey) -> JobRecord | None:
        """Have ``model`` read again the study that the done, real job ``job_id`` read (a
        rollback's re-read, :meth:`preread.lifecycle.ModelLife.rollback`): ``job_id`` is
        superseded and names as its successor the job of ``model`` that reads the study: a new
        queued one, or the version's current job when it is queued or running. The successor's
        run removes ``job_id``'s objects from the study once its own are stored (a run already
        past that point leaves them: the next reading of the study removes them). None (nothing
        done) when ``job_id`` is no longer a current, done, real job."""
        old = queries.job_row(self.session, job_id, lock=True)
        if old.state != JobState.DONE.value or old.shadow:
            return None
        now = self._now()
        key = (old.study_instance_uid, model.id, model.version)
        current = lineage.current_row(self.session, key)
        check_transition(old.id, JobState.DONE, JobState.SUPERSEDED)
        old.state = JobState.SUPERSEDED.value
        old.updated_at = now
        self.session.flush()
        token, orthanc_id = old.study_fingerprint, old.orthanc_study_id
        if current is None:
            new = lineage.insert_job(self.session, key, orthanc_id, token, now, supersedes=old.id)
            if new is None:
                raise StoreError(f"job {old.id}: its re-read by {key} could not be made")
        elif JobState(current.state) in FINISHED:
            new = lineage.supersede(self.session, current, token, orthanc_id, now, shadow=False)
        else:
            new = current
            new.shadow = False
        old.superseded_by = new.id
        self.session.flush()
        return queries.job_record(new)

    def mark_outputs_removed(self, job_id: str) -> JobRecord:
        """Record that a superseded job's outputs were removed from Orthanc."""
        row = queries.job_row(self.session, job_id, lock=True)
        if JobState(row.state) is not JobState.SUPERSEDED:
            raise StoreError(f"job {job_id} is {row.state}: only a superseded job's outputs go")
        row.outputs_removed_at = self._now()
        self.session.flush()
        return queries.job_record(row)

    # --- watcher state ----------------------------------------------------------------------

    def set_cursor(self, name: str, seq: int) -> None:
        """Set the watcher cursor ``name`` (committed with whatever else this transaction did)."""
        values = {"key": name, "value": str(int(seq)), "updated_at": self._now()}
        if self.session.get_bind().dialect.name == "postgresql":
            pg = postgresql.insert(WatcherStateRow).values(values)
            self.session.execute(
                pg.on_conflict_do_update(index_elements=["key"], set_=_excluded(pg.excluded))
            )
        else:
            lite = sqlite.insert(WatcherStateRow).values(values)
            self.session.execute(
                lite.on_conflict_do_update(index_elements=["key"], set_=_excluded(lite.excluded))
            )

    def get_cursor(self, name: str) -> int | None:
        return queries.get_cursor(self.session, name)

    def get(self, job_id: str) -> JobRecord:
        return queries.get_job(self.session, job_id)


def _check_lease(lease_s: float) -> None:
    if not lease_s > 0:
        raise ValueError(f"lease_s must be > 0 seconds, got {lease_s}")


def _excluded(excluded: Any) -> dict[str, Any]:
    return {"value": excluded.value, "updated_at": excluded.updated_at}


def _set_outputs(row: JobRow, outputs: JobOutputs) -> None:
    """Record ``outputs``: every column, ``None`` where an object is absent."""
    sr, seg = outputs.sr, outputs.seg
    row.sr_series_uid = sr.series_instance_uid if sr else None
    row.sr_sop_uid = sr.sop_instance_uid if sr else None
    row.orthanc_sr_series_id = sr.orthanc_series_id if sr else None
    row.seg_series_uid = seg.series_instance_uid if seg else None
    row.seg_sop_uid = seg.sop_instance_uid if seg else None
    row.orthanc_seg_series_id = seg.orthanc_series_id if seg else None
    sc, kos = outputs.sc, outputs.kos
    if len({(o.series_instance_uid, o.orthanc_series_id) for o in sc}) > 1:
        raise ValueError("the key images of one job are one series")
    row.sc_series_uid = sc[0].series_instance_uid if sc else None
    row.sc_sop_uids = " ".join(o.sop_instance_uid for o in sc) if sc else None
    row.orthanc_sc_series_id = sc[0].orthanc_series_id if sc else None
    row.kos_series_uid = kos.series_instance_uid if kos else None
    row.kos_sop_uid = kos.sop_instance_uid if kos else None
    row.orthanc_kos_series_id = kos.orthanc_series_id if kos else None
