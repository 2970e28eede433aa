"""The nodules a review added or corrected, as a DICOM Segmentation (PS3.3 A.51, C.8.20).

One BINARY segment per modified AI finding (first, by finding number: the AI's voxels, read
from the AI SEG, with the reader's type and sizes) and per added nodule (then, by number: the
voxels :func:`~preread.reviews.measure.measure_added` found around the reader's click), each
with its Tracking UID — the AI finding's own for a modified one, the review's for an added one
— so the review SR's groups, the AI SR and the reports all name the same nodule. Segment
Algorithm Type SEMIAUTOMATIC (a person decided, an algorithm drew): for an added nodule the
algorithm is PreRead's click refinement, for a modified one the AI model. The Content Creator
is the reviewer. No SEG when nothing was modified or added.

Its frames reference the source slices they lie on (Derivation Image, Source Image Sequence),
as the AI SEG's do (:func:`preread.reports.seg.source_planes`): single-frame images, or one
multi-frame image (Enhanced CT, Legacy Converted Enhanced CT) and its frame; a series that
mixes them, or holds several multi-frame images, gets no review SEG (ReviewError saying so).
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from preread.reports import codes, review_codes
from preread.reports.errors import ReportError
from preread.reports.seg import derivation_images, segment_pixels, source_planes
from preread.reports.series import MANUFACTURER, EncodedSeries, SourceFrame, lo
from preread.reviews.domain import AddedNodule, Modified, Review
from preread.reviews.errors import ReviewError
from preread.reviews.sources import (
    REVIEW_SEG_SERIES_NUMBER,
    ReviewSources,
    added_tracking_id,
    dicom_time,
    ordered_frames,
    person_name,
    review_series_description,
)
from preread.reviews.uids import review_uid

__all__ = [
    "CLICK_REFINEMENT",
    "CLICK_REFINEMENT_VERSION",
    "CONTENT_LABEL",
    "ai_masks",
    "build_review_seg",
    "segment_label",
]

CONTENT_LABEL = "READER_REVIEW"
"""Content Label (CS, at most 16 characters)."""
CLICK_REFINEMENT = "PreRead click refinement"
"""The algorithm that drew an added nodule from the reader's click
(:mod:`preread.reviews.measure`); its version is :data:`CLICK_REFINEMENT_VERSION`."""
CLICK_REFINEMENT_VERSION = "1.0"


def build_review_seg(review: Review, sources: ReviewSources) -> EncodedSeries | None:
    """The review's SEG (see the module docstring); None when it modified and added nothing.

    Raises:
        ReviewError: the images do not fit the AI result or are not one a SEG can derive from
            (multi-frame and single-frame images mixed, several multi-frame images), a
            modified finding has no segment in the AI SEG, a mask lies on another grid than
            the series, or highdicom refuses.
    """
    modified = review.segmented
    if not modified and not review.added:
        return None
    if review.seg_series_uid is None or review.seg_sop_instance_uid is None:
        raise ReviewError(f"review {review.id} was recorded without SEG UIDs")
    frames = ordered_frames(review, sources)
    images = _derivation_images(frames)  # a series a SEG cannot derive from is refused first
    shape = (len(frames), int(images[0].Rows), int(images[0].Columns))
    labels = np.zeros(
        shape, dtype=np.uint8 if len(modified) + len(review.added) < 255 else np.uint16
    )
    descriptions: list[hd.seg.SegmentDescription] = []
    concept = sources.concept
    ai_algorithm = hd.AlgorithmIdentificationSequence(
        name=lo(sources.preread.model.name),
        family=codes.ALGORITHM_FAMILY,
        version=lo(sources.preread.model.version),
        source=MANUFACTURER,
    )
    click_algorithm = hd.AlgorithmIdentificationSequence(
        name=CLICK_REFINEMENT,
        family=review_codes.CLICK_REFINEMENT_FAMILY,
        version=CLICK_REFINEMENT_VERSION,
        source=MANUFACTURER,
    )
    masks = ai_masks(sources, frames, modified_uids=[a.tracking_uid for a in modified])
    number = 0
    for a in modified:
        number += 1
        verdict = a.verdict
        assert isinstance(verdict, Modified)
        finding = sources.finding(a.tracking_uid)
        kind = verdict.nodule_type or finding.nodule_type
        labels[masks[a.tracking_uid]] = number
        descriptions.append(
            _description(
                number,
                f"{concept.finding.meaning} {finding.label}"
                + ("" if kind is None else f" ({kind})")
                + ", corrected",
                a.tracking_uid,
                finding.tracking_id,
                ai_algorithm,
                sources,
                f"AI finding {finding.label}, modified by {review.reviewer.name}: "
                + _changes(verdict),
            )
        )
    for n, added in enumerate(review.added, start=1):
        number += 1
        _paint(labels, added, number)
        uid = added.tracking_uid
        assert uid is not None
        descriptions.append(
            _description(
                number,
                f"Reader nodule {n} ({added.nodule_type})",
                uid,
                added_tracking_id(n),
                click_algorithm,
                sources,
                f"Added by {review.reviewer.name} (reader-placed; extent refined from the "
                f"pixels): {added.long_axis_mm:.1f} x {added.short_axis_mm:.1f} mm",
            )
        )
    empty = [d.SegmentNumber for d in descriptions if not (labels == d.SegmentNumber).any()]
    if empty:
        raise ReviewError(f"segment(s) {empty} of review {review.id} have no voxel")
    images, planes = source_planes(frames, labels)
    signed = dicom_time(review.signed_at)
    try:
        seg = hd.seg.Segmentation(
            source_images=images,
            pixel_array=planes,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=review.seg_series_uid,
            series_number=REVIEW_SEG_SERIES_NUMBER,
            sop_instance_uid=review.seg_sop_instance_uid,
            instance_number=1,
            manufacturer=MANUFACTURER,
            manufacturer_model_name="PreRead review",
            software_versions=CLICK_REFINEMENT_VERSION,
            device_serial_number=lo(review.target.model_id),
            content_description=lo(f"Reader review v{review.version}: added and corrected nodules"),
            content_creator_name=person_name(review.reviewer.name),
            content_label=CONTENT_LABEL,
            omit_empty_frames=True,
            series_description=review_series_description(review),
            content_date=signed.date(),
            content_time=signed.time(),
            series_date=signed.date(),
            series_time=signed.time(),
        )
    except (ValueError, TypeError) as exc:
        raise ReviewError(f"cannot encode the review's SEG: {exc}") from exc
    dimension_uid = review_uid(review.id, "seg-dimension-organization")
    for item in (*seg.DimensionOrganizationSequence, *seg.DimensionIndexSequence):
        item.DimensionOrganizationUID = dimension_uid
    return EncodedSeries(
        dataset=seg,
        series_instance_uid=review.seg_series_uid,
        sop_instance_uid=review.seg_sop_instance_uid,
    )


def segment_label(review: Review, tracking_uid: str) -> int:
    """The segment number of the nodule with ``tracking_uid`` in the review's SEG."""
    uids = [a.tracking_uid for a in review.segmented] + [n.tracking_uid for n in review.added]
    if tracking_uid not in uids:
        raise ReviewError(f"the review's SEG has no segment of tracking UID {tracking_uid}")
    return uids.index(tracking_uid) + 1


def _description(
    number: int,
    label: str,
    tracking_uid: str,
    tracking_id: str,
    algorithm: hd.AlgorithmIdentificationSequence,
    sources: ReviewSources,
    text: str,
) -> hd.seg.SegmentDescription:
    concept = sources.concept
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=lo(label),
        segmented_property_category=codes.code(concept.category),
        segmented_property_type=codes.code(concept.finding),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
        algorithm_identification=algorithm,
        tracking_uid=tracking_uid,
        tracking_id=lo(tracking_id),
        anatomic_regions=[codes.code(concept.site)],
    )
    description.SegmentDescription = lo(text)
    return description


def _changes(verdict: Modified) -> str:
    parts: list[str] = []
    if verdict.nodule_type is not None:
        parts.append(verdict.nodule_type)
    if verdict.long_axis_mm is not None:
        parts.append(f"long axis {verdict.long_axis_mm:.1f} mm")
    if verdict.short_axis_mm is not None:
        parts.append(f"short axis {verdict.short_axis_mm:.1f} mm")
    return ", ".join(parts)


def _paint(labels: npt.NDArray[np.unsignedinteger], added: AddedNodule, value: int) -> None:
    try:
        added.mask.paint(labels, value)
    except ReviewError as exc:
        raise ReviewError(
            f"added nodule {value}: {exc}; was it measured on another series?"
        ) from exc


def ai_masks(
    sources: ReviewSources, frames: Sequence[SourceFrame], modified_uids: list[str]
) -> dict[str, npt.NDArray[np.bool_]]:
    """The AI SEG's voxels of each modified finding, on the grid of the slices ``frames``
    (volume order, :func:`~preread.reviews.sources.ordered_frames`): each SEG frame placed on
    the slice it is derived from, a single-frame image or a frame of the multi-frame image
    (:func:`preread.reports.seg.segment_pixels`).

    Raises:
        ReviewError: no AI SEG, a finding without a segment in it, a series a SEG cannot be
            derived from (multi-frame and single-frame images mixed), an AI SEG that cannot be
            read on these images, or a segment without a voxel on them.
    """
    if not modified_uids:
        return {}
    if sources.ai_seg is None:
        raise ReviewError("modified findings need the AI SEG; none was given")
    numbers = sources.ai_segment_numbers()
    missing = [u for u in modified_uids if u not in numbers]
    if missing:
        raise ReviewError(f"the AI SEG has no segment with tracking UID(s) {', '.join(missing)}")
    seg = hd.seg.Segmentation.from_dataset(sources.ai_seg, copy=True)
    try:
        pixels = segment_pixels(seg, frames, [numbers[u] for u in modified_uids])
    except ReportError as exc:
        raise ReviewError(f"the AI SEG: {exc}") from exc
    out = {u: pixels[..., i] for i, u in enumerate(modified_uids)}
    for uid, mask in out.items():
        if not mask.any():
            raise ReviewError(
                f"the AI SEG's segment of tracking UID {uid} has no voxel on the series' images"
            )
    return out


def _derivation_images(frames: Sequence[SourceFrame]) -> list[Dataset]:
    """The images the review's SEG derives from (:func:`preread.reports.seg.derivation_images`:
    the single-frame images or the one multi-frame image), or ReviewError saying why not."""
    try:
        return derivation_images(frames)
    except ReportError as exc:
        raise ReviewError(f"no review SEG: {exc}") from exc
