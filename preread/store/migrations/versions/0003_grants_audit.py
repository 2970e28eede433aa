"""grants, the hash-chained audit trail, clients' purposes of use, studies' modalities, the
not_authorized job state

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATES = (
    "queued",
    "fetching",
    "inferring",
    "writing",
    "done",
    "failed",
    "not_applicable",
    "superseded",
)
NEW_STATES = (*OLD_STATES[:-1], "not_authorized", "superseded")
PURPOSES = "'clinical-preread', 'quality-review', 'model-training', 'research'"

# Records may be removed only up to the anchor that retention moved first; never changed.
PG_FUNCTION = """
CREATE FUNCTION preread_audit_append_only() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' AND OLD.seq <= COALESCE(
      (SELECT after_seq FROM audit_anchor WHERE id = 1), 0) THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP;
END $$ LANGUAGE plpgsql
"""
PG_TRIGGER = """
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION preread_audit_append_only()
"""
SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    WHEN OLD.seq > COALESCE((SELECT after_seq FROM audit_anchor WHERE id = 1), 0)
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused'); END
    """,
)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _states(values: Sequence[str]) -> str:
    return "state IN (" + ", ".join(f"'{s}'" for s in values) + ")"


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("ck_jobs_state", type_="check")
        batch.create_check_constraint("ck_jobs_state", _states(NEW_STATES))
    with op.batch_alter_table("studies") as batch:  # grants scope studies by modality
        batch.add_column(sa.Column("modalities", sa.Text(), nullable=False, server_default=""))
    with op.batch_alter_table("studies") as batch:
        batch.alter_column("modalities", server_default=None)
    with op.batch_alter_table("api_clients") as batch:
        batch.add_column(
            sa.Column("purposes", sa.Text(), nullable=False, server_default="clinical-preread")
        )
    with op.batch_alter_table("api_clients") as batch:
        batch.alter_column("purposes", server_default=None)
    op.create_table(
        "grants",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("sender_aets", sa.Text(), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("modalities", sa.Text(), nullable=False),
        sa.Column("study_date_from", sa.String(8), nullable=True),
        sa.Column("study_date_to", sa.String(8), nullable=True),
        sa.Column("study_uids", _json(), nullable=True),
        sa.Column("valid_from", _time(), nullable=False),
        sa.Column("valid_to", _time(), nullable=False),
        sa.Column("legal_basis", sa.Text(), nullable=False),
        sa.Column("issued_by", sa.Text(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("revoked_at", _time(), nullable=True),
        sa.Column("revoked_by", sa.Text(), nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(f"purpose IN ({PURPOSES})", name="ck_grants_purpose"),
        sa.CheckConstraint("valid_to > valid_from", name="ck_grants_validity"),
        sa.PrimaryKeyConstraint("id", name="pk_grants"),
    )
    op.create_index("ix_grants_tenant", "grants", ["tenant"])
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", _time(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("purpose", sa.String(32), nullable=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", _json(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_study_instance_uid", "audit_events", ["study_instance_uid"])
    op.create_table(
        "audit_anchor",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("after_seq", sa.BigInteger(), nullable=False),
        sa.Column("after_hash", sa.String(64), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_anchor"),
    )
    if op.get_context().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(PG_TRIGGER)
    else:
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS preread_audit_append_only()")
    op.drop_table("audit_anchor")
    op.drop_table("audit_events")
    op.drop_table("grants")
    with op.batch_alter_table("api_clients") as batch:
        batch.drop_column("purposes")
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("modalities")
    op.execute(  # keep the history: the state 0002 knows, the reason code says what it was
        "UPDATE jobs SET state = 'not_applicable', reason_code = 'not_authorized'"
        " WHERE state = 'not_authorized'"
    )
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("ck_jobs_state", type_="check")
        batch.create_check_constraint("ck_jobs_state", _states(OLD_STATES))
