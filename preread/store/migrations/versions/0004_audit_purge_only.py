"""the audit trail loses records only through its purge: the anchor is guarded, TRUNCATE refused

Before, anyone who could run SQL as the application could insert an anchor and then delete
every record up to it, or TRUNCATE both tables. Now:

* ``audit_events``: UPDATE refused (as before); DELETE only of records the anchor covers *and*
  only while the purge code runs (a transaction-local flag, :func:`purging` below); TRUNCATE
  refused (PostgreSQL; SQLite has none, and its ``DELETE FROM`` without WHERE fires the
  row triggers because the table has triggers).
* ``audit_anchor``: INSERT and UPDATE only while the purge code runs, only forward, and only to
  a record that is stored with that hash; DELETE and TRUNCATE refused.

The flag is PostgreSQL's custom setting ``preread.audit_purge`` set with ``set_config(…, true)``
(it ends with the transaction), and on SQLite the function ``preread_audit_purging()`` that
:func:`preread.store.make_engine` registers on each connection (a connection without it cannot
delete or move the anchor at all). This keeps out SQL that is not the purge code (a stray
statement, a script, an injection through another table's code); it does not keep out someone
who can disable triggers (a superuser, the tables' owner, whoever holds the SQLite file):
:mod:`preread.audit.checkpoints` (signed heads in a file the database never sees) catches what
such a person does.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PG_UPGRADE = (
    """
    CREATE FUNCTION preread_audit_purging() RETURNS boolean LANGUAGE sql STABLE AS $$
      SELECT COALESCE(current_setting('preread.audit_purge', true), '') = 'on'
    $$
    """,
    """
    CREATE OR REPLACE FUNCTION preread_audit_append_only() RETURNS trigger AS $$
    BEGIN
      IF TG_OP = 'DELETE' AND preread_audit_purging() AND OLD.seq <= COALESCE(
          (SELECT after_seq FROM audit_anchor WHERE id = 1), 0) THEN
        RETURN OLD;
      END IF;
      RAISE EXCEPTION 'audit_events is append-only: % refused (only purge removes)', TG_OP;
    END $$ LANGUAGE plpgsql
    """,
    """
    CREATE FUNCTION preread_audit_anchor_guard() RETURNS trigger AS $$
    BEGIN
      IF TG_OP = 'DELETE' OR NOT preread_audit_purging() THEN
        RAISE EXCEPTION 'audit_anchor is moved only by the audit purge: % refused', TG_OP;
      END IF;
      IF TG_OP = 'UPDATE' AND NEW.after_seq <= OLD.after_seq THEN
        RAISE EXCEPTION 'audit_anchor only moves forward: UPDATE refused';
      END IF;
      IF NOT EXISTS (SELECT 1 FROM audit_events
                     WHERE seq = NEW.after_seq AND hash = NEW.after_hash) THEN
        RAISE EXCEPTION 'audit_anchor must be a stored record: % refused', TG_OP;
      END IF;
      RETURN NEW;
    END $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER audit_anchor_guard BEFORE INSERT OR UPDATE OR DELETE ON audit_anchor
    FOR EACH ROW EXECUTE FUNCTION preread_audit_anchor_guard()
    """,
    """
    CREATE FUNCTION preread_audit_no_truncate() RETURNS trigger AS $$
    BEGIN
      RAISE EXCEPTION '% is append-only: TRUNCATE refused', TG_TABLE_NAME;
    END $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION preread_audit_no_truncate()
    """,
    """
    CREATE TRIGGER audit_anchor_no_truncate BEFORE TRUNCATE ON audit_anchor
    FOR EACH STATEMENT EXECUTE FUNCTION preread_audit_no_truncate()
    """,
)
PG_DOWNGRADE = (
    "DROP TRIGGER IF EXISTS audit_anchor_no_truncate ON audit_anchor",
    "DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events",
    "DROP FUNCTION IF EXISTS preread_audit_no_truncate()",
    "DROP TRIGGER IF EXISTS audit_anchor_guard ON audit_anchor",
    "DROP FUNCTION IF EXISTS preread_audit_anchor_guard()",
    """
    CREATE OR REPLACE FUNCTION preread_audit_append_only() RETURNS trigger AS $$
    BEGIN
      IF TG_OP = 'DELETE' AND OLD.seq <= COALESCE(
          (SELECT after_seq FROM audit_anchor WHERE id = 1), 0) THEN
        RETURN OLD;
      END IF;
      RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP;
    END $$ LANGUAGE plpgsql
    """,
    "DROP FUNCTION IF EXISTS preread_audit_purging()",
)

_STORED = "EXISTS (SELECT 1 FROM audit_events WHERE seq = NEW.after_seq AND hash = NEW.after_hash)"
SQLITE_UPGRADE = (
    "DROP TRIGGER audit_events_no_delete",
    """
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    WHEN NOT preread_audit_purging()
      OR OLD.seq > COALESCE((SELECT after_seq FROM audit_anchor WHERE id = 1), 0)
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused (only purge removes)');
    END
    """,
    f"""
    CREATE TRIGGER audit_anchor_guard_insert BEFORE INSERT ON audit_anchor
    WHEN NOT preread_audit_purging() OR NOT {_STORED}
    BEGIN SELECT RAISE(ABORT, 'audit_anchor is moved only by the audit purge: INSERT refused');
    END
    """,
    f"""
    CREATE TRIGGER audit_anchor_guard_update BEFORE UPDATE ON audit_anchor
    WHEN NOT preread_audit_purging() OR NEW.after_seq <= OLD.after_seq OR NOT {_STORED}
    BEGIN SELECT RAISE(ABORT, 'audit_anchor is moved only by the audit purge: UPDATE refused');
    END
    """,
    """
    CREATE TRIGGER audit_anchor_no_delete BEFORE DELETE ON audit_anchor
    BEGIN SELECT RAISE(ABORT, 'audit_anchor is moved only by the audit purge: DELETE refused');
    END
    """,
)
SQLITE_DOWNGRADE = (
    "DROP TRIGGER IF EXISTS audit_anchor_no_delete",
    "DROP TRIGGER IF EXISTS audit_anchor_guard_update",
    "DROP TRIGGER IF EXISTS audit_anchor_guard_insert",
    "DROP TRIGGER audit_events_no_delete",
    """
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    WHEN OLD.seq > COALESCE((SELECT after_seq FROM audit_anchor WHERE id = 1), 0)
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused'); END
    """,
)


def upgrade() -> None:
    postgres = op.get_context().dialect.name == "postgresql"
    for statement in PG_UPGRADE if postgres else SQLITE_UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    postgres = op.get_context().dialect.name == "postgresql"
    for statement in PG_DOWNGRADE if postgres else SQLITE_DOWNGRADE:
        op.execute(statement)
