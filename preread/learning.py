"""``preread demo --learning``: the learning loop end to end on phantom studies.

1. phantom studies are read by the active version (:func:`preread.demo.send_studies`);
2. a reader signs a review of each through :func:`preread.reviews.service.sign_review`, the
   code the review page's POST runs; the reader's verdicts come from the phantom's truth (the
   demo's stand-in for a radiologist: a finding on a nodule is accepted, one elsewhere or on a
   calcified nodule rejected, a nodule the AI missed added where the reader would click,
   measured from the pixels);
3. a dataset version is built from the signed reviews under a ``model-training`` grant
   (:func:`preread.datasets.build_from_reviews`, de-identified, audited);
4. a candidate version is built: the active version's classifier fine-tuned on the dataset
   (:mod:`training.finetune`), evaluated beside the active version on the same held-out and
   robustness phantoms, and published;
5. the candidate is put in shadow; new studies are read by both versions (the shadow results
   go nowhere) and the active readings are reviewed;
6. the promotion gate's figures are computed and the candidate promoted if it passes;
7. a study read by the promoted version, then the promotion rolled back with ``--reread``:
   that study is read again by the version restored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from preread.datasets import (
    DatasetContext,
    DatasetManifest,
    DatasetRegistry,
    authorized_datasets,
    build_from_reviews,
)
from preread.demo import (
    FINAL,
    DemoError,
    SentStudy,
    TruthNodule,
    send_studies,
    truth_hits,
    wait_for_jobs,
)
from preread.grants import Grant, GrantSpec, Purpose
from preread.lifecycle import GateRefusedError, ModelLife, WithdrawnRead
from preread.lifecycle.gate import GateResult
from preread.reviews.domain import (
    Accepted,
    AddedNodule,
    Assessment,
    Rejected,
    RejectReason,
    Review,
    ReviewDraft,
    Reviewer,
)
from preread.reviews.errors import NoNoduleHereError
from preread.reviews.measure import measure_added
from preread.reviews.service import ReviewContext, review_subject, series_volume, sign_review
from preread.reviews.store import ReviewStore
from preread.service import Service
from preread.store import JobRecord, JobState

__all__ = [
    "LEARNING_SEED",
    "LoopReport",
    "ReviewCount",
    "demo_build",
    "run_learning",
    "sign_from_truth",
]

Say = Callable[[str], None]
ACTOR = "preread demo"
#: the demo's first phantom: seven phantoms of slices <= 2.5 mm (all read), among whose first
#: three's findings the reader rejects some (hard negatives for the candidate)
LEARNING_SEED = 990_303


def demo_build(matrix: int, max_slices: int) -> dict[str, Any]:
    """The demo's candidate build (:func:`training.finetune.finetune_config`'s keywords): a
    gentle fine-tuning (40 steps: three reviewed cases) with 2 scans each of rehearsal mining
    and nodule patches, 3 calibration scans, and 2 held-out and 1 robustness scans read side by
    side — minutes on a CPU, and figures that show the machinery, not a model's merit (a
    release is judged on 100 held-out scans: ``preread models finetune``)."""
    phantoms = {"matrix": matrix, "max_slices": max_slices}
    return {
        "iterations": 40,
        "rehearsal": {"count": 2, **phantoms},
        "calibration": {"count": 3, **phantoms},
        "held_out": {"seed": 900_000, "count": 2, **phantoms},
        "robustness": {"seed": 950_000, "count": 1, **phantoms},
    }


#: the smallest missed nodule the demo's reader adds (smaller ones are not reported either)
ADD_MIN_MM = 4.0


@dataclass(frozen=True)
class ReviewCount:
    accepted: int
    rejected: int
    added: int


@dataclass(frozen=True)
class LoopReport:
    active: str
    candidate: str
    first_reviews: ReviewCount
    dataset: DatasetManifest
    candidate_card_extra: dict[str, Any]
    held_out: dict[str, tuple[float, float]]
    """Held-out figure -> (active, candidate), read side by side in the candidate's build."""
    shadow_reviews: ReviewCount
    gate: GateResult
    promoted: bool
    read_after_promotion: str | None
    """id@version of the real reading of the study sent after the promotion."""
    withdrawn: list[WithdrawnRead]
    reread_by: str | None
    """id@version of the re-reading of that study after the rollback."""


def sign_from_truth(
    ctx: ReviewContext, reviewer: Reviewer, study_uid: str, truth: list[TruthNodule], model_id: str
) -> tuple[Review, ReviewCount]:
    """Sign the reader's review of the study's current reading of ``model_id``, with verdicts
    from the phantom's truth (see the module docstring), through the review page's code."""
    subject = review_subject(ctx, reviewer.tenant, study_uid, model_id)
    hit: set[int] = set()
    assessments = []
    benign = [replace(t, calcified=False) for t in truth if t.calcified]  # truth_hits skips them
    for ai, finding in zip(subject.target.findings, subject.preread.findings, strict=True):
        near = truth_hits(finding.center_lps_mm, truth)
        hit.update(near)
        calcified = bool(truth_hits(finding.center_lps_mm, benign))
        verdict: Accepted | Rejected = (
            Accepted()
            if near
            else Rejected(RejectReason.OTHER, "calcified: benign")
            if calcified
            else Rejected(RejectReason.OTHER, "no nodule here")
        )
        assessments.append(Assessment(ai.tracking_uid, ai.number, verdict))
    missed = [
        n
        for i, n in enumerate(truth)
        if i not in hit and not n.calcified and n.long_axis_mm >= ADD_MIN_MM
    ]
    added: list[AddedNodule] = []
    if missed:
        volume = series_volume(ctx, reviewer, subject)  # what the page measures clicks on
        for n in missed:
            try:
                added.append(measure_added(volume, n.center_lps_mm))
            except NoNoduleHereError:
                continue  # nothing nodule-like at the click: a reader could not add it either
    review = sign_review(
        ctx,
        reviewer,
        study_uid,
        subject.job.id,
        ReviewDraft(tuple(assessments), tuple(added)),
        replaces=subject.current.id if subject.current else None,
    )
    accepted = sum(isinstance(a.verdict, Accepted) for a in assessments)
    return review, ReviewCount(accepted, len(assessments) - accepted, len(added))


def training_grant(service: Service, tenant: str) -> Grant:
    """The demo's model-training grant of the tenant's reviewed studies (a year)."""
    now = datetime.now(UTC)
    for grant in service.grants.list(tenant=tenant, purpose=Purpose.MODEL_TRAINING, active_at=now):
        if grant.spec.study_uids is None and not grant.spec.sender_aets:
            return grant
    return service.grants.create(
        GrantSpec(
            tenant=tenant,
            purpose=Purpose.MODEL_TRAINING,
            valid_from=now - timedelta(minutes=1),
            valid_to=now + timedelta(days=365),
            legal_basis="PreRead demo: synthetic phantom studies, no patient data",
            issued_by=ACTOR,
        )
    )


def _sum(counts: Sequence[ReviewCount]) -> ReviewCount:
    return ReviewCount(
        sum(c.accepted for c in counts),
        sum(c.rejected for c in counts),
        sum(c.added for c in counts),
    )


def wait_job(service: Service, job_id: str, timeout_s: float) -> JobRecord:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = service.store.get(job_id)
        if job is not None and job.state in FINAL:
            return job
        time.sleep(0.5)
    raise DemoError(f"the re-reading {job_id} did not finish in {timeout_s:.0f} s")


def run_learning(
    service: Service,
    *,
    model_id: str = "lung-nodule",
    count: int,
    shadow_count: int,
    seed: int,
    matrix: int,
    max_slices: int | None,
    build: dict[str, Any],
    timeout_s: float = 900.0,
    on_status: Say | None = None,
) -> LoopReport:
    """The loop (see the module docstring) on the service's private Orthanc. ``build``: the
    keyword arguments of :func:`training.finetune.finetune_config` beyond the package, the
    datasets, the version and the folder (iterations, held-out and robustness phantoms)."""
    from training.compare import compare_and_publish
    from training.finetune import finetune_config, next_version, write_config
    from training.staged import build as staged_build

    say = on_status or (lambda _m: None)
    settings = service.settings
    tenant = settings.tenant_of("HOSPITAL") or "default"
    reviewer = Reviewer("demo-reader", "Demo Reader (phantom truth)", tenant)
    ctx = ReviewContext(service.store, service.grants, service.audit, service.source)
    life = ModelLife(service.store, service.audit, service.registry, service.packages)
    active = life.active(model_id)
    active_ref = f"{model_id}@{active.version}"

    def read_and_review(n: int, first_seed: int) -> tuple[list[SentStudy], ReviewCount]:
        """The studies read (those the series rules turn away, e.g. thick slices, left out)
        and the reviews of their readings."""
        sent = send_studies(service, count=n, seed=first_seed, matrix=matrix,
                            max_slices=max_slices, timeout_s=timeout_s, on_status=say)  # fmt: skip
        read = []
        for s in sent:
            if s.job.state is JobState.NOT_APPLICABLE:
                continue
            if s.job.state is not JobState.DONE:
                raise DemoError(
                    f"study {s.study_instance_uid}: {s.job.state.value} ({s.job.reason})"
                )
            read.append(s)
        counts = [sign_from_truth(ctx, reviewer, s.study_instance_uid, s.truth, model_id)[1]
                  for s in read]  # fmt: skip
        return read, _sum(counts)

    say(f"reading {count} studies with {active_ref} and signing their reviews")
    _, first = read_and_review(count, seed)

    say("building a dataset from the signed reviews under a model-training grant")
    from preread.training_access import TrainingAccess

    grant = training_grant(service, tenant)
    registry = DatasetRegistry(settings.datasets_path)
    access = TrainingAccess.open(settings, service.store)
    try:
        dataset = build_from_reviews(
            DatasetContext(service.store, service.grants, service.audit, service.source, access,
                           registry),
            tenant=tenant, grant_id=grant.id, model_id=model_id, created_by=ACTOR,
        ).manifest  # fmt: skip
    finally:
        access.close()

    life.pin_active(model_id, by=ACTOR, reason="before a candidate is published")
    package = service.registry.find(model_id, active.version)
    version = next_version(package, service.registry.versions(model_id))
    say(f"fine-tuning {active_ref}'s classifier on {dataset.ref} into {model_id}@{version}")
    folder = settings.data_dir / "learning" / f"{model_id}-{version}"
    config = write_config(
        finetune_config(
            package, [dataset.ref], version=version, output_dir=folder / "run", **build
        ),
        folder / "build.yaml",
    )
    datasets = authorized_datasets([dataset.ref], registry, service.grants)
    built = staged_build(config, None, datasets)
    published = compare_and_publish(config, built, settings.models_dir)
    from inference.package import ModelPackage

    candidate = ModelPackage.load(published)
    evaluation = candidate.read_evaluation()
    base = evaluation["baseline"]["held_out"]  # type: ignore[index]
    held_out = {
        k: (float(base[k]), float(evaluation[k]))  # type: ignore[arg-type]
        for k in ("cpm", "sensitivity_ge6mm", "fp_per_scan")
    }

    say(f"{model_id}@{version} in shadow: reading {shadow_count} new studies with both versions")
    life.shadow(model_id, version, by=ACTOR, reason=f"fine-tuned on {dataset.ref}")
    time.sleep(2.5)  # every watcher and worker reads the stages again within 2 s
    sent, shadow_reviews = read_and_review(shadow_count, seed + count)
    wait_for_jobs(service, [s.study_instance_uid for s in sent], timeout_s, shadow=True)

    say("the promotion gate")
    reviews = ReviewStore(service.store)
    try:
        _, result = life.promote(model_id, version, reviews, by=ACTOR,
                                 reason="the gate on the reviewed shadow studies",
                                 min_studies=len(sent))  # fmt: skip
    except GateRefusedError as refused:
        return LoopReport(active_ref, f"{model_id}@{version}", first, dataset,
                          dict(candidate.card.training.extra), held_out, shadow_reviews,
                          refused.result, False, None, [], None)  # fmt: skip
    promoted_at = datetime.now(UTC)
    time.sleep(2.5)

    say(f"a study read by {model_id}@{version}, then the promotion rolled back with --reread")
    (after,) = send_studies(service, count=1, seed=seed + count + shadow_count, matrix=matrix,
                            max_slices=max_slices, timeout_s=timeout_s, on_status=say)  # fmt: skip
    _, withdrawn = life.rollback(model_id, version, by=ACTOR, reason="demo of a rollback",
                                 since=promoted_at, reread=True)  # fmt: skip
    for w in withdrawn:  # queued by the rollback; this process's workers read them now
        if w.reread_by:
            service.dispatch(w.reread_by)
    reread_by = None
    for w in withdrawn:
        if w.study_instance_uid == after.study_instance_uid and w.reread_by:
            job = wait_job(service, w.reread_by, timeout_s)
            reread_by = f"{job.model_id}@{job.model_version}"
    return LoopReport(
        active_ref,
        f"{model_id}@{version}",
        first,
        dataset,
        dict(candidate.card.training.extra),
        held_out,
        shadow_reviews,
        result,
        True,
        f"{after.job.model_id}@{after.job.model_version}",
        withdrawn,
        reread_by,
    )


def report_lines(report: LoopReport) -> list[str]:
    """What the demo prints of the loop."""
    f, s = report.first_reviews, report.shadow_reviews
    extra = report.candidate_card_extra
    lines = [
        f"reviews of {report.active}'s readings: {f.accepted} accepted, {f.rejected} rejected, "
        f"{f.added} added",
        f"dataset {report.dataset.ref}: {len(report.dataset.cases)} studies, "
        f"sha256 {report.dataset.content_sha256[:16]}, grants "
        + ", ".join(report.dataset.grant_ids),
        f"candidate {report.candidate}: card lists datasets {extra.get('datasets')} under grants "
        f"{extra.get('dataset_grants')}, fine-tuned from {extra.get('classifier_fine_tuned_from')}",
        "held-out, side by side: "
        + ", ".join(f"{k} {a:.3f} -> {c:.3f}" for k, (a, c) in report.held_out.items()),
        f"reviews of the shadow period: {s.accepted} accepted, {s.rejected} rejected, "
        f"{s.added} added",
        report.gate.table(),
        "promoted" if report.promoted else "not promoted: " + "; ".join(report.gate.failures),
    ]
    if report.promoted:
        lines += [
            f"the study sent after the promotion was read by {report.read_after_promotion}",
            f"rolled back: {len(report.withdrawn)} studies read by {report.candidate} since the "
            f"promotion, re-read by {report.reread_by}",
        ]
    return lines


def demo_models_dir(settings: Any, target: Path) -> Path:
    """A models folder for the demo's candidates: links to the installed packages (the
    source checkout's ``models/`` stays as shipped)."""
    for model_dir in sorted(p for p in settings.models_dir.iterdir() if p.is_dir()):
        for version in sorted(p for p in model_dir.iterdir() if (p / "model.yaml").is_file()):
            link = target / model_dir.name / version.name
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(version.resolve(), target_is_directory=True)
    return target
