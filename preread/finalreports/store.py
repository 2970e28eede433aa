"""Final reports in the job store's database (table ``final_reports``, migration 0012).

One row per tenant and accession number. A report received again for the same accession (a
corrected or amended report) replaces the text and the mentions and counts ``version`` up;
the earlier text is not kept (the version, the first and the latest receipt times are). The
same text and status sent again (a sender retrying after a lost ACK) changes no version. Every
statement takes the tenant.

A report is matched to the tenant's study whose accession number it carries (table
``studies``): when it is stored, and — for one that came before its study — whenever the
tenant's reports are listed (:meth:`FinalReportStore.match_pending`). When several of the
tenant's studies carry the accession number, the newest (study date and time, then first
seen) is the one.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from preread.audit import AuditAction, AuditEvent, AuditLog, Outcome
from preread.audit.chain import Json
from preread.finalreports.extractor import EXTRACTOR_VERSION, extract
from preread.finalreports.mentions import (
    NoduleMention,
    mentions_from_json,
    mentions_to_json,
    summarize,
)
from preread.finalreports.records import (
    Channel,
    FinalReport,
    IncomingReport,
    Received,
    ReportStatus,
)
from preread.store import JobStore, StoreError
from preread.store.schema import FinalReportRow, StudyRow

__all__ = ["FinalReportStore"]

Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class FinalReportStore:
    """Final reports on a :class:`~preread.store.JobStore`'s database; each receipt is audited
    in the transaction that stores it."""

    def __init__(self, jobs: JobStore, *, audit: AuditLog | None = None, now: Clock = _utcnow):
        self.jobs = jobs
        self.audit = audit or AuditLog(jobs.engine)
        self._sessions = sessionmaker(jobs.engine, expire_on_commit=False)
        self._now = now

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def save(
        self,
        tenant: str,
        incoming: IncomingReport,
        mentions: tuple[NoduleMention, ...],
        *,
        actor: str,
        purpose: str,
        detail: Mapping[str, Json] | None = None,
    ) -> Received:
        """Store ``incoming`` for ``tenant`` (new, or the next version of its accession), match
        it to the tenant's study and record ``final_report.receive`` — one transaction.

        Raises:
            StoreError: the database failed (nothing stored).
            AuditError: the audit record failed (nothing stored).
        """
        for attempt in range(2):  # two first receipts at once: the loser updates the winner's
            try:
                with self._writing() as session:
                    row, created, repeated = self._upsert(session, tenant, incoming, mentions)
                    event = AuditEvent(
                        actor=actor,
                        action=AuditAction.FINAL_REPORT_RECEIVE,
                        outcome=Outcome.SUCCESS,
                        tenant=tenant,
                        purpose=purpose,
                        study_instance_uid=row.study_instance_uid,
                        detail={
                            **(detail or {}),
                            "channel": incoming.channel.value,
                            "final_report_id": row.id,
                            "version": row.version,
                            "matched": row.study_instance_uid is not None,
                            "repeated": repeated,
                            "mentions": len(mentions),
                        },
                    )
                    self.audit.record(event, session=session)
                    return Received(_record(row), created, repeated)
            except IntegrityError:
                if attempt:
                    raise StoreError("the final report could not be stored") from None
            except SQLAlchemyError as exc:
                raise StoreError(
                    f"the final report could not be stored ({type(exc).__name__})"
                ) from exc
        raise AssertionError("unreachable")

    def _upsert(
        self,
        session: Session,
        tenant: str,
        incoming: IncomingReport,
        mentions: tuple[NoduleMention, ...],
    ) -> tuple[FinalReportRow, bool, bool]:
        now = self._now()
        row = session.scalars(
            select(FinalReportRow)
            .where(
                FinalReportRow.tenant == tenant,
                FinalReportRow.accession_number == incoming.accession_number,
            )
            .with_for_update()
        ).one_or_none()
        extraction = {
            "extractor": EXTRACTOR_VERSION,
            "mentions": mentions_to_json(mentions),
        }
        created = row is None
        repeated = (
            row is not None and row.text == incoming.text and row.status == incoming.status.value
        )
        if row is None:
            row = FinalReportRow(
                id=str(uuid.uuid4()),
                tenant=tenant,
                accession_number=incoming.accession_number,
                version=1,
                first_received_at=now,
                study_instance_uid=None,
                matched_at=None,
            )
            session.add(row)
        elif not repeated:
            row.version += 1
        row.status = incoming.status.value
        row.source = incoming.channel.value
        row.sender = incoming.sender[:255]
        row.text = incoming.text
        row.extraction = extraction
        row.received_at = now
        study = _study_of(session, tenant, incoming.accession_number)
        if study != row.study_instance_uid:
            row.study_instance_uid = study
            row.matched_at = now if study is not None else None
        session.flush()
        return row, created, repeated

    def get(self, tenant: str, accession_number: str) -> FinalReport | None:
        with self._sessions() as session:
            row = session.scalars(
                select(FinalReportRow).where(
                    FinalReportRow.tenant == tenant,
                    FinalReportRow.accession_number == accession_number,
                )
            ).one_or_none()
            return None if row is None else _record(row)

    def list(self, tenant: str) -> list[FinalReport]:
        """The tenant's reports, the latest received first."""
        with self._sessions() as session:
            rows = session.scalars(
                select(FinalReportRow)
                .where(FinalReportRow.tenant == tenant)
                .order_by(FinalReportRow.received_at.desc(), FinalReportRow.id)
            )
            return [_record(r) for r in rows]

    def match_pending(self, tenant: str) -> int:
        """Match the tenant's reports that have no study yet to the studies that came since;
        returns how many were matched."""
        matched = 0
        with self._writing() as session:
            rows = session.scalars(
                select(FinalReportRow).where(
                    FinalReportRow.tenant == tenant,
                    FinalReportRow.study_instance_uid.is_(None),
                )
            ).all()
            now = self._now()
            for row in rows:
                study = _study_of(session, tenant, row.accession_number)
                if study is not None:
                    row.study_instance_uid, row.matched_at = study, now
                    matched += 1
        return matched


def _study_of(session: Session, tenant: str, accession_number: str) -> str | None:
    return session.scalars(
        select(StudyRow.study_instance_uid)
        .where(StudyRow.tenant == tenant, StudyRow.accession_number == accession_number)
        .order_by(
            StudyRow.study_date.desc(), StudyRow.study_time.desc(), StudyRow.first_seen_at.desc()
        )
        .limit(1)
    ).one_or_none()


def _record(row: FinalReportRow) -> FinalReport:
    extraction = row.extraction
    if extraction.get("extractor") == EXTRACTOR_VERSION:
        mentions = mentions_from_json(extraction.get("mentions", []))
    else:  # stored by other rules: read the text again with today's
        mentions = extract(row.text)
    return FinalReport(
        id=row.id,
        tenant=row.tenant,
        accession_number=row.accession_number,
        version=row.version,
        status=ReportStatus(row.status),
        channel=Channel(row.source),
        sender=row.sender,
        text=row.text,
        mentions=mentions,
        summary=summarize(mentions),
        extractor=EXTRACTOR_VERSION,
        study_instance_uid=row.study_instance_uid,
        first_received_at=row.first_received_at,
        received_at=row.received_at,
        matched_at=row.matched_at,
    )
