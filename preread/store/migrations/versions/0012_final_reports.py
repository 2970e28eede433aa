"""Final radiology reports, to compare with the AI's readings

``final_reports``: one row per tenant and accession number: the hospital's final report (HL7
v2 ORU^R01 over MLLP, or a FHIR DiagnosticReport), its version (a corrected report replaces the
text and counts up), the lung nodule mentions extracted from it, and the study it was matched
to. See :mod:`preread.finalreports`.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SOURCES = ("hl7", "fhir")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "final_reports",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("accession_number", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("sender", sa.String(255), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column(
            "extraction",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column("study_instance_uid", sa.String(64), nullable=True),
        sa.Column("first_received_at", _time(), nullable=False),
        sa.Column("received_at", _time(), nullable=False),
        sa.Column("matched_at", _time(), nullable=True),
        sa.CheckConstraint("version >= 1", name="ck_final_reports_version"),
        sa.CheckConstraint(
            "source IN (" + ", ".join(f"'{s}'" for s in _SOURCES) + ")",
            name="ck_final_reports_source",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_final_reports"),
    )
    op.create_index(
        "uq_final_reports_tenant_accession_number",
        "final_reports",
        ["tenant", "accession_number"],
        unique=True,
    )
    op.create_index(
        "ix_final_reports_tenant_study_instance_uid",
        "final_reports",
        ["tenant", "study_instance_uid"],
    )


def downgrade() -> None:
    op.drop_table("final_reports")
