"""What a review's SR and SEG are built from, read from the study, and what both share.

The review's objects go into new series of the study the AI read, next to the AI's SR and SEG.
Their Series Description begins like every PreRead series ("AI pre-read": the watcher does not
count them as new images, the job runner never reads them, training never takes them for
labels) and says that a radiologist verified the AI result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pydicom.dataset import Dataset

from dicom_gateway.selection import PREREAD_SERIES_PREFIX
from preread.domain import FindingConcept
from preread.reports.errors import ReportError
from preread.reports.json import FindingOut, PreReadOut
from preread.reports.series import InstanceRef, SourceFrame, lo, source_frames
from preread.reviews.domain import Review
from preread.reviews.errors import ReviewError

__all__ = [
    "REVIEW_SEG_SERIES_NUMBER",
    "REVIEW_SR_SERIES_NUMBER",
    "ReviewSources",
    "added_tracking_id",
    "dicom_time",
    "ordered_frames",
    "person_name",
    "review_series_description",
]

REVIEW_SEG_SERIES_NUMBER = 9011
REVIEW_SR_SERIES_NUMBER = 9012
"""Series numbers of the review's SEG and SR (the AI's are 9001-9004)."""


@dataclass(frozen=True)
class ReviewSources:
    """The AI result a review is of, as stored: its JSON (``job.result``), the images of the
    series it read (headers are enough; single-frame images or one multi-frame image whose
    frames are the slices), its SEG (None when it found nothing), its SR, and the SR of the
    review this one supersedes."""

    preread: PreReadOut
    images: Sequence[Dataset]
    ai_seg: Dataset | None
    ai_sr: InstanceRef
    previous_sr: InstanceRef | None = None

    @property
    def concept(self) -> FindingConcept:
        return self.preread.concept.finding_concept()

    def finding(self, tracking_uid: str) -> FindingOut:
        for f in self.preread.findings:
            if f.tracking_uid == tracking_uid:
                return f
        raise ReviewError(f"the AI result has no finding with tracking UID {tracking_uid}")

    def ai_segment_numbers(self) -> dict[str, int]:
        """Tracking UID → Segment Number of the AI SEG's segments."""
        if self.ai_seg is None:
            return {}
        return {
            str(item.TrackingUID): int(item.SegmentNumber)
            for item in self.ai_seg.get("SegmentSequence", [])
            if "TrackingUID" in item
        }


def ordered_frames(review: Review, sources: ReviewSources) -> list[SourceFrame]:
    """The slices of the series read, in volume order: slice ``k`` of the review's masks is
    ``frames[k]``, by the gateway's own rule (:func:`preread.reports.series.source_frames`:
    sorted along the slice normal, as :func:`dicom_gateway.volume.assemble_volume`). A slice
    is a single-frame image (CT Image) or one frame of a multi-frame image (Enhanced CT,
    Legacy Converted Enhanced CT, PS3.3 A.38, A.70), placed by its functional groups.

    Raises:
        ReviewError: no images, images of another study, series or frame of reference than
            the AI result's, or headers that do not place every slice on one regular grid.
    """
    preread = sources.preread
    if not sources.images:
        raise ReviewError("the series the AI read has no images")
    for ds in sources.images:
        for keyword, expected in (
            ("StudyInstanceUID", review.study_instance_uid),
            ("SeriesInstanceUID", preread.series_instance_uid),
            ("FrameOfReferenceUID", preread.frame_of_reference_uid),
        ):
            if str(ds.get(keyword, "")) != expected:
                raise ReviewError(
                    f"image {ds.get('SOPInstanceUID', '?')} has {keyword} "
                    f"{ds.get(keyword)!s}, the AI result was read from {expected}"
                )
    try:
        return source_frames(sources.images)
    except ReportError as exc:
        raise ReviewError(str(exc)) from exc


def review_series_description(review: Review) -> str:
    """ "AI pre-read review (verified) v2 - lung-nodule 2.1.0" (ASCII, at most 64)."""
    t = review.target
    return lo(
        f"{PREREAD_SERIES_PREFIX} review (verified) v{review.version} - "
        f"{t.model_id} {t.model_version}"
    )


def added_tracking_id(number: int) -> str:
    """The Tracking Identifier viewers show for added nodule ``number``."""
    return f"Reader nodule {number}"


def dicom_time(moment: datetime) -> datetime:
    """``moment`` in UTC without a zone (DICOM DA/TM have none; the SR states UTC in its
    Timezone Offset From UTC)."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def person_name(name: str) -> str:
    """A display name as a DICOM PN: the whole name in the family-name component, with the
    trailing ``^`` that says so (PS3.5 6.2.1: a name whose parts are not known), without the
    delimiters ``^ = \\``, at most 64 characters."""
    return "".join(c for c in name if c not in "^=\\").strip()[:63] + "^"
