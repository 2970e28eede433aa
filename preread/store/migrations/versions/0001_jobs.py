"""jobs, series decisions, watcher state

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATES = (
    "queued",
    "fetching",
    "inferring",
    "writing",
    "done",
    "failed",
    "not_applicable",
    "superseded",
)
CURRENT = "state != 'superseded'"


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("orthanc_study_id", sa.String(64), nullable=False),
        sa.Column("model_id", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("study_fingerprint", sa.String(128), nullable=False),
        sa.Column("rerun_fingerprint", sa.String(128), nullable=True),
        sa.Column("series_instance_uid", sa.String(64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("reason_code", sa.String(64), nullable=True),
        sa.Column("provider_requested", sa.String(64), nullable=True),
        sa.Column("provider_used", sa.String(64), nullable=True),
        sa.Column("provider_warning", sa.Text(), nullable=True),
        sa.Column("timings", _json(), nullable=False),
        sa.Column("result", _json(), nullable=True),
        sa.Column("sr_series_uid", sa.String(64), nullable=True),
        sa.Column("sr_sop_uid", sa.String(64), nullable=True),
        sa.Column("orthanc_sr_series_id", sa.String(64), nullable=True),
        sa.Column("seg_series_uid", sa.String(64), nullable=True),
        sa.Column("seg_sop_uid", sa.String(64), nullable=True),
        sa.Column("orthanc_seg_series_id", sa.String(64), nullable=True),
        sa.Column("outputs_removed_at", _time(), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.Column("started_at", _time(), nullable=True),
        sa.Column("finished_at", _time(), nullable=True),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", _time(), nullable=True),
        sa.Column("supersedes_job_id", sa.String(36), nullable=True),
        sa.Column("superseded_by", sa.String(36), nullable=True),
        sa.CheckConstraint(
            "state IN (" + ", ".join(f"'{s}'" for s in STATES) + ")", name="ck_jobs_state"
        ),
        sa.CheckConstraint("attempts >= 0", name="ck_jobs_attempts"),
        sa.ForeignKeyConstraint(["superseded_by"], ["jobs.id"], name="fk_jobs_superseded_by_jobs"),
        sa.ForeignKeyConstraint(
            ["supersedes_job_id"], ["jobs.id"], name="fk_jobs_supersedes_job_id_jobs"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_study_instance_uid", "jobs", ["study_instance_uid"])
    op.create_index("ix_jobs_updated_at", "jobs", ["updated_at"])
    op.create_index("ix_jobs_state_lease_expires_at", "jobs", ["state", "lease_expires_at"])
    op.create_index(
        "uq_jobs_current",
        "jobs",
        ["study_instance_uid", "model_id", "model_version"],
        unique=True,
        sqlite_where=sa.text(CURRENT),
        postgresql_where=sa.text(CURRENT),
    )
    op.create_table(
        "series_decisions",
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("series_instance_uid", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("eligible", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_series_decisions_job_id_jobs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "series_instance_uid", name="pk_series_decisions"),
    )
    op.create_table(
        "watcher_state",
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_watcher_state"),
    )


def downgrade() -> None:
    op.drop_table("watcher_state")
    op.drop_table("series_decisions")
    op.drop_table("jobs")
