"""Re-reading the archive: backfill runs and the studies they found

``backfill_runs``: one re-reading of a tenant's archive over a date range (who started it, its
rate, when it finished). ``backfill_items``: each archived CT study a run found, one per tenant
and StudyInstanceUID (no study is read twice), its state and what the lost-to-follow-up
worklist needs of its result. See :mod:`preread.backfill`.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATES = ("found", "held", "done", "refused", "not_applicable", "failed")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "backfill_runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("first_date", sa.String(8), nullable=False),
        sa.Column("last_date", sa.String(8), nullable=False),
        sa.Column("rate_per_hour", sa.Float(), nullable=True),
        sa.Column("started_by", sa.String(255), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("finished_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_backfill_runs"),
    )
    op.create_index("ix_backfill_runs_tenant", "backfill_runs", ["tenant"])
    op.create_table(
        "backfill_items",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("study_date", sa.String(8), nullable=False),
        sa.Column("patient_id", sa.Text(), nullable=False),
        sa.Column("issuer_of_patient_id", sa.Text(), nullable=False),
        sa.Column("accession_number", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("moved", sa.Boolean(), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column(
            "summary",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=True,
        ),
        sa.Column("updated_at", _time(), nullable=False),
        sa.CheckConstraint(
            "state IN (" + ", ".join(f"'{s}'" for s in _STATES) + ")",
            name="ck_backfill_items_state",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["backfill_runs.id"], name="fk_backfill_items_run_id_backfill_runs"
        ),
        sa.PrimaryKeyConstraint("tenant", "study_instance_uid", name="pk_backfill_items"),
    )
    op.create_index("ix_backfill_items_run_id", "backfill_items", ["run_id"])
    op.create_index(
        "ix_backfill_items_study_instance_uid", "backfill_items", ["study_instance_uid"]
    )


def downgrade() -> None:
    op.drop_table("backfill_items")
    op.drop_table("backfill_runs")
