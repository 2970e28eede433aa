"""The job store: one object per process, built from a database URL or an engine.

Typical use::

    store = JobStore.create(settings_database_url, max_attempts=3)
    store.migrate()
    with store.transaction() as tx:          # the watcher: jobs and cursor move together
        for change in changes:
            tx.enqueue(uid, orthanc_id, model, fingerprint)
        tx.set_cursor("orthanc-changes", last_seq)
    job = store.claim(job_id, owner="worker-1", lease_s=600)   # the worker; None: nothing to do
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from preread.store import changes, queries
from preread.store.database import READ_ONLY, make_engine
from preread.store.errors import StoreError
from preread.store.migrate import upgrade
from preread.store.records import (
    EnqueueResult,
    FinishResult,
    JobPage,
    JobRecord,
    JobUpdate,
    ModelKey,
    SeriesDecision,
    SeriesVerdict,
    StudyFacts,
    StudyFilter,
    StudyFingerprint,
    StudyPage,
    StudyRecord,
    Sweep,
)
from preread.store.states import JobState
from preread.store.transaction import Clock, Transaction

DEFAULT_MAX_ATTEMPTS = 3


class JobStore:
    """Jobs, series decisions and watcher state in SQL (SQLite or PostgreSQL).

    ``max_attempts`` bounds how many times a job is claimed before a lost lease fails it;
    ``clock`` gives aware UTC times (a test passes a fake one; by default the database's clock:
    :func:`~preread.store.transaction.database_now`). Every method below runs in a
    transaction of its own; :meth:`transaction` groups several. Database errors are raised as
    :class:`StoreError`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        clock: Clock | None = None,
        owns_engine: bool = False,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.engine = engine
        self.max_attempts = max_attempts
        self._clock = clock
        self._owns_engine = owns_engine
        self._writer = sessionmaker(engine, expire_on_commit=False)
        self._subscribers: list[changes.Subscriber] = []
        changes.install(self._writer, self._subscribers)
        self._reader = sessionmaker(
            engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
        # single-statement reads: autocommit on PostgreSQL (no BEGIN/COMMIT round trips);
        # SQLite's transactions are local calls, and its BEGIN is ours (database.py)
        quick = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql"
            else engine.execution_options(**{READ_ONLY: True})
        )
        self._quick_sessions = sessionmaker(quick, expire_on_commit=False)

    @classmethod
    def create(
        cls,
        url: str | URL,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        clock: Clock | None = None,
        busy_timeout_s: float = 30.0,
    ) -> JobStore:
        """A store on a new engine for ``url``; :meth:`close` disposes of it."""
        engine = make_engine(url, busy_timeout_s=busy_timeout_s)
        return cls(engine, max_attempts=max_attempts, clock=clock, owns_engine=True)

    @classmethod
    def from_engine(
        cls, engine: Engine, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS, clock: Clock | None = None
    ) -> JobStore:
        """A store on an engine the caller made (and disposes of)."""
        return cls(engine, max_attempts=max_attempts, clock=clock)

    def subscribe(self, callback: changes.Subscriber) -> None:
        """Call ``callback(study_uid)`` after every commit of this store that changed a job or
        the record of that study (see :mod:`preread.store.changes`)."""
        self._subscribers.append(callback)

    def change_listener(
        self, on_change: changes.Subscriber, on_reset: Callable[[], None]
    ) -> changes.ChangeListener | None:
        """A listener for other processes' changes (PostgreSQL); None on SQLite, where this
        process's own commits (:meth:`subscribe`) are all there is."""
        if self.engine.dialect.name != "postgresql":
            return None
        return changes.ChangeListener(self.engine.url, on_change, on_reset)

    def migrate(self) -> None:
        """Bring the schema to the newest migration (safe at every start)."""
        try:
            upgrade(self.engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"migrating the job store failed: {exc}") from exc

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        try:
            with self._writer.begin() as session:
                yield Transaction(session, clock=self._clock, max_attempts=self.max_attempts)
        except SQLAlchemyError as exc:
            raise StoreError(f"job store transaction failed: {exc}") from exc

    @contextmanager
    def _quick(self) -> Iterator[Session]:
        with self._quick_sessions() as session:
            yield session

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        try:
            with self._reader.begin() as session:
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(f"reading the job store failed: {exc}") from exc

    # --- changes, each in its own transaction (see Transaction for what they do) ------------

    def enqueue(
        self,
        study_instance_uid: str,
        orthanc_study_id: str,
        model: ModelKey,
        fingerprint: StudyFingerprint,
    ) -> EnqueueResult:
        with self.transaction() as tx:
            return tx.enqueue(study_instance_uid, orthanc_study_id, model, fingerprint)

    def claim(self, job_id: str, owner: str, lease_s: float) -> JobRecord | None:
        with self.transaction() as tx:
            return tx.claim(job_id, owner, lease_s)

    def renew_lease(self, job_id: str, owner: str, lease_s: float) -> datetime:
        with self.transaction() as tx:
            return tx.renew_lease(job_id, owner, lease_s)

    def advance(
        self, job_id: str, owner: str, state: JobState, changes: JobUpdate | None = None
    ) -> JobRecord:
        with self.transaction() as tx:
            return tx.advance(job_id, owner, state, changes)

    def record(self, job_id: str, owner: str, changes: JobUpdate) -> JobRecord:
        with self.transaction() as tx:
            return tx.record(job_id, owner, changes)

    def record_decisions(self, job_id: str, decisions: Sequence[SeriesVerdict]) -> None:
        with self.transaction() as tx:
            tx.record_decisions(job_id, decisions)

    def finish_done(
        self,
        job_id: str,
        owner: str,
        result: Mapping[str, Any],
        changes: JobUpdate | None = None,
    ) -> FinishResult:
        with self.transaction() as tx:
            return tx.finish_done(job_id, owner, result, changes)

    def finish_failed(
        self,
        job_id: str,
        owner: str,
        reason: str,
        reason_code: str,
        changes: JobUpdate | None = None,
    ) -> FinishResult:
        with self.transaction() as tx:
            return tx.finish_failed(job_id, owner, reason, reason_code, changes)

    def finish_not_applicable(
        self,
        job_id: str,
        owner: str,
        reason: str,
        decisions: Sequence[SeriesVerdict],
        reason_code: str = "no_eligible_series",
    ) -> FinishResult:
        with self.transaction() as tx:
            return tx.finish_not_applicable(job_id, owner, reason, decisions, reason_code)

    def finish_not_authorized(self, job_id: str, owner: str, reason: str) -> FinishResult:
        with self.transaction() as tx:
            return tx.finish_not_authorized(job_id, owner, reason)

    def retry(self, job_id: str) -> JobRecord:
        with self.transaction() as tx:
            return tx.retry(job_id)

    def requeue_expired(self) -> Sweep:
        with self.transaction() as tx:
            return tx.requeue_expired()

    def retry_comparisons(
        self, first_delay_s: float, max_retries: int, limit: int = 50
    ) -> list[JobRecord]:
        with self.transaction() as tx:
            return tx.retry_comparisons(first_delay_s, max_retries, limit)

    def mark_outputs_removed(self, job_id: str) -> JobRecord:
        with self.transaction() as tx:
            return tx.mark_outputs_removed(job_id)

    def set_cursor(self, name: str, seq: int) -> None:
        with self.transaction() as tx:
            tx.set_cursor(name, seq)

    # --- queries (see preread.store.queries) -------------------------------------------------

    def get(self, job_id: str) -> JobRecord:
        """The job ``job_id``; raises :class:`JobNotFoundError`."""
        with self._reading() as session:
            return queries.get_job(session, job_id)

    def study_view(
        self, study_instance_uid: str, model_id: str | None = None, *, tenant: str
    ) -> tuple[StudyRecord | None, tuple[JobRecord, ...]]:
        """The study record and its current jobs if the study is ``tenant``'s, read with one
        statement (on PostgreSQL outside an explicit transaction: one round trip, for the
        report API's hot path)."""
        try:
            with self._quick() as session:
                return queries.study_view(session, study_instance_uid, model_id, tenant=tenant)
        except SQLAlchemyError as exc:
            raise StoreError(f"reading the job store failed: {exc}") from exc

    def tenant_job(self, job_id: str, tenant: str) -> tuple[StudyRecord, JobRecord] | None:
        """The job and its study if the study is ``tenant``'s (one statement)."""
        try:
            with self._quick() as session:
                return queries.tenant_job(session, job_id, tenant)
        except SQLAlchemyError as exc:
            raise StoreError(f"reading the job store failed: {exc}") from exc

    def current_for_study(
        self, study_instance_uid: str, model_id: str | None = None, *, include_shadow: bool = False
    ) -> tuple[JobRecord, ...]:
        with self._reading() as session:
            return queries.current_for_study(
                session, study_instance_uid, model_id, include_shadow=include_shadow
            )

    def history(
        self, study_instance_uid: str, model_id: str | None = None
    ) -> tuple[JobRecord, ...]:
        with self._reading() as session:
            return queries.history(session, study_instance_uid, model_id)

    def list_studies(
        self,
        *,
        states: Collection[JobState] | None = None,
        model_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
        where: StudyFilter | None = None,
        include_shadow: bool = False,
    ) -> StudyPage:
        """Studies by newest change; ``where`` filters (``states``/``model_id``/
        ``include_shadow`` are shortcuts for a filter with only those)."""
        if where is None:
            where = StudyFilter(
                states=tuple(states or ()), model_id=model_id, include_shadow=include_shadow
            )
        with self._reading() as session:
            return queries.list_studies(session, where, limit=limit, offset=offset)

    def list_jobs(
        self,
        *,
        states: Collection[JobState] = (),
        tenant: str | None = None,
        limit: int = 50,
    ) -> JobPage:
        """Jobs newest change first, with their study's tenant (operators: ``preread jobs
        list``); default every current job, ``tenant`` None every tenant's."""
        with self._reading() as session:
            return queries.list_jobs(session, states=states, tenant=tenant, limit=limit)

    def study(self, study_instance_uid: str) -> StudyRecord | None:
        """The study as the watcher recorded it (None: never recorded)."""
        with self._reading() as session:
            return queries.get_study(session, study_instance_uid)

    def record_study(self, facts: StudyFacts) -> StudyRecord:
        with self.transaction() as tx:
            return tx.record_study(facts)

    def counts_by_state(self, model_id: str | None = None) -> dict[JobState, int]:
        with self._reading() as session:
            return queries.counts_by_state(session, model_id)

    def decisions(self, job_id: str) -> tuple[SeriesDecision, ...]:
        with self._reading() as session:
            return queries.decisions(session, job_id)

    def outputs_to_remove(self, job_id: str) -> tuple[JobRecord, ...]:
        with self._reading() as session:
            return queries.outputs_to_remove(session, job_id)

    def get_cursor(self, name: str) -> int | None:
        with self._reading() as session:
            return queries.get_cursor(session, name)
