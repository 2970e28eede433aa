"""The stages of model versions in the job store (table ``model_stages``, migration 0011)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from preread.lifecycle.stages import Stage, StageRecord
from preread.store import JobStore, StoreError
from preread.store.database import READ_ONLY
from preread.store.schema import ModelStageRow

__all__ = ["read_stages", "stage_of", "write_stage"]


def read_stages(store: JobStore, model_id: str | None = None) -> list[StageRecord]:
    """Every recorded version (of ``model_id``), by model id and newest move first (read on a
    read-only connection: the watcher asks while its own transaction is open)."""
    reader = sessionmaker(store.engine.execution_options(**{READ_ONLY: True}))
    stmt = select(ModelStageRow)
    if model_id is not None:
        stmt = stmt.where(ModelStageRow.model_id == model_id)
    try:
        with reader.begin() as session:
            rows = session.scalars(
                stmt.order_by(ModelStageRow.model_id, ModelStageRow.changed_at.desc())
            ).all()
            return [_record(r) for r in rows]
    except SQLAlchemyError as exc:
        raise StoreError(f"reading the model stages failed: {exc}") from exc


def stage_of(session: Session, model_id: str, version: str, *, lock: bool = False) -> StageRecord:
    """The version's record (a candidate when no move was ever recorded)."""
    stmt = select(ModelStageRow).where(
        ModelStageRow.model_id == model_id, ModelStageRow.version == version
    )
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalars(stmt).one_or_none()
    return StageRecord(model_id, version, Stage.CANDIDATE) if row is None else _record(row)


def write_stage(
    session: Session,
    model_id: str,
    version: str,
    stage: Stage,
    *,
    by: str,
    reason: str,
    replaced: str | None = None,
    gate: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> StageRecord:
    """Record the version's new stage in the caller's transaction (``replaced``/``gate`` are
    kept from an earlier move unless given)."""
    row = session.get(ModelStageRow, (model_id, version))
    if row is None:
        row = ModelStageRow(model_id=model_id, version=version)
        session.add(row)
    row.stage = stage.value
    row.changed_at = now or datetime.now(UTC)
    row.changed_by = by
    row.reason = reason
    if replaced is not None:
        row.replaced = replaced
    if gate is not None:
        row.gate = dict(gate)
    session.flush()
    return _record(row)


def _record(row: ModelStageRow) -> StageRecord:
    return StageRecord(
        model_id=row.model_id,
        version=row.version,
        stage=Stage(row.stage),
        changed_at=row.changed_at,
        changed_by=row.changed_by,
        reason=row.reason,
        replaced=row.replaced,
        gate=None if row.gate is None else dict(row.gate),
    )
