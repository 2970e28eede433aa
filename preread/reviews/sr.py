"""A signed review as a DICOM Comprehensive 3D SR: a TID 1500 Measurement Report by a person.

Content tree (highdicom's TID classes; codes and their sources in
:mod:`preread.reports.review_codes`)::

    Imaging Measurement Report (DCM 126000)                          TID 1500
    ├── Language: English (en-US)                                    TID 1204
    ├── Observer Type: Person; name, login (user id), organization
    │   (the tenant), role Physician                                 TID 1002 / 1003
    ├── Procedure reported: CT unspecified body region; CT Chest
    ├── Image Library: the slice through each nodule's centre       TID 1600
    └── Imaging Measurements
        per AI finding: the AI's Tracking UID and Tracking ID, after OHIF's tool prefix
        ("Cornerstone3DTools@^0.1.0:Length:AI nodule 1")              TID 4108
        ├── Measurement Group                                        TID 1411
            ├── Finding category / type / site: the AI result's concept
            ├── Referenced Segment: the AI SEG's segment (modified: the review SEG's)
            ├── modified: Long axis and Short axis (method Axial) [mm], the reader's
            ├── Reader assessment = Accepted / Rejected / Modified (99PRERD)
            ├── Presence of property = Present / Absent                DCM 121052
            ├── rejected: Reason for rejection = vessel (SCT 59820001), …
        │   ├── modified: solidness descriptor = the reader's type (RadLex)
        │   └── Comment: the verdict in words, the reader's text
        └── accepted or modified: Measurement Group: what a viewer draws  TID 1501
            ├── the long axis (the reader's when modified, else the AI's axial one, else its
            │   3-D one) INFERRED FROM a two-point POLYLINE on the source slice through the
            │   centre, on the segment's voxels (the AI SEG's; modified: the review SEG's),
            │   exactly as long; the short axis when known, perpendicular  TID 300 / 320
            └── Comment: "AI nodule 1: AI finding 1 accepted by Dr X." (OHIF's label)
        per added nodule: a new Tracking UID, "…:Length:Reader nodule n"
        ├── Measurement Group                                        TID 1411
        │   ├── Referenced Segment: the review SEG's segment
        │   ├── Long axis, Short axis (Axial), average diameter, Long axis (3-D) [mm],
        │   │   Volume [mm3], mean Attenuation [HU]                     TID 300
        │   ├── Reader assessment = Added by reader; Presence = Present;
        │   │   solidness descriptor
        │   └── Comment: "Reader nodule n added by <reader> (reader-placed) …"
        └── Measurement Group: the axial long and short axis drawn as above, on the
            review SEG's segment; Comment "Reader nodule n: added by …"  TID 1501
        nothing found and nothing added: one group                   TID 1501
        └── Reader assessment = Accepted; Presence = Absent; Comment

Document (C.17.2): CompletionFlag COMPLETE, VerificationFlag VERIFIED with the Verifying
Observer Sequence (the reviewer's name, organization = tenant, the signing time), Predecessor
Documents Sequence: the AI SR and, when the review supersedes one, the previous review's SR.
PreliminaryFlag stays PRELIMINARY: the review verifies the AI's findings; the diagnostic report
is the hospital radiologist's.

**OHIF** draws the review as it draws the AI SR (see :mod:`preread.reports.sr`): every finding's
groups carry the Length tool's prefix, the TID 1411 group is dropped by the reader ("No
spatial coordinates group found"), and the TID 1501 group is shown as a Length on its centre
slice, labelled with its Comment. A **rejected** AI finding is not drawn: the review says it
is absent (its TID 1411 group keeps the verdict and the reason; the AI SR still draws the
AI's axes). Earlier reviews put an added nodule's centre in a SCOORD3D POINT group; OHIF
cannot place it on an image and, sharing the Tracking UID, it would take the place of the
drawn axes, so the centre is in the review's JSON only (``centre_lps_mm``).

**Multi-frame sources** (Enhanced CT, Legacy Converted Enhanced CT), as in the AI SR: a source
slice is a frame (:class:`~preread.reports.series.SourceFrame`, slice ``k`` of the masks the
``k``-th of :func:`~preread.reviews.sources.ordered_frames`), so each POLYLINE's SELECTED FROM
image and each Image Library entry (TID 1601, with that frame's descriptors, TID 1602) names
the instance and its Referenced Frame Number; the evidence lists the instance once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.valuerep import DT

from preread.reports import codes, review_codes
from preread.reports.axes import Located, SliceAxes, centre_slice, slice_axes
from preread.reports.errors import ReportError
from preread.reports.series import (
    MANUFACTURER,
    EncodedSeries,
    InstanceRef,
    SourceFrame,
    lo,
    source_instances,
)
from preread.reports.sr import OHIF_LENGTH_TOOL, add_image_library, polyline
from preread.reviews.domain import AddedNodule, Assessment, Modified, Rejected, Review
from preread.reviews.errors import ReviewError
from preread.reviews.seg import segment_label
from preread.reviews.sources import (
    REVIEW_SR_SERIES_NUMBER,
    ReviewSources,
    added_tracking_id,
    dicom_time,
    ordered_frames,
    person_name,
    review_series_description,
)
from preread.reviews.uids import review_uid

__all__ = ["build_review_sr", "verdict_text"]

Group = (
    hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
    | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
    | hd.sr.MeasurementsAndQualitativeEvaluations
)


def build_review_sr(
    review: Review, sources: ReviewSources, seg: EncodedSeries | None
) -> EncodedSeries:
    """The review's SR (see the module docstring).

    Args:
        review: the signed review.
        sources: the AI result it reviews, read from the study.
        seg: the review's SEG (:func:`~preread.reviews.seg.build_review_seg`), None when the
            review modified and added nothing.

    Raises:
        ReviewError: the sources do not fit the review, or highdicom refuses the content.
    """
    frames = ordered_frames(review, sources)
    if (seg is None) != (not review.segmented and not review.added):
        raise ReviewError("the review's SEG is required exactly when it modified or added nodules")
    ai_segments = sources.ai_segment_numbers()
    masks = _Masks(sources, seg)
    groups: list[Group] = []
    drawn_on: set[tuple[str, int | None]] = set()  # SourceFrame.key of each slice drawn on
    for a in sorted(review.assessments, key=lambda a: a.finding_number):
        groups.append(_assessed_group(review, sources, a, ai_segments, seg))
        drawing = _assessed_drawing(review, sources, a, ai_segments, frames, masks)
        if drawing is not None:
            groups.append(drawing[0])
            drawn_on.add(drawing[1])
    for n, added in enumerate(review.added, start=1):
        assert seg is not None
        drawn, key = _added_groups(review, sources, n, added, seg, frames, masks)
        groups.extend(drawn)
        drawn_on.add(key)
    if not groups:
        groups.append(_nothing_group(review, sources))
    reviewer = review.reviewer
    person = hd.sr.PersonObserverIdentifyingAttributes(
        name=person_name(reviewer.name),
        login_name=reviewer.user_id,
        organization_name=reviewer.tenant,
        role_in_organization=review_codes.PHYSICIAN,
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_person_context=hd.sr.ObserverContext(
                observer_type=review_codes.PERSON, observer_identifying_attributes=person
            )
        ),
        procedure_reported=[codes.CT_UNSPECIFIED_BODY_REGION, codes.CT_CHEST],
        imaging_measurements=groups,
        title=codes.REPORT_TITLE,
        language_of_content_item_and_descendants=hd.sr.LanguageOfContentItemAndDescendants(
            codes.LANGUAGE
        ),
    )
    add_image_library(report, _library(review, sources, frames, drawn_on))
    evidence: list[Dataset] = source_instances(frames)
    if sources.ai_seg is not None:
        evidence.append(sources.ai_seg)
    if seg is not None:
        evidence.append(seg.dataset)
    predecessors = [_predecessor(review, sources.ai_sr)]
    if sources.previous_sr is not None:
        predecessors.append(_predecessor(review, sources.previous_sr))
    signed = dicom_time(review.signed_at)
    try:
        sr = hd.sr.Comprehensive3DSR(
            evidence=evidence,
            content=report,
            series_instance_uid=review.sr_series_uid,
            series_number=REVIEW_SR_SERIES_NUMBER,
            sop_instance_uid=review.sr_sop_instance_uid,
            instance_number=1,
            manufacturer=MANUFACTURER,
            is_complete=True,
            is_final=False,
            is_verified=True,
            verifying_observer_name=person_name(reviewer.name),
            verifying_organization=lo(reviewer.tenant),
            previous_versions=predecessors,
            series_description=review_series_description(review),
            manufacturer_model_name="PreRead review",
            software_versions=lo(review.target.model_version),
            device_serial_number=lo(review.target.model_id),
            content_date=signed.date(),
            content_time=signed.time(),
            series_date=signed.date(),
            series_time=signed.time(),
        )
    except (ValueError, TypeError) as exc:
        raise ReviewError(f"cannot encode the review's SR: {exc}") from exc
    # the signature's time, not the encoding's: a retry writes the same document
    sr.VerifyingObserverSequence[0].VerificationDateTime = DT(review.signed_at.astimezone(UTC))
    sr.TimezoneOffsetFromUTC = "+0000"
    sr.CodingSchemeIdentificationSequence = [_private_scheme()]
    return EncodedSeries(
        dataset=sr,
        series_instance_uid=review.sr_series_uid,
        sop_instance_uid=review.sr_sop_instance_uid,
    )


def verdict_text(review: Review, a: Assessment, number: int) -> str:
    """The verdict on AI finding ``number`` in words (the SR's Comment, reports' notes)."""
    by = review.reviewer.name
    v = a.verdict
    if isinstance(v, Rejected):
        why = v.reason.value.replace("-", " / ") if v.text is None else v.text
        if v.text is not None and v.reason.value != "other":
            why = f"{v.reason.value.replace('-', ' / ')}: {v.text}"
        return f"AI finding {number} rejected by {by}: {why}."
    if isinstance(v, Modified):
        parts = []
        if v.nodule_type is not None:
            parts.append(f"type {v.nodule_type}")
        if v.long_axis_mm is not None:
            parts.append(f"long axis {v.long_axis_mm:.1f} mm")
        if v.short_axis_mm is not None:
            parts.append(f"short axis {v.short_axis_mm:.1f} mm")
        return f"AI finding {number} corrected by {by}: {', '.join(parts)}."
    return f"AI finding {number} accepted by {by}."


def _assessed_group(
    review: Review,
    sources: ReviewSources,
    a: Assessment,
    ai_segments: dict[str, int],
    seg: EncodedSeries | None,
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    finding = sources.finding(a.tracking_uid)
    concept = sources.concept
    v = a.verdict
    if isinstance(v, Modified):
        assert seg is not None
        referenced = _segment(seg, segment_label(review, a.tracking_uid), sources)
    else:
        if sources.ai_seg is None or a.tracking_uid not in ai_segments:
            raise ReviewError(
                f"the AI SEG has no segment for AI finding {a.finding_number} ({a.tracking_uid})"
            )
        referenced = _segment_of(sources.ai_seg, ai_segments[a.tracking_uid], sources)
    evaluations = [
        hd.sr.QualitativeEvaluation(review_codes.ASSESSMENT, review_codes.ASSESSMENTS[a.kind]),
        hd.sr.QualitativeEvaluation(
            review_codes.PRESENCE,
            review_codes.ABSENT if isinstance(v, Rejected) else review_codes.PRESENT,
        ),
    ]
    measurements: list[hd.sr.Measurement] = []
    if isinstance(v, Rejected):
        evaluations.append(
            hd.sr.QualitativeEvaluation(
                review_codes.REJECTION_REASON, review_codes.REJECTION_REASONS[v.reason.value]
            )
        )
    if isinstance(v, Modified):
        if v.nodule_type is not None:
            evaluations.append(
                hd.sr.QualitativeEvaluation(codes.NODULE_TYPE, codes.NODULE_TYPES[v.nodule_type])
            )
        if v.long_axis_mm is not None:
            measurements.append(_size(codes.LONG_AXIS, v.long_axis_mm, codes.AXIAL))
        if v.short_axis_mm is not None:
            measurements.append(_size(codes.SHORT_AXIS, v.short_axis_mm, codes.AXIAL))
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(a.tracking_uid, finding.tracking_id),
        referenced_segment=referenced,
        finding_category=codes.code(concept.category),
        finding_type=codes.code(concept.finding),
        finding_sites=[hd.sr.FindingSite(anatomic_location=codes.code(concept.site))],
        measurements=measurements or None,
        qualitative_evaluations=evaluations,
    )
    group[0].ContentSequence.append(_comment(verdict_text(review, a, finding.label)))
    return group


def _added_groups(
    review: Review,
    sources: ReviewSources,
    n: int,
    added: AddedNodule,
    seg: EncodedSeries,
    frames: Sequence[SourceFrame],
    masks: _Masks,
) -> tuple[list[Group], tuple[str, int | None]]:
    """The added nodule's TID 1411 group and its drawn TID 1501 group; the slice drawn on
    (its :attr:`~preread.reports.series.SourceFrame.key`)."""
    concept = sources.concept
    uid = added.tracking_uid
    assert uid is not None
    name = added_tracking_id(n)
    tracking = _tracking(uid, name)
    mm = codes.MILLIMETER
    measurements = [
        _size(codes.LONG_AXIS, added.long_axis_mm, codes.AXIAL),
        _size(codes.SHORT_AXIS, added.short_axis_mm, codes.AXIAL),
        hd.sr.Measurement(name=codes.MEAN_DIAMETER, value=added.mean_diameter_mm, unit=mm),
        hd.sr.Measurement(name=codes.LONG_AXIS, value=round(added.long_axis_3d_mm, 2), unit=mm),
        hd.sr.Measurement(
            name=codes.VOLUME, value=round(added.volume_mm3, 1), unit=codes.CUBIC_MILLIMETER
        ),
        hd.sr.Measurement(
            name=codes.MEAN_ATTENUATION,
            value=round(added.mean_hu, 1),
            unit=codes.HOUNSFIELD_UNIT,
            derivation=codes.MEAN,
        ),
    ]
    if added.solid_component_long_axis_mm is not None:
        measurements.append(
            hd.sr.Measurement(
                name=codes.LONG_AXIS,
                value=round(added.solid_component_long_axis_mm, 2),
                unit=mm,
                finding_sites=[hd.sr.FindingSite(anatomic_location=codes.SOLID_COMPONENT)],
            )
        )
    volumetric = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        referenced_segment=_segment(seg, segment_label(review, uid), sources),
        finding_category=codes.code(concept.category),
        finding_type=codes.code(concept.finding),
        finding_sites=[hd.sr.FindingSite(anatomic_location=codes.code(concept.site))],
        measurements=measurements,
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(review_codes.ASSESSMENT, review_codes.ASSESSMENTS["added"]),
            hd.sr.QualitativeEvaluation(review_codes.PRESENCE, review_codes.PRESENT),
            hd.sr.QualitativeEvaluation(codes.NODULE_TYPE, codes.NODULE_TYPES[added.nodule_type]),
        ],
    )
    volumetric[0].ContentSequence.append(
        _comment(
            f"Reader nodule {n} added by {review.reviewer.name} (reader-placed; its extent was "
            "refined from the pixels around the reader's click)."
        )
    )
    segmentation, segment = masks.review(segment_label(review, uid))
    nodule = _Nodule(name, added.centre_lps_mm, added.short_axis_mm)
    axes = _axes(nodule, added.long_axis_mm, frames, segmentation, segment)
    drawn = _drawn_group(
        sources,
        _tracking(uid, name),
        axes,
        (added.long_axis_mm, codes.AXIAL),
        added.short_axis_mm,
        f"{name}: added by {review.reviewer.name}, {added.long_axis_mm:.1f} x "
        f"{added.short_axis_mm:.1f} mm, {added.nodule_type}.",
    )
    return [volumetric, drawn], axes.source.key


@dataclass(frozen=True)
class _Nodule:
    """A nodule as :func:`~preread.reports.axes.slice_axes` needs it."""

    label: str
    center_lps_mm: tuple[float, float, float]
    short_axis_mm: float | None


class _Masks:
    """The SEGs the drawn axes are placed on, read once: the review's and the AI's."""

    def __init__(self, sources: ReviewSources, seg: EncodedSeries | None) -> None:
        self._sources = sources
        self._seg = seg
        self._review: hd.seg.Segmentation | None = None
        self._ai: hd.seg.Segmentation | None = None

    def review(self, segment: int) -> tuple[hd.seg.Segmentation, int]:
        if self._review is None:
            if self._seg is None:
                raise ReviewError("the review's SEG is required to draw its nodules")
            ds = self._seg.dataset
            self._review = (
                ds
                if isinstance(ds, hd.seg.Segmentation)
                else hd.seg.Segmentation.from_dataset(ds, copy=True)
            )
        return self._review, segment

    def ai(self, segment: int) -> tuple[hd.seg.Segmentation, int]:
        if self._ai is None:
            if self._sources.ai_seg is None:
                raise ReviewError("the AI SEG is required to draw the AI's findings")
            ds = self._sources.ai_seg
            self._ai = (
                ds
                if isinstance(ds, hd.seg.Segmentation)
                else hd.seg.Segmentation.from_dataset(ds, copy=True)
            )
        return self._ai, segment


def _tracking(uid: str, name: str) -> hd.sr.TrackingIdentifier:
    """TID 4108: OHIF's Length tool prefix, then the nodule's name (see the module docstring)."""
    return hd.sr.TrackingIdentifier(uid=uid, identifier=f"{OHIF_LENGTH_TOOL}:{name}")


def _axes(
    nodule: _Nodule,
    long_axis_mm: float,
    frames: Sequence[SourceFrame],
    segmentation: hd.seg.Segmentation,
    segment: int,
) -> SliceAxes:
    try:
        return slice_axes(nodule, long_axis_mm, frames, segmentation, segment)
    except ReportError as exc:
        raise ReviewError(f"cannot draw {nodule.label}: {exc}") from exc


def _assessed_drawing(
    review: Review,
    sources: ReviewSources,
    a: Assessment,
    ai_segments: dict[str, int],
    frames: Sequence[SourceFrame],
    masks: _Masks,
) -> tuple[hd.sr.MeasurementsAndQualitativeEvaluations, tuple[str, int | None]] | None:
    """The drawn TID 1501 group of an accepted or modified AI finding and the slice it is
    drawn on (its :attr:`~preread.reports.series.SourceFrame.key`); None for a rejected one
    (the review says it is absent)."""
    v = a.verdict
    if isinstance(v, Rejected):
        return None
    finding = sources.finding(a.tracking_uid)
    if finding.axial_long_axis_mm is not None:
        long_axis: tuple[float, Code | None] = (finding.axial_long_axis_mm, codes.AXIAL)
    else:
        long_axis = (finding.long_axis_mm, None)
    short_axis = finding.short_axis_mm
    if isinstance(v, Modified):
        segmentation, segment = masks.review(segment_label(review, a.tracking_uid))
        if v.long_axis_mm is not None:
            long_axis = (v.long_axis_mm, codes.AXIAL)
        if v.short_axis_mm is not None:
            short_axis = v.short_axis_mm
    else:
        segmentation, segment = masks.ai(ai_segments[a.tracking_uid])
    nodule = _Nodule(finding.tracking_id, finding.center_lps_mm, short_axis)
    axes = _axes(nodule, long_axis[0], frames, segmentation, segment)
    group = _drawn_group(
        sources,
        _tracking(a.tracking_uid, finding.tracking_id),
        axes,
        long_axis,
        short_axis,
        f"{finding.tracking_id}: {verdict_text(review, a, finding.label)}",
    )
    return group, axes.source.key


def _drawn_group(
    sources: ReviewSources,
    tracking: hd.sr.TrackingIdentifier,
    axes: SliceAxes,
    long_axis: tuple[float, Code | None],
    short_axis_mm: float | None,
    label: str,
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """TID 1501: the long axis (and the short axis) as OHIF draws them, labelled ``label``."""
    concept = sources.concept
    measurements = [_drawn(codes.LONG_AXIS, long_axis[0], long_axis[1], axes.long_axis, axes)]
    if short_axis_mm is not None and axes.short_axis is not None:
        measurements.append(
            _drawn(codes.SHORT_AXIS, short_axis_mm, codes.AXIAL, axes.short_axis, axes)
        )
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        finding_category=codes.code(concept.category),
        finding_type=codes.code(concept.finding),
        finding_sites=[hd.sr.FindingSite(anatomic_location=codes.code(concept.site))],
        measurements=measurements,
    )
    # OHIF labels the measurement it draws with the group's Comment: the nodule's name first
    group[0].ContentSequence.append(_comment(label))
    return group


def _drawn(
    name: Code,
    value: float,
    method: Code | None,
    points: npt.NDArray[np.float64],
    axes: SliceAxes,
) -> hd.sr.Measurement:
    """TID 300 INFERRED FROM a two-point POLYLINE on the drawn slice (TID 320: its instance,
    and its frame in a multi-frame image)."""
    return hd.sr.Measurement(
        name=name,
        value=round(value, 2),
        unit=codes.MILLIMETER,
        method=method,
        referenced_coordinates=[polyline(points, axes.source)],
    )


def _nothing_group(
    review: Review, sources: ReviewSources
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    concept = sources.concept
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=review_uid(review.id, "tracking-none"),
            identifier=f"Reader: no {concept.finding.meaning.lower()}",
        ),
        finding_category=codes.code(concept.category),
        finding_type=codes.code(concept.finding),
        finding_sites=[hd.sr.FindingSite(anatomic_location=codes.code(concept.site))],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(
                review_codes.ASSESSMENT, review_codes.ASSESSMENTS["accepted"]
            ),
            hd.sr.QualitativeEvaluation(review_codes.PRESENCE, review_codes.ABSENT),
        ],
    )
    group[0].ContentSequence.append(
        _comment(
            f"{review.reviewer.name} agrees with the AI: no {concept.name()} found and none added."
        )
    )
    return group


def _size(name: Code, value: float, method: Code) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=name, value=round(value, 2), unit=codes.MILLIMETER, method=method)


def _comment(text: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(
        name=codes.COMMENT,
        value=text,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )


def _segment(seg: EncodedSeries, number: int, sources: ReviewSources) -> hd.sr.ReferencedSegment:
    return _segment_of(seg.dataset, number, sources)


def _segment_of(seg: Dataset, number: int, sources: ReviewSources) -> hd.sr.ReferencedSegment:
    return hd.sr.ReferencedSegment(
        sop_class_uid=str(seg.SOPClassUID),
        sop_instance_uid=str(seg.SOPInstanceUID),
        segment_number=number,
        source_series=hd.sr.SourceSeriesForSegmentation(sources.preread.series_instance_uid),
    )


def _library(
    review: Review,
    sources: ReviewSources,
    frames: Sequence[SourceFrame],
    drawn_on: set[tuple[str, int | None]],
) -> list[SourceFrame]:
    """The slices of the Image Library (TID 1600), in volume order: the source slice through
    each nodule the review names (AI findings and added ones, :func:`~preread.reports.axes.
    centre_slice`) and each slice a nodule is drawn on (``drawn_on``, keys: the centre slice,
    but for a gap); without nodules, the first and last slice (the series' extent)."""
    nodules: list[Located] = [sources.finding(a.tracking_uid) for a in review.assessments]
    nodules += [
        _Nodule(added_tracking_id(n), added.centre_lps_mm, None)
        for n, added in enumerate(review.added, start=1)
    ]
    if not nodules:
        return [frames[0], frames[-1]] if len(frames) > 1 else [frames[0]]
    nearest = {centre_slice(nodule, frames) for nodule in nodules}
    nearest |= {k for k, frame in enumerate(frames) if frame.key in drawn_on}
    return [frames[k] for k in sorted(nearest)]


def _private_scheme() -> Dataset:
    """Coding Scheme Identification (PS3.3 C.12.1.1.2) of PreRead's private scheme."""
    item = Dataset()
    item.CodingSchemeDesignator = codes.PRIVATE_SCHEME
    item.CodingSchemeName = "PreRead private codes"
    item.CodingSchemeResponsibleOrganization = MANUFACTURER
    return item


def _predecessor(review: Review, ref: InstanceRef) -> Dataset:
    if ref.study_instance_uid != review.study_instance_uid:
        raise ReviewError(
            f"the SR {ref.sop_instance_uid} is in study {ref.study_instance_uid}, not "
            f"{review.study_instance_uid}"
        )
    ds = Dataset()
    ds.StudyInstanceUID = ref.study_instance_uid
    ds.SeriesInstanceUID = ref.series_instance_uid
    ds.SOPInstanceUID = ref.sop_instance_uid
    ds.SOPClassUID = ref.sop_class_uid
    return ds
