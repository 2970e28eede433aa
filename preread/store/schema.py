"""The job store's tables as SQLAlchemy 2 declarative models (internal to the store).

The migrations in :mod:`preread.store.migrations` create exactly this schema; a test compares
them. Change both together (``alembic revision --autogenerate``, see ``alembic.ini``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    false,
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
    findings_count: Mapped[int | None] = mapped_column(Integer)
    # the worklist's sort keys (preread.store.sizes; migration 0008)
    largest_finding_mm: Mapped[float | None] = mapped_column(Float)
    largest_solid_mm: Mapped[float | None] = mapped_column(Float)
    sr_series_uid: Mapped[str | None] = mapped_column(UID)
    sr_sop_uid: Mapped[str | None] = mapped_column(UID)
    orthanc_sr_series_id: Mapped[str | None] = mapped_column(ORTHANC_ID)
    seg_series_uid: Mapped[str | None] = mapped_column(UID)
    seg_sop_uid: Mapped[str | None] = mapped_column(UID)
    orthanc_seg_series_id: Mapped[str | None] = mapped_column(ORTHANC_ID)
    # key images (migration 0006): the SC series and its instances' UIDs, space-separated
    sc_series_uid: Mapped[str | None] = mapped_column(UID)
    sc_sop_uids: Mapped[str | None] = mapped_column(Text)
    orthanc_sc_series_id: Mapped[str | None] = mapped_column(ORTHANC_ID)
    kos_series_uid: Mapped[str | None] = mapped_column(UID)
    kos_sop_uid: Mapped[str | None] = mapped_column(UID)
    orthanc_kos_series_id: Mapped[str | None] = mapped_column(ORTHANC_ID)
    outputs_removed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None]
    supersedes_job_id: Mapped[str | None] = mapped_column(JOB_ID, ForeignKey("jobs.id"))
    superseded_by: Mapped[str | None] = mapped_column(JOB_ID, ForeignKey("jobs.id"))
    # a shadow reading (migration 0011, preread.lifecycle): stored, never sent anywhere
    shadow: Mapped[bool] = mapped_column(default=False, server_default=false())
    # what the series looked like to the model (migration 0013, preread.monitoring.acquisition)
    acquisition: Mapped[dict[str, Any] | None]

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


class StudyRow(Base):
    """A study the watcher saw: its tenant and the identifying tags the reports need.

    ``tenant`` is None when the study's sender belongs to no tenant (its jobs end
    ``not_applicable``; no client sees it). DICOM values are kept in their string forms.
    """

    __tablename__ = "studies"

    study_instance_uid: Mapped[str] = mapped_column(UID, primary_key=True)
    tenant: Mapped[str | None] = mapped_column(String(64))
    orthanc_study_id: Mapped[str] = mapped_column(ORTHANC_ID)
    sender_aet: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[str] = mapped_column(Text)
    issuer_of_patient_id: Mapped[str] = mapped_column(Text)
    patient_name: Mapped[str] = mapped_column(Text)
    patient_birth_date: Mapped[str] = mapped_column(String(16))
    patient_sex: Mapped[str] = mapped_column(String(16))
    accession_number: Mapped[str] = mapped_column(Text)
    study_date: Mapped[str] = mapped_column(String(16))
    study_time: Mapped[str] = mapped_column(String(32))
    study_description: Mapped[str] = mapped_column(Text)
    modalities: Mapped[str] = mapped_column(Text)
    first_seen_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (Index("ix_studies_tenant_study_date", "tenant", "study_date"),)


class ApiClientRow(Base):
    """An OAuth2 client (client-credentials grant) of one tenant; the secret is stored hashed."""

    __tablename__ = "api_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(Text)
    secret_hash: Mapped[str] = mapped_column(Text)
    scopes: Mapped[str] = mapped_column(Text)  # space-separated, as in OAuth2
    purposes: Mapped[str] = mapped_column(Text)  # purposes of use it may ask tokens for
    rate_limit_per_minute: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class IdempotencyRow(Base):
    """The answer given to one Idempotency-Key of one client (replayed for a repeated request)."""

    __tablename__ = "idempotency_keys"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class WebhookRow(Base):
    """A URL a tenant registered to be told of finished reads (Standard Webhooks signing)."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text)  # needed in clear to sign; never returned again
    events: Mapped[str] = mapped_column(Text)  # space-separated event types
    description: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]


class WebhookDeliveryRow(Base):
    """One message to one webhook: the persisted outbox, written with the job's final state."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the webhook-id header
    webhook_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_webhook_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
        CheckConstraint(
            "state IN ('pending', 'delivered', 'failed')", name="ck_webhook_deliveries_state"
        ),
    )


class GrantRow(Base):
    """An authorization of the data of one source for one purpose (see :mod:`preread.grants`)."""

    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    sender_aets: Mapped[str] = mapped_column(Text)  # space-separated; empty: any sender
    purpose: Mapped[str] = mapped_column(String(32))
    modalities: Mapped[str] = mapped_column(Text)  # space-separated; empty: any
    study_date_from: Mapped[str | None] = mapped_column(String(8))
    study_date_to: Mapped[str | None] = mapped_column(String(8))
    study_uids: Mapped[list[str] | None] = mapped_column(JSON_TYPE)  # None: all studies
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime]
    legal_basis: Mapped[str] = mapped_column(Text)
    issued_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(Text)
    revoke_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(
            "purpose IN ('clinical-preread', 'quality-review', 'model-training', 'research')",
            name="ck_grants_purpose",
        ),
        CheckConstraint("valid_to > valid_from", name="ck_grants_validity"),
    )


class AuditEventRow(Base):
    """One access to patient data, hash-chained to the one before (see :mod:`preread.audit`)."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(255))
    tenant: Mapped[str | None] = mapped_column(String(64))
    purpose: Mapped[str | None] = mapped_column(String(32))
    study_instance_uid: Mapped[str | None] = mapped_column(UID, index=True)
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditAnchorRow(Base):
    """Where the chain starts after retention removed its oldest records (one row, id 1)."""

    __tablename__ = "audit_anchor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    after_seq: Mapped[int] = mapped_column(BigInteger)
    after_hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class UserRow(Base):
    """A person's local account in one tenant (see :mod:`preread.accounts`)."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    username: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(Text)  # None: no local password
    disabled_at: Mapped[datetime | None]
    password_changed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index("uq_users_username", "username", unique=True),
        CheckConstraint("role IN ('radiologist', 'admin')", name="ck_users_role"),
    )


class UserSessionRow(Base):
    """A signed-in browser: only the SHA-256 of its cookie's token is stored."""

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    method: Mapped[str] = mapped_column(String(16))  # how the user signed in: password, oidc
    source: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)  # the absolute lifetime's end

    __table_args__ = (Index("uq_user_sessions_token_hash", "token_hash", unique=True),)


class OidcIdentityRow(Base):
    """A person at a hospital's OpenID provider (issuer + ``sub``, which the provider never
    reassigns) and the account they sign in to (see :mod:`preread.oidc`)."""

    __tablename__ = "oidc_identities"

    issuer: Mapped[str] = mapped_column(String(255), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime]
    last_sign_in_at: Mapped[datetime]


class OidcLoginRow(Base):
    """A sign-in in progress at the OpenID provider: used once, within minutes. Only hashes of
    the ``state`` and of the browser's binding cookie are stored."""

    __tablename__ = "oidc_logins"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    browser_hash: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(128))
    code_verifier: Mapped[str] = mapped_column(String(128))
    redirect_uri: Mapped[str] = mapped_column(Text)
    next_path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class ReviewRow(Base):
    """A radiologist's signed review of one AI result (see :mod:`preread.reviews`).

    Never updated but for ``stored_at``: a new signature is a new row whose ``version`` is one
    more than the study's and model's newest and whose ``supersedes_id`` names it (the unique
    index keeps two signatures from taking the same version). ``content`` is the versioned
    typed record (assessments, added nodules with their masks; :mod:`preread.reviews.codec`).
    """

    __tablename__ = "reviews"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    study_instance_uid: Mapped[str] = mapped_column(UID)
    model_id: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(JOB_ID, ForeignKey("jobs.id"), index=True)
    ai_sr_sop_uid: Mapped[str] = mapped_column(UID)
    version: Mapped[int] = mapped_column(Integer)
    supersedes_id: Mapped[str | None] = mapped_column(String(36), ForeignKey("reviews.id"))
    reviewer_id: Mapped[str] = mapped_column(String(64))
    reviewer_name: Mapped[str] = mapped_column(Text)
    signed_at: Mapped[datetime]
    content: Mapped[dict[str, Any]]
    sr_series_uid: Mapped[str] = mapped_column(UID)
    sr_sop_uid: Mapped[str] = mapped_column(UID)
    seg_series_uid: Mapped[str | None] = mapped_column(UID)
    seg_sop_uid: Mapped[str | None] = mapped_column(UID)
    stored_at: Mapped[datetime | None]

    __table_args__ = (
        Index(
            "uq_reviews_study_model_version",
            "study_instance_uid",
            "model_id",
            "version",
            unique=True,
        ),
        Index("ix_reviews_tenant_study_instance_uid", "tenant", "study_instance_uid"),
        CheckConstraint("version >= 1", name="ck_reviews_version"),
    )


BACKFILL_STATES = ("found", "held", "done", "refused", "not_applicable", "failed")


class BackfillRunRow(Base):
    """One re-reading of a tenant's archive over a date range (see :mod:`preread.backfill`).

    ``first_date``/``last_date`` are DICOM DA strings; ``finished_at`` is set once every study
    it found reached a final state (a run stopped before that is resumed by the same command)."""

    __tablename__ = "backfill_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    first_date: Mapped[str] = mapped_column(String(8))
    last_date: Mapped[str] = mapped_column(String(8))
    rate_per_hour: Mapped[float | None] = mapped_column(Float)
    started_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_backfill_runs_tenant", "tenant"),)


class BackfillItemRow(Base):
    """One archived study a backfill found: at most one per tenant and StudyInstanceUID, so
    that no run reads a study another already read.

    ``state``: ``found`` (not yet looked at), ``held`` (being read), then ``done``,
    ``refused`` (no quality-review grant covers it), ``not_applicable`` (no series the model
    reads) or ``failed`` (``attempts`` tries; retried while under the limit). ``moved``: the
    backfill moved the study into PreRead's Orthanc and it is still there (the watcher leaves
    such a study alone; it is deleted once read). ``summary`` is what the
    worklist needs of the result (sizes, type, Lung-RADS; no patient data); the patient's
    identifiers are kept to ask the PACS for later CTs and to name the patient on the worklist.
    """

    __tablename__ = "backfill_items"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, primary_key=True)
    run_id: Mapped[str] = mapped_column(String(36), ForeignKey("backfill_runs.id"), index=True)
    study_date: Mapped[str] = mapped_column(String(8))
    patient_id: Mapped[str] = mapped_column(Text)
    issuer_of_patient_id: Mapped[str] = mapped_column(Text)
    accession_number: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    moved: Mapped[bool]
    model: Mapped[str | None] = mapped_column(String(200))
    summary: Mapped[dict[str, Any] | None]
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_backfill_items_study_instance_uid", "study_instance_uid"),
        CheckConstraint(
            "state IN (" + ", ".join(f"'{s}'" for s in BACKFILL_STATES) + ")",
            name="ck_backfill_items_state",
        ),
    )


MODEL_STAGES = ("candidate", "shadow", "active", "retired")


class ModelStageRow(Base):
    """The stage of one installed model version in its life (see :mod:`preread.lifecycle`):
    one row per version that an operator ever moved; a version without a row is a candidate.

    ``replaced``: the version that was active when this one was promoted (what ``rollback``
    restores); ``gate``: the promotion gate's figures, as the promotion recorded them."""

    __tablename__ = "model_stages"

    model_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    stage: Mapped[str] = mapped_column(String(16))
    changed_at: Mapped[datetime]
    changed_by: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    replaced: Mapped[str | None] = mapped_column(String(64))
    gate: Mapped[dict[str, Any] | None]

    __table_args__ = (
        CheckConstraint(
            "stage IN (" + ", ".join(f"'{s}'" for s in MODEL_STAGES) + ")",
            name="ck_model_stages_stage",
        ),
    )


FINAL_REPORT_SOURCES = ("hl7", "fhir")


class FinalReportRow(Base):
    """A hospital's final radiology report of one exam, and the lung nodules it mentions (see
    :mod:`preread.finalreports`).

    One row per tenant and accession number: a corrected report replaces ``text`` and
    ``extraction`` and counts ``version`` up (``first_received_at`` stays). ``extraction`` is
    the extractor's version, mentions and summary; ``study_instance_uid`` the tenant's study
    with this accession number once the watcher has seen it (None: not matched yet)."""

    __tablename__ = "final_reports"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    accession_number: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(8))
    sender: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    extraction: Mapped[dict[str, Any]]
    study_instance_uid: Mapped[str | None] = mapped_column(UID)
    first_received_at: Mapped[datetime]
    received_at: Mapped[datetime]
    matched_at: Mapped[datetime | None]

    __table_args__ = (
        Index(
            "uq_final_reports_tenant_accession_number", "tenant", "accession_number", unique=True
        ),
        Index("ix_final_reports_tenant_study_instance_uid", "tenant", "study_instance_uid"),
        CheckConstraint("version >= 1", name="ck_final_reports_version"),
        CheckConstraint(
            "source IN (" + ", ".join(f"'{s}'" for s in FINAL_REPORT_SOURCES) + ")",
            name="ck_final_reports_source",
        ),
    )


class MonitoringAlertRow(Base):
    """An out-of-control signal on one metric of one model version, for one tenant (see
    :mod:`preread.monitoring`); open while ``cleared_at`` is unset."""

    __tablename__ = "monitoring_alerts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    model_id: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(64))
    acquisition_group: Mapped[str] = mapped_column(String(255))
    raised_at: Mapped[datetime]
    recent_mean: Mapped[float] = mapped_column(Float)
    baseline_mean: Mapped[float] = mapped_column(Float)
    baseline_sd: Mapped[float] = mapped_column(Float)
    z: Mapped[float] = mapped_column(Float)
    cleared_at: Mapped[datetime | None]

    __table_args__ = (
        Index(
            "ix_monitoring_alerts_key",
            "tenant",
            "model_id",
            "model_version",
            "metric",
        ),
    )
