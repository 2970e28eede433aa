"""jobs record their key images: the Secondary Capture series and the Key Object Selection

A reading may write, besides its SR and SEG, one series of Secondary Capture key images (one
instance per finding) and one Key Object Selection document (``PREREAD_OUTPUTS``). They are
recorded before they are stored, like the SR and SEG, so that a retry replaces them and a
superseding reading deletes them: ``sc_series_uid``, ``sc_sop_uids`` (the instances' SOP
Instance UIDs, space-separated, in finding order), ``orthanc_sc_series_id``, and
``kos_series_uid``, ``kos_sop_uid``, ``orthanc_kos_series_id``. Jobs recorded before have none.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("sc_series_uid", sa.String(64)),
    ("sc_sop_uids", sa.Text()),
    ("orthanc_sc_series_id", sa.String(64)),
    ("kos_series_uid", sa.String(64)),
    ("kos_sop_uid", sa.String(64)),
    ("orthanc_kos_series_id", sa.String(64)),
)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
