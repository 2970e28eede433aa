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
        per AI finding (the AI's Tracking ID and UID)                 TID 4108
        └── Measurement Group                                        TID 1411
            ├── Finding category / type / site: the AI result's concept
            ├── Referenced Segment: the AI SEG's segment (modified: the review SEG's)
            ├── modified: Long axis and Short axis (method Axial) [mm], the reader's
            ├── Reader assessment = Accepted / Rejected / Modified (99PRERD)
            ├── Presence of property = Present / Absent                DCM 121052
            ├── rejected: Reason for rejection = vessel (SCT 59820001), …
            ├── modified: solidness descriptor = the reader's type (RadLex)
            └── Comment: the verdict in words, the reader's text
        per added nodule ("Reader nodule n", a new Tracking UID)
        ├── Measurement Group                                        TID 1411
        │   ├── Referenced Segment: the review SEG's segment
        │   ├── Long axis, Short axis (Axial), average diameter, Long axis (3-D) [mm],
        │   │   Volume [mm3], mean Attenuation [HU]                     TID 300
        │   ├── Reader assessment = Added by reader; Presence = Present;
        │   │   solidness descriptor
        │   └── Comment: "Added by <reader> (reader-placed) …"
        └── Measurement Group: the centre as a SCOORD3D POINT        TID 1410
        nothing found and nothing added: one group                   TID 1501
        └── Reader assessment = Accepted; Presence = Absent; Comment

Document (C.17.2): CompletionFlag COMPLETE, VerificationFlag VERIFIED with the Verifying
Observer Sequence (the reviewer's name, organization = tenant, the signing time), Predecessor
Documents Sequence: the AI SR and, when the review supersedes one, the previous review's SR.
PreliminaryFlag stays PRELIMINARY: the review verifies the AI's findings; the diagnostic report
is the hospital radiologist's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.valuerep import DT

from preread.reports import codes, review_codes
from preread.reports.series import MANUFACTURER, EncodedSeries, InstanceRef, lo
from preread.reviews.domain import AddedNodule, Assessment, Modified, Rejected, Review
from preread.reviews.errors import ReviewError
from preread.reviews.seg import segment_label
from preread.reviews.sources import (
    REVIEW_SR_SERIES_NUMBER,
    ReviewSources,
    added_tracking_id,
    dicom_time,
    ordered_images,
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
    images = ordered_images(review, sources)
    if (seg is None) != (not review.segmented and not review.added):
        raise ReviewError("the review's SEG is required exactly when it modified or added nodules")
    ai_segments = sources.ai_segment_numbers()
    groups: list[Group] = []
    for a in sorted(review.assessments, key=lambda a: a.finding_number):
        groups.append(_assessed_group(review, sources, a, ai_segments, seg))
    for n, added in enumerate(review.added, start=1):
        assert seg is not None
        groups.extend(_added_groups(review, sources, n, added, seg))
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
        referenced_images=_library(review, sources, images),
    )
    evidence: list[Dataset] = [*images]
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
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=a.tracking_uid, identifier=finding.tracking_id
        ),
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
    review: Review, sources: ReviewSources, n: int, added: AddedNodule, seg: EncodedSeries
) -> list[Group]:
    concept = sources.concept
    uid = added.tracking_uid
    assert uid is not None
    tracking = hd.sr.TrackingIdentifier(uid=uid, identifier=added_tracking_id(n))
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
    centre = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier=added_tracking_id(n)),
        referenced_region=hd.sr.ImageRegion3D(
            graphic_type=hd.sr.GraphicTypeValues3D.POINT,
            graphic_data=np.asarray([added.centre_lps_mm], dtype=np.float64),
            frame_of_reference_uid=sources.preread.frame_of_reference_uid,
        ),
        finding_category=codes.code(concept.category),
        finding_type=codes.code(concept.finding),
        finding_sites=[hd.sr.FindingSite(anatomic_location=codes.code(concept.site))],
        geometric_purpose=codes.CENTER_OF_MASS,
    )
    return [volumetric, centre]


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


def _library(review: Review, sources: ReviewSources, images: Sequence[Dataset]) -> list[Dataset]:
    """The source slice through each nodule the review names (AI findings and added ones)."""
    orientation = np.asarray(images[0].ImageOrientationPatient, dtype=np.float64)
    normal = np.cross(orientation[:3], orientation[3:])
    along = np.array(
        [np.asarray(ds.ImagePositionPatient, dtype=np.float64) @ normal for ds in images]
    )
    centres = [sources.finding(a.tracking_uid).center_lps_mm for a in review.assessments]
    centres += [n.centre_lps_mm for n in review.added]
    if not centres:
        return [images[0], images[-1]] if len(images) > 1 else [images[0]]
    nearest = {
        int(np.abs(along - np.asarray(c, dtype=np.float64) @ normal).argmin()) for c in centres
    }
    return [images[k] for k in sorted(nearest)]


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
