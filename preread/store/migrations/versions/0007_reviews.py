"""radiologists' reviews of AI results (reviews), versioned: a new signature is a new row

``reviews``: one row per signed review of one job's result; ``version`` counts the study's and
model's reviews (1, 2, …; unique per study and model id), ``supersedes_id`` names the review
before it, ``content`` holds the assessments and the added nodules (with their voxel masks),
the SR/SEG UIDs are recorded before the objects are stored and ``stored_at`` says when they
were. See :mod:`preread.reviews`.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("model_id", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("ai_sr_sop_uid", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("supersedes_id", sa.String(36), nullable=True),
        sa.Column("reviewer_id", sa.String(64), nullable=False),
        sa.Column("reviewer_name", sa.Text(), nullable=False),
        sa.Column("signed_at", _time(), nullable=False),
        sa.Column("content", _json(), nullable=False),
        sa.Column("sr_series_uid", sa.String(64), nullable=False),
        sa.Column("sr_sop_uid", sa.String(64), nullable=False),
        sa.Column("seg_series_uid", sa.String(64), nullable=True),
        sa.Column("seg_sop_uid", sa.String(64), nullable=True),
        sa.Column("stored_at", _time(), nullable=True),
        sa.CheckConstraint("version >= 1", name="ck_reviews_version"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_reviews_job_id_jobs"),
        sa.ForeignKeyConstraint(
            ["supersedes_id"], ["reviews.id"], name="fk_reviews_supersedes_id_reviews"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_reviews"),
    )
    op.create_index("ix_reviews_job_id", "reviews", ["job_id"])
    op.create_index(
        "ix_reviews_tenant_study_instance_uid", "reviews", ["tenant", "study_instance_uid"]
    )
    op.create_index(
        "uq_reviews_study_model_version",
        "reviews",
        ["study_instance_uid", "model_id", "version"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_table("reviews")
