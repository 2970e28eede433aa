"""``preread datasets build --from-reviews``: radiologists' signed verdicts as training data.

For each study whose current signed review (of ``model_id``) falls in the window:

* the named ``model-training`` grant must cover the study now (else it is left out, with why,
  and the refusal audited); the reading the review judged must still be the study's current
  one (a superseded reading's objects may be gone from the study);
* **positives** — AI findings the reader accepted or corrected (the AI SEG's voxels) and the
  nodules the reader added (their voxels as the review measured them from the pixels, flagged
  ``reader_placed``) — become one DICOM SEG on the CT series, one segment labelled ``Nodule``
  each (what ``data.label_segments: [Nodule]`` trains on);
* **hard negatives** — AI findings the reader rejected — go to ``negatives.json`` with the
  reason (the closed set; the free text is not copied: it may name people);
* a study with positives is a case under ``cases/`` (CT + SEG, what ``data.source: datasets``
  trains the detector on), one with hard negatives only under ``negatives-only/``;
* the CT series and the SEG are de-identified together (DICOM PS3.15 Annex E, the
  :class:`~preread.training_access.TrainingAccess` profile and key: references between them
  kept, the re-identification map in the vault), and each inclusion is audited
  (``dataset.include`` with the grant and review ids; ``deid``).

Every build starts from nothing, so a revoked grant's studies are not in the next version.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.valuerep import DA, DT, TM

from preread.audit import AuditAction, AuditEvent, AuditLog, Outcome
from preread.datasets.manifest import (
    CaseEntry,
    DatasetError,
    DatasetManifest,
    DatasetRegistry,
    LeftOut,
    Negative,
    Positive,
    content_sha256,
    file_hashes,
)
from preread.grants import Grant, GrantStore, Purpose, StudyScope
from preread.grants.matching import coverage_problem
from preread.grants.records import GrantNotFoundError
from preread.reports import codes
from preread.reports.errors import ReportError
from preread.reports.seg import source_planes
from preread.reports.series import MANUFACTURER, SourceFrame, lo, source_instances
from preread.reviews import Accepted, Modified, Rejected, Review, ReviewStore
from preread.reviews.seg import ai_masks
from preread.reviews.service import ReviewContext, review_sources
from preread.reviews.sources import ReviewSources, ordered_frames
from preread.reviews.uids import review_uid
from preread.store import JobState, JobStore, StudyRecord
from preread.training_access import DEID_METHOD, TrainingAccess

__all__ = ["BuildResult", "DatasetContext", "build_from_reviews"]

ACTOR = "system:datasets"
CASES = "cases"
"""The studies with positive nodules (CT + SEG): what ``data.source: datasets`` trains on."""
NEGATIVES_ONLY = "negatives-only"
"""Studies whose every AI finding was rejected and none added: CT + hard negatives, no SEG."""
SEGMENT_LABEL = "Nodule"


@dataclass(frozen=True)
class DatasetContext:
    store: JobStore
    grants: GrantStore
    audit: AuditLog
    source: Any  # a StudySource (the Orthanc holding the studies)
    access: TrainingAccess
    registry: DatasetRegistry
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


@dataclass(frozen=True)
class BuildResult:
    manifest: DatasetManifest
    new: bool
    """False: the content equals the newest version's, which is returned and not stored again."""


def build_from_reviews(
    ctx: DatasetContext,
    *,
    tenant: str,
    grant_id: str,
    model_id: str,
    since: datetime | None = None,
    name: str | None = None,
    created_by: str,
) -> BuildResult:
    """Build the next version of ``name`` (default ``reviews-<tenant>``) from the tenant's
    signed reviews (see the module docstring). Raises :class:`DatasetError` naming the
    problem when the grant cannot be used at all."""
    now = ctx.clock()
    grant = _usable_grant(ctx.grants, grant_id, tenant, now)
    name = name or f"reviews-{tenant}"
    staged = ctx.registry.staging(name)
    cases: list[CaseEntry] = []
    left_out: list[LeftOut] = []
    reviews = ReviewStore(ctx.store)
    review_ctx = ReviewContext(ctx.store, ctx.grants, ctx.audit, ctx.source)
    try:
        for review in reviews.signed(tenant, since=since, model_id=model_id, current_only=True):
            study = ctx.store.study(review.study_instance_uid)
            why = _why_not(ctx, review, study, grant, now)
            if why is not None:
                left_out.append(LeftOut(review_id=review.id, reason=why))
                continue
            assert study is not None
            _audit(ctx.audit, AuditAction.DATASET_INCLUDE, Outcome.SUCCESS, tenant, review,
                   {"grant_id": grant.id, "review_id": review.id, "dataset": name})  # fmt: skip
            job = ctx.store.get(review.target.job_id)
            sources = review_sources(review_ctx, review, study, job)
            cases.append(_case(ctx, staged, review, sources, grant))
        hashes = file_hashes(staged)
        for case in cases:
            case.files = {p: h for p, h in hashes.items() if f"/{case.case_id}/" in f"/{p}"}
        manifest = DatasetManifest(
            name=name,
            version=0,
            content_sha256=content_sha256(hashes),
            created_at=now,
            created_by=created_by,
            tenant=tenant,
            grant_ids=[grant.id],
            since=since,
            model_id=model_id,
            deidentification=DEID_METHOD,
            cases=cases,
            left_out=left_out,
        )
        published, new = ctx.registry.publish(staged, manifest)
    except BaseException:
        import shutil

        shutil.rmtree(staged, ignore_errors=True)
        raise
    return BuildResult(published, new)


def _usable_grant(grants: GrantStore, grant_id: str, tenant: str, now: datetime) -> Grant:
    try:
        grant = grants.get(grant_id)
    except GrantNotFoundError:
        raise DatasetError(f"no grant {grant_id!r}") from None
    if grant.tenant != tenant:
        raise DatasetError(f"grant {grant_id} is not {tenant}'s")
    if grant.purpose is not Purpose.MODEL_TRAINING:
        raise DatasetError(
            f"grant {grant_id} is for {grant.purpose.value}; a dataset needs a model-training grant"
        )
    if not grant.valid_at(now):
        raise DatasetError(f"grant {grant_id} is not valid now (revoked or outside its dates)")
    return grant


def _why_not(
    ctx: DatasetContext, review: Review, study: StudyRecord | None, grant: Grant, now: datetime
) -> str | None:
    if study is None or study.tenant is None:
        return "the study is no longer recorded"
    problem = coverage_problem(grant, StudyScope.of(study.facts), Purpose.MODEL_TRAINING, now)
    if problem is not None:
        _audit(ctx.audit, AuditAction.ACCESS_REFUSED, Outcome.REFUSED, study.tenant, review,
               {"reason": problem, "review_id": review.id})  # fmt: skip
        return problem
    job = ctx.store.get(review.target.job_id)
    if not job.is_current or job.state is not JobState.DONE or job.shadow:
        return "the reading the review judged is no longer the study's current one"
    return None


def _case(
    ctx: DatasetContext, staged: Path, review: Review, sources: ReviewSources, grant: Grant
) -> CaseEntry:
    frames = ordered_frames(review, sources)
    images = source_instances(frames)
    findings = {f.tracking_uid: f for f in sources.preread.findings}
    model = f"{sources.preread.model.id}@{sources.preread.model.version}"
    kept = [a for a in review.assessments if isinstance(a.verdict, Accepted | Modified)]
    masks = ai_masks(sources, frames, [a.tracking_uid for a in kept])
    labels = np.zeros((len(frames), int(images[0].Rows), int(images[0].Columns)), np.uint8)
    positives: list[Positive] = []
    for a in kept:
        f = findings[a.tracking_uid]
        verdict = a.verdict
        corrected = isinstance(verdict, Modified)
        number = len(positives) + 1
        labels[masks[a.tracking_uid]] = number
        positives.append(
            Positive(
                segment_number=number,
                origin="ai-corrected" if corrected else "ai-accepted",
                reader_placed=False,
                nodule_type=(verdict.nodule_type if isinstance(verdict, Modified) else None)
                or f.nodule_type,
                long_axis_mm=(verdict.long_axis_mm if isinstance(verdict, Modified) else None)
                or f.long_axis_mm,
                centre_lps_mm=f.center_lps_mm,
            )
        )
    for added in review.added:
        number = len(positives) + 1
        added.mask.paint(labels, number)
        positives.append(
            Positive(
                segment_number=number,
                origin="reader-added",
                reader_placed=added.reader_placed,
                nodule_type=added.nodule_type,
                long_axis_mm=added.long_axis_mm,
                centre_lps_mm=added.centre_lps_mm,
            )
        )
    negatives = [
        Negative(
            centre_lps_mm=findings[a.tracking_uid].center_lps_mm,
            long_axis_mm=findings[a.tracking_uid].long_axis_mm,
            probability=findings[a.tracking_uid].probability,
            reason=a.verdict.reason.value,
            model=model,
        )
        for a in review.assessments
        if isinstance(a.verdict, Rejected) and a.tracking_uid in findings
    ]
    instances: list[Dataset] = list(images)
    if positives:
        instances.append(_seg(review, sources, frames, labels, positives))
    clean = ctx.access.deidentify_study(review.study_instance_uid, instances)
    case_id = str(clean[0].StudyInstanceUID)
    folder = staged / (CASES if positives else NEGATIVES_ONLY) / case_id
    for ds in clean:
        if str(ds.get("Modality", "")) == "SEG":
            _write(ds, folder / f"seg-{ds.SOPInstanceUID}.dcm")
        else:
            _write(ds, folder / "ct" / f"{ds.SOPInstanceUID}.dcm")
    (folder / "negatives.json").write_text(
        json.dumps([n.model_dump(mode="json") for n in negatives], indent=2) + "\n"
    )
    return CaseEntry(
        case_id=case_id,
        review_id=review.id,
        review_version=review.version,
        reviewer=review.reviewer.user_id,
        signed_at=review.signed_at,
        grant_id=grant.id,
        model=model,
        positives=positives,
        negatives=negatives,
        files={},
    )


def _seg(
    review: Review,
    sources: ReviewSources,
    frames: list[SourceFrame],
    labels: np.ndarray[Any, np.dtype[np.uint8]],
    positives: list[Positive],
) -> Dataset:
    """The positives' SEG on the CT (``labels`` in volume order, on ``frames``): derived from
    the single-frame images or the one multi-frame image (:func:`~preread.reports.seg.
    source_planes`)."""
    try:
        images, planes = source_planes(frames, labels)
    except ReportError as exc:
        raise DatasetError(f"review {review.id}: no labels' SEG: {exc}") from exc
    concept = sources.concept
    algorithm = hd.AlgorithmIdentificationSequence(
        name=lo(sources.preread.model.name),
        family=codes.ALGORITHM_FAMILY,
        version=lo(sources.preread.model.version),
        source=MANUFACTURER,
    )
    descriptions = []
    for p in positives:
        description = hd.seg.SegmentDescription(
            segment_number=p.segment_number,
            segment_label=SEGMENT_LABEL,
            segmented_property_category=codes.code(concept.category),
            segmented_property_type=codes.code(concept.finding),
            algorithm_type=(
                hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
                if p.origin == "ai-accepted"
                else hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC
            ),
            algorithm_identification=algorithm,
            anatomic_regions=[codes.code(concept.site)],
        )
        description.SegmentDescription = lo(f"{p.origin}, {p.long_axis_mm:.1f} mm")
        descriptions.append(description)
    signed = review.signed_at.astimezone(UTC).replace(tzinfo=None)
    try:
        seg = hd.seg.Segmentation(
            source_images=images,
            pixel_array=planes,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=review_uid(review.id, "dataset-seg-series"),
            series_number=9100,
            sop_instance_uid=review_uid(review.id, "dataset-seg"),
            instance_number=1,
            manufacturer=MANUFACTURER,
            manufacturer_model_name="PreRead dataset",
            software_versions="1.0",
            device_serial_number=lo(review.target.model_id),
            content_description="Nodules confirmed or added by a radiologist's review",
            content_creator_name="PreRead^",
            content_label="TRAINING_LABELS",
            omit_empty_frames=True,
            series_description="Training labels from a reader review",
            content_date=signed.date(),
            content_time=signed.time(),
            series_date=signed.date(),
            series_time=signed.time(),
        )
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"review {review.id}: cannot encode the labels' SEG: {exc}") from exc
    dimension_uid = review_uid(review.id, "dataset-seg-dimensions")
    for item in (*seg.DimensionOrganizationSequence, *seg.DimensionIndexSequence):
        item.DimensionOrganizationUID = dimension_uid
    # highdicom stamps the time of encoding; the signature's time keeps a rebuild identical
    seg.InstanceCreationDate = DA(signed.date())
    seg.InstanceCreationTime = TM(signed.time())
    for item in seg.get("ContributingEquipmentSequence", []):
        if item.get("ManufacturerModelName") == "highdicom":
            item.ContributionDateTime = DT(signed)
    return seg


def _write(ds: Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _audit(
    audit: AuditLog,
    action: AuditAction,
    outcome: Outcome,
    tenant: str,
    review: Review,
    detail: dict[str, Any],
) -> None:
    audit.record(
        AuditEvent(
            actor=ACTOR,
            action=action,
            outcome=outcome,
            tenant=tenant,
            purpose=Purpose.MODEL_TRAINING.value,
            study_instance_uid=review.study_instance_uid,
            detail=detail,
        )
    )
