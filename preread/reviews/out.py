"""A signed review as the reports show it (:class:`preread.reports.review.ReviewOut`)."""

from __future__ import annotations

from preread.reports.review import AddedOut, AssessmentOut, ReviewerOut, ReviewOut
from preread.reviews.domain import Assessment, Modified, Rejected, Review
from preread.reviews.sources import added_tracking_id

__all__ = ["review_out"]


def review_out(review: Review, *, current: bool) -> ReviewOut:
    """``review`` for the JSON/FHIR/HL7 reports and the review listing; ``current``: it is the
    newest review of its study and model."""
    t = review.target
    return ReviewOut(
        id=review.id,
        version=review.version,
        supersedes=review.supersedes,
        current=current,
        signed_at=review.signed_at,
        reviewer=ReviewerOut(id=review.reviewer.user_id, name=review.reviewer.name),
        job_id=t.job_id,
        model_id=t.model_id,
        model_version=t.model_version,
        ai_sr_sop_instance_uid=t.ai_sr_sop_instance_uid,
        review_sr_sop_instance_uid=review.sr_sop_instance_uid,
        review_seg_sop_instance_uid=review.seg_sop_instance_uid,
        stored=review.stored_at is not None,
        assessments=[
            _assessment(a) for a in sorted(review.assessments, key=lambda a: a.finding_number)
        ],
        added=[
            AddedOut(
                number=n,
                tracking_id=added_tracking_id(n),
                tracking_uid=str(a.tracking_uid),
                center_lps_mm=a.centre_lps_mm,
                axial_long_axis_mm=round(a.long_axis_mm, 2),
                short_axis_mm=round(a.short_axis_mm, 2),
                mean_diameter_mm=a.mean_diameter_mm,
                long_axis_mm=round(a.long_axis_3d_mm, 2),
                volume_mm3=round(a.volume_mm3, 1),
                mean_hu=round(a.mean_hu, 1),
                nodule_type=a.nodule_type,
                solid_component_long_axis_mm=a.solid_component_long_axis_mm,
            )
            for n, a in enumerate(review.added, start=1)
        ],
    )


def _assessment(a: Assessment) -> AssessmentOut:
    v = a.verdict
    if isinstance(v, Rejected):
        return AssessmentOut(
            label=a.finding_number,
            tracking_uid=a.tracking_uid,
            assessment="rejected",
            reason=v.reason.value,
            reason_text=v.text,
        )
    if isinstance(v, Modified):
        return AssessmentOut(
            label=a.finding_number,
            tracking_uid=a.tracking_uid,
            assessment="modified",
            nodule_type=v.nodule_type,
            axial_long_axis_mm=v.long_axis_mm,
            short_axis_mm=v.short_axis_mm,
        )
    return AssessmentOut(label=a.finding_number, tracking_uid=a.tracking_uid, assessment="accepted")
