"""Re-reading a tenant's archive: ``preread backfill run`` (I/O here).

1. **find** — the hospital's PACS (``PREREAD_PRIORS_PEER``) is asked (C-FIND at study level) for
   every CT study dated in the range; each is recorded as an item of the run (one per tenant and
   StudyInstanceUID: a study found again, by this run after a restart or by another run, is not
   read again).
2. **authorize** — each study must be covered by a **quality-review** grant of the tenant: checked
   on what the PACS said of it before it is moved, and again on what arrived before any pixel is
   fetched. Without one the item is ``refused`` and nothing of the study is read; so is a study
   PreRead recorded for another tenant.
3. **yield to live studies** — a study is taken only when no live job is queued or running (the
   job store says), at most ``--rate`` studies an hour, in this one process (niced by the CLI):
   the archive is a low-priority queue of its own that live studies always pass.
4. **retrieve** — C-MOVE into PreRead's Orthanc. The item is marked ``moved`` first, so that the
   watcher, seeing the study arrive, leaves it to the backfill instead of reading it as a live
   study (no SR, SEG or webhook is made for an archived study: its result is for the quality
   team's worklist).
5. **read** — a study PreRead already read (a ``done`` job of the same model) gives its stored
   result; any other is read here with the same model and series rules
   (:func:`~preread.pipeline.analyze`). What the worklist needs (:func:`summarize`) is kept;
   a study the backfill moved is then deleted from PreRead's Orthanc.

Every access is audited under the study's UID with the grant that allowed it and the purpose
``quality-review``: ``backfill.query`` (the C-FIND, per run start), ``backfill.retrieve``,
``pixels.fetch``, ``inference.run``, ``report.read`` (a stored result used), ``access.refused``.
A study that fails (PACS down, a retrieve that came back incomplete, a series that cannot be
read) is ``failed`` with the reason and retried by the next start of the same run, up to
``max_attempts`` times. Reasons never hold a patient identifier.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from dicom_gateway.checks import SeriesLimits
from dicom_gateway.errors import GatewayError
from dicom_gateway.priors import ArchivedStudy, PriorCandidate
from dicom_gateway.selection import is_preread_series, select_series
from dicom_gateway.source import StudyInfo, StudySource
from inference.errors import InferenceError
from inference.predict import Predictor
from preread.audit import AuditAction, AuditEvent, AuditLog, Outcome
from preread.audit.chain import Json
from preread.backfill.store import BackfillItem, BackfillRun, BackfillStore
from preread.errors import PrereadError
from preread.followup.screening import LungRadsPolicy
from preread.grants import Grant, GrantStore, Purpose, StudyScope
from preread.pipeline import analyze, candidate
from preread.reports.json import to_json
from preread.store import JobState, JobStore
from preread.store.states import IN_PROGRESS
from preread.watcher import survey

__all__ = [
    "ArchiveSource",
    "BackfillContext",
    "BackfillError",
    "BackfillReport",
    "live_jobs_waiting",
    "needs_follow_up",
    "record_access",
    "run_backfill",
    "summarize",
]

log = logging.getLogger(__name__)

#: A nodule at least this large (mean diameter, mm) on an archived CT calls for follow-up
#: (Lung-RADS v2022: solid >= 6 mm at baseline is category 3 or more).
FOLLOW_UP_MM = 6.0
#: Lung-RADS exam categories that call for follow-up sooner than the annual screen.
FOLLOW_UP_CATEGORIES = frozenset({"3", "4A", "4B", "4X"})
ACTOR = "system:backfill"


class BackfillError(PrereadError):
    """A backfill cannot run: no PACS configured, the PACS could not be asked, a bad range."""


class ArchiveSource(Protocol):
    """The hospital's PACS as the backfill uses it (an
    :class:`~dicom_gateway.priors.OrthancPriors`)."""

    peer: str

    def archive_studies(self, first: dt.date, last: dt.date) -> list[ArchivedStudy]: ...

    def patient_studies(
        self,
        patient_id: str,
        issuer_of_patient_id: str | None,
        *,
        before: dt.date | None = None,
        after: dt.date | None = None,
        exclude_study_uid: str = "",
    ) -> list[PriorCandidate]: ...

    def retrieve(self, study_instance_uid: str) -> None: ...


class Workspace(StudySource, Protocol):
    """PreRead's Orthanc, where a moved study is read and then deleted."""

    def delete_study(self, orthanc_id: str) -> None: ...


@dataclass(frozen=True)
class BackfillContext:
    """What a backfill uses; :func:`preread.backfill.context` builds it from a service."""

    jobs: JobStore
    store: BackfillStore
    workspace: Workspace
    archive: ArchiveSource
    grants: GrantStore
    audit: AuditLog
    predictor: Predictor
    limits: SeriesLimits
    lung_rads: LungRadsPolicy
    #: the PACS's AE title (the sender a moved study will have), when known: the grant is then
    #: checked before the move too
    peer_aet: str | None
    actor: str = ACTOR
    max_attempts: int = 3
    #: True while live studies wait or are being read (the backfill then waits)
    live_busy: Callable[[], bool] | None = None
    poll_s: float = 1.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


@dataclass
class BackfillReport:
    """What one ``run`` call did."""

    run: BackfillRun
    resumed: bool
    found: int
    new: int
    read: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    waited_for_live_s: float = 0.0
    finished: bool = False


def live_jobs_waiting(jobs: JobStore) -> Callable[[], bool]:
    """Whether any live job is queued or being read (every job is live: the backfill makes
    none)."""

    def busy() -> bool:
        counts = jobs.counts_by_state()
        return any(counts[s] for s in (JobState.QUEUED, *IN_PROGRESS))

    return busy


def summarize(result: Mapping[str, Any]) -> dict[str, Json]:
    """What the worklist needs of a PreRead JSON result (:func:`preread.reports.json.to_json`):
    finding count, those with a mean diameter >= 6 mm, the largest one's mean diameter and
    type, and the exam's Lung-RADS category. No identifier."""
    findings = [f for f in result.get("findings") or [] if isinstance(f, Mapping)]
    sizes: list[tuple[float, str | None]] = []
    for f in findings:
        mean = f.get("mean_diameter_mm")
        if mean is None:  # a model without axial axes: its 3-D long axis
            mean = f.get("long_axis_mm")
        if isinstance(mean, int | float):
            kind = f.get("nodule_type")
            sizes.append((round(float(mean), 1), kind if isinstance(kind, str) else None))
    sizes.sort(key=lambda s: -s[0])
    lung_rads = result.get("lung_rads")
    category = lung_rads.get("category") if isinstance(lung_rads, Mapping) else None
    model = result.get("model")
    return {
        "findings": len(findings),
        "ge_6mm": sum(1 for s, _ in sizes if s >= FOLLOW_UP_MM),
        "largest_mean_diameter_mm": sizes[0][0] if sizes else None,
        "largest_type": sizes[0][1] if sizes else None,
        "lung_rads": category if isinstance(category, str) else None,
        "model": (
            f"{model.get('id')} {model.get('version')}" if isinstance(model, Mapping) else None
        ),
    }


def needs_follow_up(summary: Mapping[str, Any] | None) -> bool:
    """A finding >= 6 mm or a Lung-RADS exam category of 3 or more."""
    if not summary:
        return False
    ge_6 = summary.get("ge_6mm")
    return bool(isinstance(ge_6, int) and ge_6 > 0) or summary.get("lung_rads") in (
        FOLLOW_UP_CATEGORIES
    )


class _Refused(Exception):
    """No quality-review grant covers the study (the message says why)."""


class _NotApplicable(Exception):
    """The study has no series the model reads."""


class _Skip(Exception):
    """Not this time: the study is being read by the live pipeline."""


def run_backfill(
    ctx: BackfillContext,
    tenant: str,
    first: dt.date,
    last: dt.date,
    *,
    rate_per_hour: float | None = None,
    started_by: str,
    limit: int | None = None,
    progress: Callable[[BackfillItem], None] | None = None,
) -> BackfillReport:
    """Find the tenant's archived CT studies of ``first``..``last`` and read those not yet read
    (see the module docstring); ``limit`` stops after that many studies were looked at (the run
    stays open and the same call resumes it). Returns what was done.

    Raises:
        BackfillError: the range is empty, or the PACS could not be asked.
    """
    if first > last:
        raise BackfillError(f"the range {first} to {last} ends before it starts")
    if rate_per_hour is not None and rate_per_hour <= 0:
        raise BackfillError(f"--rate must be positive, got {rate_per_hour}")
    run, created = ctx.store.open_run(
        tenant, first, last, rate_per_hour=rate_per_hour, started_by=started_by
    )
    try:
        studies = ctx.archive.archive_studies(first, last)
    except GatewayError as exc:
        _audit(
            ctx,
            tenant,
            AuditAction.BACKFILL_QUERY,
            Outcome.FAILURE,
            None,
            run=run.id,
            reason=str(exc),
        )
        raise BackfillError(f"the archive could not be searched: {exc}") from exc
    new = ctx.store.add_found(run, studies)
    _audit(
        ctx,
        tenant,
        AuditAction.BACKFILL_QUERY,
        Outcome.SUCCESS,
        None,
        run=run.id,
        first=f"{first:%Y%m%d}",
        last=f"{last:%Y%m%d}",
        found=len(studies),
        new=new,
        peer=ctx.archive.peer,
    )
    report = BackfillReport(run, resumed=not created, found=len(studies), new=new)
    interval = 3600.0 / rate_per_hour if rate_per_hour else 0.0
    last_start: float | None = None
    for item in ctx.store.pending(run, ctx.max_attempts):
        if limit is not None and report.read >= limit:
            break
        report.waited_for_live_s += _wait_for_live(ctx)
        if last_start is not None and interval:
            wait = last_start + interval - ctx.clock()
            if wait > 0:
                ctx.sleep(wait)
        last_start = ctx.clock()
        done = read_item(ctx, item)
        report.read += 1
        if progress is not None:
            progress(done)
    if not ctx.store.pending(run, ctx.max_attempts):
        ctx.store.finish_run(run.id)
        report.finished = True
    report.counts = ctx.store.counts(tenant, run.id)
    return report


def _wait_for_live(ctx: BackfillContext) -> float:
    if ctx.live_busy is None:
        return 0.0
    start = ctx.clock()
    while ctx.live_busy():
        ctx.sleep(ctx.poll_s)
    return ctx.clock() - start


def read_item(ctx: BackfillContext, item: BackfillItem) -> BackfillItem:
    """Authorize, retrieve and read one archived study; returns the item as it ends."""
    tenant, uid = item.tenant, item.study_instance_uid
    orthanc_id: str | None = None
    moved = item.moved
    try:
        if ctx.peer_aet is not None:  # before the move, on what the PACS said of it
            _grant(ctx, item, ctx.peer_aet, ("CT",), f"{item.study_date:%Y%m%d}")
        recorded = ctx.jobs.study(uid)
        if recorded is not None and recorded.tenant != tenant:
            raise _Refused("PreRead recorded this study for another tenant (or none): not read")
        stored = _stored_result(ctx, uid)
        if stored is not None and recorded is not None:
            job_id, result = stored
            facts = recorded.facts
            grant = _grant(
                ctx, item, facts.sender_aet, tuple(facts.modalities.split()), facts.study_date
            )
            _audit(
                ctx,
                tenant,
                AuditAction.REPORT_READ,
                Outcome.SUCCESS,
                uid,
                grant_id=grant.id,
                job=job_id,
            )
            return ctx.store.update(
                tenant,
                uid,
                state="done",
                reason=f"read live (job {job_id})",
                model=_model(result),
                summary=summarize(result),
            )
        orthanc_id = ctx.workspace.find_study(uid)
        if orthanc_id is not None and not moved and ctx.jobs.current_for_study(uid):
            raise _Skip("in PreRead's Orthanc and read by the live pipeline")
        if orthanc_id is None:
            ctx.store.update(tenant, uid, state="held", moved=True)  # before the watcher sees it
            moved = True
            _audit(
                ctx,
                tenant,
                AuditAction.BACKFILL_RETRIEVE,
                Outcome.SUCCESS,
                uid,
                peer=ctx.archive.peer,
            )
            ctx.archive.retrieve(uid)
            orthanc_id = ctx.workspace.find_study(uid)
            if orthanc_id is None:
                raise BackfillError(f"study {uid} is not in PreRead's Orthanc after its retrieval")
        else:
            ctx.store.update(tenant, uid, state="held")
        summary = _read(ctx, item, ctx.workspace.study(orthanc_id))
        kept = not _remove(ctx, uid, moved)
        return ctx.store.update(
            tenant, uid, state="done", moved=kept, model=str(summary["model"]), summary=summary
        )
    except _Skip as exc:
        return ctx.store.update(tenant, uid, state="found", reason=str(exc))
    except _Refused as exc:
        _audit(ctx, tenant, AuditAction.ACCESS_REFUSED, Outcome.REFUSED, uid, reason=str(exc))
        kept = not _remove(ctx, uid, moved)
        return ctx.store.update(tenant, uid, state="refused", reason=str(exc), moved=kept)
    except _NotApplicable as exc:
        kept = not _remove(ctx, uid, moved)
        return ctx.store.update(tenant, uid, state="not_applicable", reason=str(exc), moved=kept)
    except (GatewayError, InferenceError, PrereadError) as exc:
        log.warning("backfill: study %s failed: %s", uid, exc)
        kept = not _remove(ctx, uid, moved)
        return ctx.store.update(
            tenant, uid, state="failed", reason=str(exc), attempt=True, moved=kept
        )


def _read(ctx: BackfillContext, item: BackfillItem, study: StudyInfo) -> dict[str, Json]:
    uid = item.study_instance_uid
    seen = survey(ctx.workspace, study)
    series = [ctx.workspace.series(sid) for sid in study.series_ids]
    own = [s for s in series if not is_preread_series(s.modality, s.series_description)]
    # before any pixel, on what arrived
    grant = _grant(
        ctx,
        item,
        seen.sender,
        tuple(sorted({s.modality for s in own if s.modality})),
        study.study_date,
    )
    card = ctx.predictor.package.card
    selection = select_series([candidate(s) for s in own], card.series_rules)
    if selection.chosen is None:
        raise _NotApplicable(selection.reason)
    chosen = next(s for s in own if s.series_instance_uid == selection.chosen.series_instance_uid)
    n_images = max(chosen.instance_count, chosen.sample.number_of_frames)
    if n_images > ctx.limits.max_slices:  # never fetched
        raise _NotApplicable(
            f"series {chosen.series_instance_uid} has {n_images} images, more than "
            f"{ctx.limits.max_slices} (PREREAD_MAX_SERIES_SLICES)"
        )
    _audit(
        ctx,
        item.tenant,
        AuditAction.PIXELS_FETCH,
        Outcome.SUCCESS,
        uid,
        grant_id=grant.id,
        series=chosen.series_instance_uid,
    )
    datasets = ctx.workspace.series_datasets(uid, chosen.series_instance_uid)
    screening = ctx.lung_rads.applies(seen.sender, datasets[0] if datasets else None)
    analysis = analyze(
        datasets,
        ctx.predictor,
        created=dt.datetime.now(dt.UTC),
        limits=ctx.limits,
        lung_rads=screening,
    )
    _audit(
        ctx,
        item.tenant,
        AuditAction.INFERENCE_RUN,
        Outcome.SUCCESS,
        uid,
        grant_id=grant.id,
        model=f"{card.id} {card.version}",
        findings=len(analysis.result.findings),
        provider=analysis.prediction.session_info.provider,
    )
    return summarize(to_json(analysis.result))


def _grant(
    ctx: BackfillContext,
    item: BackfillItem,
    sender: str,
    modalities: tuple[str, ...],
    study_date: str,
) -> Grant:
    scope = StudyScope(
        tenant=item.tenant,
        study_instance_uid=item.study_instance_uid,
        sender_aet=sender,
        modalities=modalities,
        study_date=study_date,
    )
    grant, why = ctx.grants.covering(scope, Purpose.QUALITY_REVIEW)
    if grant is None:
        raise _Refused(f"no valid quality-review grant covers this study: {why}")
    return grant


def _stored_result(ctx: BackfillContext, uid: str) -> tuple[str, Mapping[str, Any]] | None:
    """A done job of the backfill's model version with its result, if PreRead read the study."""
    card = ctx.predictor.package.card
    for job in ctx.jobs.current_for_study(uid, card.id):
        if job.model_version == card.version and job.state is JobState.DONE and job.result:
            return job.id, job.result
    return None


def _model(result: Mapping[str, Any]) -> str | None:
    model = result.get("model")
    return f"{model.get('id')} {model.get('version')}" if isinstance(model, Mapping) else None


def _remove(ctx: BackfillContext, uid: str, moved: bool) -> bool:
    """Delete what the backfill moved of the study from PreRead's Orthanc, all of it or what a
    failed C-MOVE left (nothing when it did not move it); False when some is still there (the
    item stays ``moved``: the watcher keeps leaving it alone, the next attempt deletes it)."""
    if not moved:
        return True
    try:
        orthanc_id = ctx.workspace.find_study(uid)
        if orthanc_id is not None:
            ctx.workspace.delete_study(orthanc_id)
    except GatewayError as exc:
        log.warning("backfill: a moved study could not be deleted from Orthanc: %s", exc)
        return False
    return True


def record_access(
    audit: AuditLog,
    actor: str,
    tenant: str,
    action: AuditAction,
    outcome: Outcome,
    study_uid: str | None,
    **detail: Json,
) -> None:
    """One audit record of the backfill (purpose ``quality-review``; None details left out)."""
    audit.record(
        AuditEvent(
            actor=actor,
            action=action,
            outcome=outcome,
            tenant=tenant,
            purpose=Purpose.QUALITY_REVIEW.value,
            study_instance_uid=study_uid,
            detail={k: v for k, v in detail.items() if v is not None},
        )
    )


def _audit(
    ctx: BackfillContext,
    tenant: str,
    action: AuditAction,
    outcome: Outcome,
    study_uid: str | None,
    **detail: Json,
) -> None:
    record_access(ctx.audit, ctx.actor, tenant, action, outcome, study_uid, **detail)
