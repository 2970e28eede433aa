"""jobs carry their worklist sort keys: the largest finding and the largest solid one

The radiologists' worklist (:mod:`preread.worklist`) sorts and filters a tenant's studies by
what the AI found — most urgent first: the largest nodule with a solid component (solid or
part-solid), then the largest finding of any type. Reading those out of every job's ``result``
document per page would cost a JSON parse per row; the job store writes them when a job is done
(``largest_finding_mm``, ``largest_solid_mm``: long axis in mm, NULL without such a finding).
Jobs finished before this revision get them from their stored result here.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from preread.store.sizes import largest_sizes

    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("largest_finding_mm", sa.Float(), nullable=True))
        batch.add_column(sa.Column("largest_solid_mm", sa.Float(), nullable=True))
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.String),
        sa.column("state", sa.String),
        sa.column("result", sa.JSON),
        sa.column("largest_finding_mm", sa.Float),
        sa.column("largest_solid_mm", sa.Float),
    )
    bind = op.get_bind()
    done = bind.execute(sa.select(jobs.c.id, jobs.c.result).where(jobs.c.state == "done"))
    for job_id, result in done.all():
        largest, solid = largest_sizes(result)
        if largest is not None:
            bind.execute(
                jobs.update()
                .where(jobs.c.id == job_id)
                .values(largest_finding_mm=largest, largest_solid_mm=solid)
            )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("largest_solid_mm")
        batch.drop_column("largest_finding_mm")
