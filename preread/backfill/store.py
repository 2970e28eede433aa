"""Backfill runs and the archived studies they found, in the job store's database.

Tables ``backfill_runs`` and ``backfill_items`` (migration 0010). An item is keyed by tenant and
StudyInstanceUID, so a study found by two runs (overlapping ranges, a run started again) is one
item: whichever run found it first reads it, the other skips it. Every statement takes the
tenant.
"""

from __future__ import annotations

import builtins
import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from dicom_gateway.priors import ArchivedStudy
from preread.store import JobStore
from preread.store.schema import BACKFILL_STATES, BackfillItemRow, BackfillRunRow

__all__ = [
    "FINAL_STATES",
    "BackfillItem",
    "BackfillRun",
    "BackfillStore",
]

#: States an item leaves only when it is read again on purpose (``failed`` is retried).
FINAL_STATES = frozenset({"done", "refused", "not_applicable"})


@dataclass(frozen=True)
class BackfillRun:
    id: str
    tenant: str
    first: dt.date
    last: dt.date
    rate_per_hour: float | None
    started_by: str
    created_at: dt.datetime
    finished_at: dt.datetime | None


@dataclass(frozen=True)
class BackfillItem:
    """One archived study of a run; ``summary`` as :func:`preread.backfill.reader.summarize`
    makes it (None until read)."""

    tenant: str
    study_instance_uid: str
    run_id: str
    study_date: dt.date
    patient_id: str
    issuer_of_patient_id: str
    accession_number: str
    state: str
    reason: str | None
    attempts: int
    moved: bool
    model: str | None
    summary: dict[str, Any] | None
    updated_at: dt.datetime


def _da(value: dt.date) -> str:
    return f"{value:%Y%m%d}"


def _date(value: str) -> dt.date:
    return dt.datetime.strptime(value, "%Y%m%d").replace(tzinfo=dt.UTC).date()


def _run(row: BackfillRunRow) -> BackfillRun:
    return BackfillRun(
        id=row.id,
        tenant=row.tenant,
        first=_date(row.first_date),
        last=_date(row.last_date),
        rate_per_hour=row.rate_per_hour,
        started_by=row.started_by,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


def _item(row: BackfillItemRow) -> BackfillItem:
    return BackfillItem(
        tenant=row.tenant,
        study_instance_uid=row.study_instance_uid,
        run_id=row.run_id,
        study_date=_date(row.study_date),
        patient_id=row.patient_id,
        issuer_of_patient_id=row.issuer_of_patient_id,
        accession_number=row.accession_number,
        state=row.state,
        reason=row.reason,
        attempts=row.attempts,
        moved=row.moved,
        model=row.model,
        summary=row.summary,
        updated_at=row.updated_at,
    )


class BackfillStore:
    """Runs and items on a :class:`~preread.store.JobStore`'s database."""

    def __init__(self, jobs: JobStore, *, now: Any = None) -> None:
        self.jobs = jobs
        self._sessions = sessionmaker(jobs.engine, expire_on_commit=False)
        self._now = now or (lambda: dt.datetime.now(dt.UTC))

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    # --- runs -------------------------------------------------------------------------------

    def open_run(
        self,
        tenant: str,
        first: dt.date,
        last: dt.date,
        *,
        rate_per_hour: float | None,
        started_by: str,
    ) -> tuple[BackfillRun, bool]:
        """The tenant's unfinished run over exactly this range (resumed: ``False``), else a new
        one (``True``). A resumed run takes the rate given now."""
        with self._writing() as session:
            row = session.scalars(
                select(BackfillRunRow)
                .where(
                    BackfillRunRow.tenant == tenant,
                    BackfillRunRow.first_date == _da(first),
                    BackfillRunRow.last_date == _da(last),
                    BackfillRunRow.finished_at.is_(None),
                )
                .order_by(BackfillRunRow.created_at)
                .limit(1)
            ).one_or_none()
            if row is not None:
                row.rate_per_hour = rate_per_hour
                return _run(row), False
            row = BackfillRunRow(
                id=str(uuid.uuid4()),
                tenant=tenant,
                first_date=_da(first),
                last_date=_da(last),
                rate_per_hour=rate_per_hour,
                started_by=started_by,
                created_at=self._now(),
                finished_at=None,
            )
            session.add(row)
            return _run(row), True

    def finish_run(self, run_id: str) -> None:
        with self._writing() as session:
            row = session.get(BackfillRunRow, run_id)
            if row is not None and row.finished_at is None:
                row.finished_at = self._now()

    def runs(self, tenant: str) -> builtins.list[BackfillRun]:
        with self._sessions() as session:
            rows = session.scalars(
                select(BackfillRunRow)
                .where(BackfillRunRow.tenant == tenant)
                .order_by(BackfillRunRow.created_at)
            )
            return [_run(r) for r in rows]

    # --- items ------------------------------------------------------------------------------

    def add_found(self, run: BackfillRun, studies: Sequence[ArchivedStudy]) -> int:
        """Record the studies the PACS listed; one already recorded for the tenant (by this or
        an earlier run) is left as it is. Returns how many are new."""
        if not studies:
            return 0
        now = self._now()
        values = [
            {
                "tenant": run.tenant,
                "study_instance_uid": s.study_instance_uid,
                "run_id": run.id,
                "study_date": _da(s.study_date),
                "patient_id": s.patient_id,
                "issuer_of_patient_id": s.issuer_of_patient_id,
                "accession_number": s.accession_number,
                "state": "found",
                "reason": None,
                "attempts": 0,
                "moved": False,
                "model": None,
                "summary": None,
                "updated_at": now,
            }
            for s in studies
        ]
        insert = (
            postgresql.insert if self.jobs.engine.dialect.name == "postgresql" else sqlite.insert
        )
        with self._writing() as session:
            before = self._count(session, run.tenant)
            session.execute(
                insert(BackfillItemRow)
                .values(values)
                .on_conflict_do_nothing(index_elements=["tenant", "study_instance_uid"])
            )
            return self._count(session, run.tenant) - before

    @staticmethod
    def _count(session: Session, tenant: str) -> int:
        return int(
            session.scalar(
                select(func.count())
                .select_from(BackfillItemRow)
                .where(BackfillItemRow.tenant == tenant)
            )
            or 0
        )

    def pending(self, run: BackfillRun, max_attempts: int) -> builtins.list[BackfillItem]:
        """The run's items still to read, oldest study first: found, failed under the attempt
        limit, and held (a run stopped while reading it)."""
        with self._sessions() as session:
            rows = session.scalars(
                select(BackfillItemRow)
                .where(
                    BackfillItemRow.tenant == run.tenant,
                    BackfillItemRow.run_id == run.id,
                    (BackfillItemRow.state.in_(("found", "held")))
                    | (
                        (BackfillItemRow.state == "failed")
                        & (BackfillItemRow.attempts < max_attempts)
                    ),
                )
                .order_by(BackfillItemRow.study_date, BackfillItemRow.study_instance_uid)
            )
            return [_item(r) for r in rows]

    def update(
        self,
        tenant: str,
        study_instance_uid: str,
        *,
        state: str,
        reason: str | None = None,
        moved: bool | None = None,
        model: str | None = None,
        summary: dict[str, Any] | None = None,
        attempt: bool = False,
    ) -> BackfillItem:
        with self._writing() as session:
            row = session.get(BackfillItemRow, (tenant, study_instance_uid), with_for_update=True)
            if row is None:
                raise KeyError(f"no backfill item {study_instance_uid} for tenant {tenant!r}")
            row.state = state
            row.reason = reason
            if moved is not None:
                row.moved = moved
            if model is not None:
                row.model = model
            if summary is not None:
                row.summary = summary
            if attempt:
                row.attempts += 1
            row.updated_at = self._now()
            return _item(row)

    def items(
        self, tenant: str, *, run_id: str | None = None, state: str | None = None
    ) -> builtins.list[BackfillItem]:
        with self._sessions() as session:
            stmt = select(BackfillItemRow).where(BackfillItemRow.tenant == tenant)
            if run_id is not None:
                stmt = stmt.where(BackfillItemRow.run_id == run_id)
            if state is not None:
                stmt = stmt.where(BackfillItemRow.state == state)
            rows = session.scalars(
                stmt.order_by(BackfillItemRow.study_date, BackfillItemRow.study_instance_uid)
            )
            return [_item(r) for r in rows]

    def counts(self, tenant: str, run_id: str | None = None) -> dict[str, int]:
        """Items per state (every state listed)."""
        counts = dict.fromkeys(BACKFILL_STATES, 0)
        with self._sessions() as session:
            stmt = (
                select(BackfillItemRow.state, func.count())
                .where(BackfillItemRow.tenant == tenant)
                .group_by(BackfillItemRow.state)
            )
            if run_id is not None:
                stmt = stmt.where(BackfillItemRow.run_id == run_id)
            for state, count in session.execute(stmt):
                counts[state] = int(count)
        return counts
