"""The job store's tables as SQLAlchemy 2 declarative models (internal to the store).

The migrations in :mod:`preread.store.migrations` create exactly this schema; a test compares
them. Change both together (``alembic revision --autogenerate``, see ``alembic.ini``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from preread.store.states import JobState

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

UID = String(64)  # DICOM UI value representation: at most 64 characters (PS3.5 6.2)
ORTHANC_ID = String(64)  # Orthanc identifiers are 44-character SHA-1 digests
JOB_ID = String(36)  # a UUID
JSON_TYPE = JSON().with_variant(JSONB(), "postgresql")

STATE_VALUES = ", ".join(f"'{s.value}'" for s in JobState)
CURRENT = "state != 'superseded'"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so naive UTC is stored there
    (in SQLAlchemy's fixed-width text format, which sorts like time) and UTC is put back on read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the job store needs aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON_TYPE,
    }


class JobRow(Base):
    """One reading of one study by one model version (see :class:`records.JobRecord`)."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(JOB_ID, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    orthanc_study_id: Mapped[str] = mapped_column(ORTHANC_ID)
    model_id: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    study_fingerprint: Mapped[str] = mapped_column(String(128))
    rerun_fingerprint: Mapped[str | None] = mapped_column(String(128))
    series_instance_uid: Mapped[str | None] = mapped_column(UID)
    reason: Mapped[str | None] = mapped_column(Text)
    reason_code: Mapped[str | None] = mapped_column(String(64))
    provider_requested: Mapped[str | None] = mapped_column(String(64))
    provider_used: Mapped[str | None] = mapped_column(String(64))
    provider_warning: Mapped[str | None] = mapped_column(Text)
    timings: Mapped[dict[str, Any]]
    result: Mapped[dict[str, Any] | None]
    sr_series_uid: Mapped[str | None] = mapped_column(UID)
    sr_sop_uid: Mapped[str | None] = mapped_column(UID)
    orthanc_sr_series_id: Mapped[str | None] = mapped_column(ORTHANC_ID)
    seg_series_uid: Mapped[str | None] = mapped_column(UID)
    seg_sop_uid: Mapped[str | None] = mapped_column(UID)
    orthanc_seg_series_id: Mapped[str | None] = mapped_column(ORTHANC_ID)
    outputs_removed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None]
    supersedes_job_id: Mapped[str | None] = mapped_column(JOB_ID, ForeignKey("jobs.id"))
    superseded_by: Mapped[str | None] = mapped_column(JOB_ID, ForeignKey("jobs.id"))

    __table_args__ = (
        # At most one current (not superseded) job per study and model version.
        Index(
            "uq_jobs_current",
            "study_instance_uid",
            "model_id",
            "model_version",
            unique=True,
            sqlite_where=text(CURRENT),
            postgresql_where=text(CURRENT),
        ),
        Index("ix_jobs_state_lease_expires_at", "state", "lease_expires_at"),
        CheckConstraint(f"state IN ({STATE_VALUES})", name="ck_jobs_state"),
        CheckConstraint("attempts >= 0", name="ck_jobs_attempts"),
    )


class SeriesDecisionRow(Base):
    """The series selection rules' verdict on one series, for the job that read the study."""

    __tablename__ = "series_decisions"

    job_id: Mapped[str] = mapped_column(
        JOB_ID, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    series_instance_uid: Mapped[str] = mapped_column(UID, primary_key=True)
    position: Mapped[int] = mapped_column(Integer)  # the order the rules listed the series in
    eligible: Mapped[bool]
    reason: Mapped[str] = mapped_column(Text)


class WatcherStateRow(Base):
    """Small key/value state of the change-feed watcher (e.g. the last processed /changes seq)."""

    __tablename__ = "watcher_state"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]
