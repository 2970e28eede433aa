"""The moves an operator makes (``preread models shadow|promote|rollback|retire``), each one
transaction with its audit record, and what a promotion's gate and a rollback's re-read need
from the job store and the reviews."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from inference.package import ModelPackage
from inference.registry import Registry
from preread.audit import AuditAction, AuditEvent, AuditLog, Outcome
from preread.domain import ModelRef
from preread.lifecycle.gate import GateResult, Nodule, ReviewedStudy, gate, held_out_figures
from preread.lifecycle.lineup import lineup_of, ref_of
from preread.lifecycle.stages import (
    LifecycleError,
    Move,
    Stage,
    StageRecord,
    check_move,
    check_words,
)
from preread.lifecycle.store import read_stages, stage_of, write_stage
from preread.reviews import Accepted, Modified, Rejected
from preread.reviews.store import ReviewStore
from preread.store import JobRecord, JobState, JobStore
from preread.store.queries import job_record
from preread.store.schema import JobRow

__all__ = ["GateRefusedError", "ModelLife", "WithdrawnRead"]


class GateRefusedError(LifecycleError):
    """The promotion gate did not pass: nothing changed (the refusal is audited)."""

    def __init__(self, result: GateResult) -> None:
        super().__init__("the promotion gate refused: " + "; ".join(result.failures))
        self.result = result


@dataclass(frozen=True)
class WithdrawnRead:
    """A study a withdrawn version read (its current real job), and what re-reads it."""

    study_instance_uid: str
    job_id: str
    finished_at: datetime | None
    reread_by: str | None = None


@dataclass
class ModelLife:
    """Moves between stages for the model ids of ``configured`` (``PREREAD_MODELS``)."""

    store: JobStore
    audit: AuditLog
    registry: Registry
    configured: list[ModelPackage]

    # --- reading ---------------------------------------------------------------------------

    def stages(self, model_id: str) -> list[StageRecord]:
        """Every installed version of ``model_id`` with its stage, newest version first (the
        version that reads for real marked active even when no move was recorded)."""
        self._configured(model_id)
        recorded = {s.version: s for s in read_stages(self.store, model_id)}
        active = self.active(model_id)
        out = []
        for version in reversed(self.registry.versions(model_id)):
            record = recorded.get(version, StageRecord(model_id, version, Stage.CANDIDATE))
            if version == active.version and record.stage is Stage.CANDIDATE:
                record = StageRecord(
                    model_id, version, Stage.ACTIVE, reason="named by PREREAD_MODELS"
                )
            out.append(record)
        return out

    def active(self, model_id: str) -> ModelRef:
        """The version that reads ``model_id``'s studies for real now."""
        lineup = lineup_of(self.configured, read_stages(self.store, model_id), self._find)
        for reading in lineup.readings:
            if reading.model.id == model_id and not reading.shadow:
                return reading.model
        raise LifecycleError(f"{model_id} is not in PREREAD_MODELS")

    def withdrawn_reads(
        self, model_id: str, version: str, since: datetime | None = None
    ) -> list[WithdrawnRead]:
        """The studies whose current real reading is by ``version`` (finished at or after
        ``since``), oldest first."""
        with self.store.transaction() as tx:
            stmt = select(JobRow).where(
                JobRow.model_id == model_id,
                JobRow.model_version == version,
                JobRow.shadow.is_(False),
                JobRow.state == JobState.DONE.value,
            )
            if since is not None:
                stmt = stmt.where(JobRow.finished_at >= since)
            rows = tx.session.scalars(stmt.order_by(JobRow.finished_at, JobRow.id)).all()
            return [WithdrawnRead(r.study_instance_uid, r.id, r.finished_at) for r in rows]

    # --- moves -----------------------------------------------------------------------------

    def shadow(self, model_id: str, version: str, *, by: str, reason: str) -> StageRecord:
        """Put an installed version in shadow: from the next study on, it reads every study the
        active version reads, and its results go nowhere."""
        by, reason = check_words(by, reason)
        self._find(model_id, version)
        if version == self.active(model_id).version:
            raise LifecycleError(f"{model_id}@{version} is the active version")
        return self._move(model_id, version, Move.SHADOW, Stage.SHADOW, by=by, reason=reason)

    def pin_active(self, model_id: str, *, by: str, reason: str) -> StageRecord:
        """Record the version that reads ``model_id`` now as active, if no move was recorded
        yet. Until then the version is the one ``PREREAD_MODELS`` names, and an unversioned
        name (``lung-nodule``) means the newest installed: publishing a candidate would make
        it the version that reads at the next restart, ungated. ``preread models finetune``
        pins before it publishes."""
        by, reason = check_words(by, reason)
        active = self.active(model_id)
        record = self._stage(model_id, active.version)
        if record.stage is Stage.ACTIVE and record.changed_at is not None:
            return record  # recorded already
        return self._move(model_id, active.version, Move.PIN, Stage.ACTIVE, by=by, reason=reason)

    def retire(self, model_id: str, version: str, *, by: str, reason: str) -> StageRecord:
        by, reason = check_words(by, reason)
        self._configured(model_id)
        if version == self.active(model_id).version:
            raise LifecycleError(
                f"{model_id}@{version} is the active version: promote another version or roll "
                "it back"
            )
        return self._move(model_id, version, Move.RETIRE, Stage.RETIRED, by=by, reason=reason)

    def evaluate_gate(
        self, model_id: str, version: str, reviews: ReviewStore, *, min_studies: int
    ) -> GateResult:
        """The gate's figures for promoting ``version`` (in shadow) over the active one."""
        active = self.active(model_id)
        studies = reviewed_in_shadow(self.store, reviews, model_id, active.version, version)
        active_ref = f"{model_id}@{active.version}"
        candidate = self._find(model_id, version).read_evaluation()
        return gate(
            studies,
            active=active_ref,
            candidate=f"{model_id}@{version}",
            active_evaluation=held_out_figures(
                self._find(model_id, active.version).read_evaluation(), candidate, active_ref
            ),
            candidate_evaluation=candidate,
            min_studies=min_studies,
        )

    def promote(
        self,
        model_id: str,
        version: str,
        reviews: ReviewStore,
        *,
        by: str,
        reason: str,
        min_studies: int,
    ) -> tuple[StageRecord, GateResult]:
        """Make ``version`` (in shadow) the active version if the gate passes; the version it
        replaces is retired (``rollback`` restores it). A refusal changes nothing and is
        audited with the gate's figures (:class:`GateRefusedError`)."""
        by, reason = check_words(by, reason)
        self._configured(model_id)
        check_move(self._stage(model_id, version), Move.PROMOTE)
        result = self.evaluate_gate(model_id, version, reviews, min_studies=min_studies)
        previous = self.active(model_id).version
        if not result.passed:
            self._audit(
                model_id, version, Move.PROMOTE, by, reason, Outcome.REFUSED, result.figures
            )
            raise GateRefusedError(result)
        with self.store.transaction() as tx:
            record = stage_of(tx.session, model_id, version, lock=True)
            check_move(record, Move.PROMOTE)
            now = datetime.now(UTC)
            write_stage(
                tx.session,
                model_id,
                previous,
                Stage.RETIRED,
                by=by,
                reason=f"replaced by {version}: {reason}",
                now=now,
            )
            promoted = write_stage(
                tx.session,
                model_id,
                version,
                Stage.ACTIVE,
                by=by,
                reason=reason,
                replaced=previous,
                gate=result.figures,
                now=now,
            )
            self.audit.record(
                self._event(model_id, version, Move.PROMOTE, by, reason, Outcome.SUCCESS,
                            {"replaced": previous, "gate": result.figures}),
                session=tx.session,
            )  # fmt: skip
        return promoted, result

    def rollback(
        self,
        model_id: str,
        version: str,
        *,
        by: str,
        reason: str,
        since: datetime | None = None,
        reread: bool = False,
    ) -> tuple[StageRecord, list[WithdrawnRead]]:
        """Withdraw the active ``version``: the version it replaced is active again (for the
        next job: every watcher and worker reads the stages again within seconds, and queued
        jobs of ``version`` are not read with it). Returns the restored version's record and
        the studies ``version`` read since ``since``; with ``reread`` each is read again by
        the restored version, whose results then replace the withdrawn ones in the study."""
        by, reason = check_words(by, reason)
        self._configured(model_id)
        record = self._stage(model_id, version)
        check_move(record, Move.ROLLBACK)
        if record.replaced is None:
            raise LifecycleError(
                f"{model_id}@{version} replaced no version (it was never promoted): nothing to "
                "roll back to"
            )
        restored = ref_of(self._find(model_id, record.replaced))
        with self.store.transaction() as tx:
            check_move(stage_of(tx.session, model_id, version, lock=True), Move.ROLLBACK)
            now = datetime.now(UTC)
            write_stage(tx.session, model_id, version, Stage.RETIRED, by=by,
                        reason=f"rolled back: {reason}", now=now)  # fmt: skip
            back = write_stage(tx.session, model_id, restored.version, Stage.ACTIVE, by=by,
                               reason=f"restored by the rollback of {version}: {reason}",
                               now=now)  # fmt: skip
            self.audit.record(
                self._event(model_id, version, Move.ROLLBACK, by, reason, Outcome.SUCCESS,
                            {"restored": restored.version, "reread": reread,
                             "since": since.isoformat() if since else None}),
                session=tx.session,
            )  # fmt: skip
        reads = self.withdrawn_reads(model_id, version, since)
        if reread:
            reads = [self._reread(r, restored) for r in reads]
        return back, reads

    # --- helpers ---------------------------------------------------------------------------

    def _reread(self, read: WithdrawnRead, model: ModelRef) -> WithdrawnRead:
        with self.store.transaction() as tx:
            new = tx.replace_reading(read.job_id, model)
        return WithdrawnRead(
            read.study_instance_uid, read.job_id, read.finished_at, new.id if new else None
        )

    def _configured(self, model_id: str) -> None:
        if model_id not in {p.card.id for p in self.configured}:
            names = ", ".join(sorted({p.card.id for p in self.configured})) or "none"
            raise LifecycleError(f"{model_id} is not in PREREAD_MODELS (configured: {names})")

    def _find(self, model_id: str, version: str) -> ModelPackage:
        for p in self.configured:
            if (p.card.id, p.card.version) == (model_id, version):
                return p
        try:
            return self.registry.find(model_id, version)
        except Exception as exc:
            raise LifecycleError(f"{model_id}@{version}: {exc}") from exc

    def _stage(self, model_id: str, version: str) -> StageRecord:
        """As recorded; the version ``PREREAD_MODELS`` names is active until a move says
        otherwise."""
        with self.store.transaction() as tx:
            record = stage_of(tx.session, model_id, version)
        if record.stage is Stage.CANDIDATE and version == self.active(model_id).version:
            return StageRecord(model_id, version, Stage.ACTIVE, reason="named by PREREAD_MODELS")
        return record

    def _move(
        self, model_id: str, version: str, move: Move, to: Stage, *, by: str, reason: str
    ) -> StageRecord:
        with self.store.transaction() as tx:
            check_move(stage_of(tx.session, model_id, version, lock=True), move)
            record = write_stage(tx.session, model_id, version, to, by=by, reason=reason)
            self.audit.record(
                self._event(model_id, version, move, by, reason, Outcome.SUCCESS, {}),
                session=tx.session,
            )
        return record

    def _audit(
        self,
        model_id: str,
        version: str,
        move: Move,
        by: str,
        reason: str,
        outcome: Outcome,
        detail: Mapping[str, Any],
    ) -> None:
        self.audit.record(self._event(model_id, version, move, by, reason, outcome, detail))

    @staticmethod
    def _event(
        model_id: str,
        version: str,
        move: Move,
        by: str,
        reason: str,
        outcome: Outcome,
        detail: Mapping[str, Any],
    ) -> AuditEvent:
        return AuditEvent(
            actor=f"operator:{by}",
            action=AuditAction.MODEL_STAGE,
            outcome=outcome,
            detail={"model": model_id, "version": version, "move": move.value, "reason": reason,
                    **detail},
        )  # fmt: skip


def reviewed_in_shadow(
    store: JobStore, reviews: ReviewStore, model_id: str, active: str, shadow: str
) -> list[ReviewedStudy]:
    """The studies ``shadow`` read (current done shadow jobs) whose current signed review
    judged ``active``'s reading of them, as the gate's input."""
    with store.transaction() as tx:
        rows = tx.session.scalars(
            select(JobRow)
            .where(
                JobRow.model_id == model_id,
                JobRow.model_version == shadow,
                JobRow.shadow.is_(True),
                JobRow.state == JobState.DONE.value,
            )
            .order_by(JobRow.finished_at, JobRow.id)
        ).all()
        shadow_jobs = [job_record(r) for r in rows]
    out: list[ReviewedStudy] = []
    for job in shadow_jobs:
        study = store.study(job.study_instance_uid)
        if study is None or study.tenant is None:
            continue
        review = reviews.current(study.tenant, job.study_instance_uid, model_id)
        if review is None or review.target.model_version != active:
            continue
        judged = store.get(review.target.job_id)
        out.append(_reviewed(job, judged, review))
    return out


def _reviewed(shadow_job: JobRecord, judged: JobRecord, review: Any) -> ReviewedStudy:
    ai = {f["tracking_uid"]: f for f in _findings(judged.result)}
    truth: list[Nodule] = []
    found = rejected = 0
    for assessment in review.assessments:
        finding = ai.get(assessment.tracking_uid)
        verdict = assessment.verdict
        if isinstance(verdict, Rejected):
            rejected += 1
            continue
        if finding is None:  # a review of another reading of the study: not comparable
            continue
        if isinstance(verdict, Accepted | Modified):
            long_axis = float(finding["long_axis_mm"])
            if isinstance(verdict, Modified) and verdict.long_axis_mm is not None:
                long_axis = verdict.long_axis_mm
            truth.append(Nodule(_vec(finding["center_lps_mm"]), long_axis))
            found += 1
    for added in review.added:
        truth.append(Nodule(_vec(added.centre_lps_mm), float(added.long_axis_mm)))
    return ReviewedStudy(
        study_instance_uid=shadow_job.study_instance_uid,
        review_id=review.id,
        truth=tuple(truth),
        active_found=found,
        active_false=rejected,
        shadow_findings=tuple(_vec(f["center_lps_mm"]) for f in _findings(shadow_job.result)),
    )


def _findings(result: Mapping[str, Any] | None) -> Iterable[Mapping[str, Any]]:
    found = (result or {}).get("findings")
    return [f for f in found if isinstance(f, Mapping)] if isinstance(found, list) else []


def _vec(value: Any) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in value)
    return (x, y, z)
