"""A model's life: stages of model versions, and shadow readings

``model_stages``: the stage of each model version an operator moved (candidate, shadow,
active, retired), who moved it, why, what it replaced and the promotion gate's figures.
``jobs.shadow``: a reading by a version in shadow (stored, never sent). See
:mod:`preread.lifecycle`.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STAGES = ("candidate", "shadow", "active", "retired")


def upgrade() -> None:
    op.create_table(
        "model_stages",
        sa.Column("model_id", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("replaced", sa.String(64), nullable=True),
        sa.Column("gate", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
        sa.PrimaryKeyConstraint("model_id", "version", name="pk_model_stages"),
        sa.CheckConstraint(
            "stage IN (" + ", ".join(f"'{s}'" for s in _STAGES) + ")",
            name="ck_model_stages_stage",
        ),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("shadow", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("shadow")
    op.drop_table("model_stages")
