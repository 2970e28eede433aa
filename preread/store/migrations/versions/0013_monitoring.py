"""Watching every model version in use: input statistics of each reading, and alerts

``jobs.acquisition``: the acquisition group and input statistics of the series a job read
(:mod:`preread.monitoring.acquisition`). ``monitoring_alerts``: out-of-control signals per
tenant, model version and metric (:mod:`preread.monitoring`).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column(
                "acquisition",
                sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                nullable=True,
            )
        )
    op.create_table(
        "monitoring_alerts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("model_id", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("acquisition_group", sa.String(255), nullable=False),
        sa.Column("raised_at", _time(), nullable=False),
        sa.Column("recent_mean", sa.Float(), nullable=False),
        sa.Column("baseline_mean", sa.Float(), nullable=False),
        sa.Column("baseline_sd", sa.Float(), nullable=False),
        sa.Column("z", sa.Float(), nullable=False),
        sa.Column("cleared_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_monitoring_alerts"),
    )
    op.create_index(
        "ix_monitoring_alerts_key",
        "monitoring_alerts",
        ["tenant", "model_id", "model_version", "metric"],
    )


def downgrade() -> None:
    op.drop_index("ix_monitoring_alerts_key", table_name="monitoring_alerts")
    op.drop_table("monitoring_alerts")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("acquisition")
