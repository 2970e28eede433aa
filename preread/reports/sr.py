"""A PreRead result as a DICOM Comprehensive 3D SR: a Measurement Report (PS3.16 TID 1500).

Content tree (all built by highdicom's TID classes)::

    Imaging Measurement Report (DCM 126000)                       TID 1500
    ├── Language: English (en-US)                                 TID 1204
    ├── Observer Type: Device + the model (UID, name, make, model) TID 1002 / 1004
    ├── Procedure reported: CT unspecified body region; CT Chest
    ├── Image Library: the CT slice through each finding's centre  TID 1600
    └── Imaging Measurements
        per finding, two groups with its Tracking Identifier        TID 4108
        "Cornerstone3DTools@^0.1.0:Length:AI nodule 1" and Tracking UID (the SEG's, the JSON's)
        ├── Measurement Group                                     TID 1411 (volumetric ROI)
        │   ├── Finding category / Finding / site: the result's concept, e.g.
        │   │   Morphologically abnormal structure / Nodule / Lung (+ laterality)
        │   ├── Algorithm Identification (model, version, provider)  TID 4019
        │   ├── Referenced Segment: the SEG instance, segment n, source series
        │   ├── Long axis (3-D) [mm], then the sizes the model gives [mm]:
        │   │   Long axis and Short axis with method Axial, average
        │   │   diameter, Long axis with finding site "solid component";
        │   │   Volume [mm3], mean Attenuation [HU], Certainty of
        │   │   Finding [%] (each with TID 4019)                  TID 300
        │   ├── solidness descriptor = solid / part-solid / non-solid
        │   │   pulmonary nodule (RadLex), when the model types it
        │   └── Comment: "AI-generated, preliminary ..."
        └── Measurement Group: what a viewer draws                TID 1501
            ├── Finding category / Finding / site, Algorithm Identification, as above
            ├── the long axis: Long axis with method Axial when the model gives one, else
            │   Long axis (3-D) [mm], INFERRED FROM a two-point SCOORD POLYLINE on the
            │   source slice through the centre (SELECTED FROM that image), exactly as long
            ├── Short axis with method Axial, when given: its POLYLINE, perpendicular
            │   (:mod:`preread.reports.axes`)                     TID 300 / 320
            └── Comment: "AI nodule 1: AI-generated, preliminary ..."
        without findings, one group                               TID 1501
        └── Finding: Nodule, site Lung; Presence of property: Absent; Comment: "No lung
            nodule was found by <model> <version>. AI-generated, preliminary ..."

The finding category, type and site are those of the result's concept (``PreReadResult.
concept``, declared by the model card); the laterality modifier of the site is written only
when the site is the lung.

**What OHIF needs** (read from ``@cornerstonejs/adapters`` 5.6.8, the SR reader OHIF 3.13
bundles; ``tests/reports/test_ohif_sr.py`` runs it under node). The reader picks a tool for
each measurement group by its Tracking Identifier: one that starts with
``Cornerstone3DTools@^0.1.0:<tool>`` names it (``BaseAdapter3D.
isValidCornerstoneTrackingIdentifier``); any other identifier leaves only the tools that test
a SCOORD held by the group itself (``RectangleROI``: a 4/5-point POLYLINE, ``Probe``: a
POINT), and on a group without one ``RectangleROI.isValidMeasurement`` throws. The ``Length``
tool reads the group's first NUM: its value is the length shown, the SCOORD it is INFERRED
FROM places it on that SCOORD's image (``MeasurementReport.getSetupMeasurementData``). Hence
the prefix before the human identifier (the Tracking UID is unchanged) and the drawn group.
The TID 1411 group cannot carry coordinates (its measurements are of the ROI the group names:
TID 1419; highdicom refuses them), so the reader drops it with an error it catches and logs
("No spatial coordinates group found"); it needs nothing from it. Not the ``Bidirectional``
tool: it finds its NUMs by the Code Meanings "Long Axis" / "Short Axis", not PS3.16's "Long
axis" / "Short axis". OHIF's SR display before tracking merges the groups of one Tracking UID
and draws every SCOORD a NUM is inferred from (both axes) with those NUMs' values and the
Comments; a tracked measurement is labelled with its group's Comment, hence the name first.
Earlier SRs had, instead of the drawn group, the centre as a SCOORD3D point (TID 1410): without
an image reference OHIF could show it only in a 3-D view, and being the group's own SCOORD it
took the place of all other geometry; the centre is in the JSON (``center_lps_mm``).

The Comment is a highdicom ``TextContentItem`` appended to the group highdicom built (its TID
classes take coded qualitative evaluations only).

The nodule type and the Lung-RADS sizes (axial long and short axis, mean diameter, solid
component long axis) are written only when the finding has them, with standard codes only; the
three "Long axis" items differ by their modifiers (none: 3-D; Measurement Method "Axial";
Finding Site "solid component of part-solid pulmonary nodule"). The codes, and the reasons for
them, are in :mod:`preread.reports.codes`.

The document is PARTIAL, UNVERIFIED and PRELIMINARY (C.17.2 SR Document General Module); a
new result for the same study names the SR it replaces in the Predecessor Documents Sequence.

**Multi-frame sources** (Enhanced CT, Legacy Converted Enhanced CT): a source slice is a frame
(:class:`~preread.reports.series.SourceFrame`), so every reference to one (the SCOORDs'
SELECTED FROM images, the Image Library entries, TID 1601) names the instance and its
Referenced Frame Number, and each Image Library entry carries that frame's descriptors
(TID 1604: position, orientation, spacing from its functional groups). The evidence lists the
instance once.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from preread.domain import Finding, FindingConcept, PreReadResult
from preread.reports import codes
from preread.reports.axes import SliceAxes, centre_slice, slice_axes
from preread.reports.errors import ReportError
from preread.reports.followup_text import comparison_sentence, nodule_sentence
from preread.reports.json import comparison_out
from preread.reports.seg import algorithm_parameters
from preread.reports.series import (
    AI_NOTICE,
    MANUFACTURER,
    EncodedSeries,
    InstanceRef,
    SourceFrame,
    SourceImages,
    lo,
    series_description,
    source_instances,
    sources_for,
)
from preread.reports.uids import device_uid, report_uid, tracking_id, tracking_uid

__all__ = [
    "OHIF_LENGTH_TOOL",
    "add_image_library",
    "build_sr",
    "library_images",
    "no_finding_text",
    "polyline",
]

OHIF_LENGTH_TOOL = "Cornerstone3DTools@^0.1.0:Length"
"""The start of every finding's Tracking Identifier: the tool OHIF's SR reader draws the group
with (see the module docstring)."""


def no_finding_text(result: PreReadResult) -> str:
    """The statement of an SR without findings."""
    model = result.model
    return f"No {result.concept.name()} was found by {model.name} {model.version}. {AI_NOTICE}"


def build_sr(
    result: PreReadResult,
    source_datasets: SourceImages,
    seg: EncodedSeries | None,
    *,
    series_number: int = 9002,
    supersedes: InstanceRef | None = None,
    uid_seed: str | None = None,
) -> EncodedSeries:
    """Encode the result as a TID 1500 Measurement Report in a new series of the source study.

    Args:
        result: the pre-read; its study, series and frame of reference must be the sources'.
        source_datasets: every image of the series that was read, any order (pixel data not
            needed): single-frame images, or a multi-frame image whose frames are the slices;
            or those images ordered once for several encoders
            (:class:`~preread.reports.series.OrderedSources`).
        seg: the SEG :func:`~preread.reports.seg.build_seg` made of the same result and
            ``uid_seed``; required when there are findings, None when there are none.
        series_number: Series Number of the new series.
        supersedes: the earlier SR of this study that this one replaces (use
            :attr:`EncodedSeries.ref` or the stored instance's UIDs); it is listed in the
            Predecessor Documents Sequence.
        uid_seed: see :mod:`preread.reports.uids`.

    Raises:
        ReportError: the sources do not match the result, findings without a SEG (or a SEG
            without findings), a SEG without a segment for some finding, or a
            ``supersedes`` of another study or equal to this SR.
    """
    sources = sources_for(result, source_datasets)
    if result.findings and seg is None:
        raise ReportError(f"{len(result.findings)} finding(s) need their SEG; none was given")
    if seg is not None and not result.findings:
        raise ReportError("a SEG was given for a result without findings")
    groups: list[
        hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
        | hd.sr.MeasurementsAndQualitativeEvaluations
    ] = []
    library = {source.key for source in library_images(result, sources)}
    if seg is None:
        groups.append(_no_finding_group(result, uid_seed))
    else:
        segments = _segment_numbers(seg)
        segmentation = _segmentation(seg)
        for finding in sorted(result.findings, key=lambda f: f.label):
            uid = tracking_uid(result, finding, uid_seed=uid_seed)
            if uid not in segments:
                raise ReportError(
                    f"the SEG {seg.sop_instance_uid} has no segment with the tracking UID "
                    f"{uid} of finding {finding.label} (was it built with another uid_seed?)"
                )
            axes = slice_axes(
                finding, _drawn_long_axis(finding), sources, segmentation, segments[uid]
            )
            library.add(axes.source.key)  # the centre slice, but for a gap
            groups.append(_volumetric_group(result, finding, uid, seg, segments[uid]))
            groups.append(_drawn_group(result, finding, uid, axes))
    model = result.model
    device = hd.sr.DeviceObserverIdentifyingAttributes(  # TEXT items: no length limit
        uid=device_uid(model),
        name=f"{model.name} (AI-generated, preliminary)",
        manufacturer_name=MANUFACTURER,
        model_name=f"{model.name} {model.version}",
        serial_number=model.sha256 or model.id,
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_device_context=hd.sr.ObserverContext(
                observer_type=codes.DEVICE, observer_identifying_attributes=device
            )
        ),
        procedure_reported=[codes.CT_UNSPECIFIED_BODY_REGION, codes.CT_CHEST],
        imaging_measurements=groups,
        title=codes.REPORT_TITLE,
        language_of_content_item_and_descendants=hd.sr.LanguageOfContentItemAndDescendants(
            codes.LANGUAGE
        ),
    )
    add_image_library(report, [s for s in sources if s.key in library])
    evaluations = _exam_evaluations(result)
    if evaluations is not None:
        report[0].ContentSequence.append(evaluations)
    series_uid = report_uid(result, "sr-series", uid_seed=uid_seed)
    sop_uid = report_uid(result, "sr-instance", uid_seed=uid_seed)
    previous = None if supersedes is None else [_predecessor(result, supersedes, sop_uid)]
    created = result.created
    try:
        sr = hd.sr.Comprehensive3DSR(
            evidence=[*source_instances(sources), *([] if seg is None else [seg.dataset])],
            content=report,
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=sop_uid,
            instance_number=1,
            manufacturer=MANUFACTURER,
            is_complete=False,
            is_final=False,
            is_verified=False,
            previous_versions=previous,
            series_description=series_description(model),
            manufacturer_model_name=lo(model.name),
            software_versions=lo(model.version),
            device_serial_number=lo(model.sha256 or model.id),
            content_date=created.date(),
            content_time=created.time(),
            series_date=created.date(),
            series_time=created.time(),
        )
    except (ValueError, TypeError) as exc:  # highdicom's checks of the inputs
        raise ReportError(f"cannot encode the SR: {exc}") from exc
    return EncodedSeries(dataset=sr, series_instance_uid=series_uid, sop_instance_uid=sop_uid)


def library_images(result: PreReadResult, sources: Sequence[SourceFrame]) -> list[SourceFrame]:
    """The images of the Image Library (TID 1600): the source slice through each finding's
    centre (the image a viewer opens to show it), or, without findings, the first and last
    slice of the series read (its extent). Each entry carries its descriptors (position,
    orientation, spacing), so listing all of a 300-slice series would cost seconds for no
    reader; every image read is referenced in the document's evidence sequences instead.

    ``sources`` must be in array order (:func:`~preread.reports.series.order_sources`).
    """
    if not result.findings:
        return [sources[0], sources[-1]] if len(sources) > 1 else [sources[0]]
    return [sources[k] for k in sorted({centre_slice(f, sources) for f in result.findings})]


def add_image_library(report: hd.sr.MeasurementReport, frames: Sequence[SourceFrame]) -> None:
    """Put the Image Library of the slices ``frames`` into ``report`` where TID 1500 has it
    (row 5, before the Imaging Measurements). Not highdicom's (its ``referenced_images``):
    that one cannot name a frame of a multi-frame image (TID 1601 Referenced Frame Number)."""
    content = report[0].ContentSequence
    measurements = next(
        n
        for n, item in enumerate(content)
        if item.ConceptNameCodeSequence[0].CodeValue == codes.IMAGING_MEASUREMENTS.value
    )
    content.insert(measurements, _image_library(frames))


def _image_library(frames: Sequence[SourceFrame]) -> hd.sr.ContainerContentItem:
    """TID 1600 Image Library: one group, one entry per slice (TID 1601: an IMAGE with its
    frame number for a frame of a multi-frame image; the slice's own descriptors, TID 1602)."""
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    entries = []
    for frame in frames:
        entry = hd.sr.ImageContentItem(
            name=codes.SOURCE,
            referenced_sop_class_uid=frame.sop_class_uid,
            referenced_sop_instance_uid=frame.sop_instance_uid,
            referenced_frame_numbers=frame.referenced_frame_numbers,
            relationship_type=contains,
        )
        entry.ContentSequence = hd.sr.ContentSequence(
            hd.sr.ImageLibraryEntryDescriptors(frame.plane_header())
        )
        entries.append(entry)
    group = hd.sr.ContainerContentItem(name=codes.IMAGE_LIBRARY_GROUP, relationship_type=contains)
    group.ContentSequence = hd.sr.ContentSequence(entries)
    library = hd.sr.ContainerContentItem(name=codes.IMAGE_LIBRARY, relationship_type=contains)
    library.ContentSequence = hd.sr.ContentSequence([group])
    return library


def _segmentation(seg: EncodedSeries) -> hd.seg.Segmentation:
    """The SEG as highdicom's Segmentation (what :func:`~preread.reports.seg.build_seg` makes;
    a SEG read from a file is converted)."""
    if isinstance(seg.dataset, hd.seg.Segmentation):
        return seg.dataset
    return hd.seg.Segmentation.from_dataset(seg.dataset)


def _drawn_long_axis(finding: Finding) -> float:
    """The long axis a viewer draws: the axial one (Lung-RADS) when the model gives it, else
    the 3-D one (depicted on the centre slice)."""
    if finding.axial_long_axis_mm is not None:
        return finding.axial_long_axis_mm
    return finding.long_axis_mm


def _algorithm(result: PreReadResult) -> hd.sr.AlgorithmIdentification:
    """TID 4019 (a new one for each place it is included: content items have one parent)."""
    return hd.sr.AlgorithmIdentification(
        name=result.model.name,
        version=result.model.version,
        parameters=[f"{key}={value}" for key, value in algorithm_parameters(result).items()],
        family=codes.ALGORITHM_FAMILY,
        manufacturer=MANUFACTURER,
    )


def _tracking(result: PreReadResult, finding: Finding, uid: str) -> hd.sr.TrackingIdentifier:
    """TID 4108: the tool prefix OHIF's reader needs, then "AI nodule 1"; the shared UID."""
    identifier = f"{OHIF_LENGTH_TOOL}:{tracking_id(finding, result.concept)}"
    return hd.sr.TrackingIdentifier(uid=uid, identifier=identifier)


def _finding_sites(concept: FindingConcept, finding: Finding) -> list[hd.sr.FindingSite]:
    """The concept's site, with the finding's side when the site is the lung."""
    side = None
    if concept.in_lung and finding.lung_side is not None:
        side = codes.LATERALITY[finding.lung_side]
    return [hd.sr.FindingSite(anatomic_location=codes.code(concept.site), laterality=side)]


def _comment(text: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(
        name=codes.COMMENT,
        value=text,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )


def _measure(
    result: PreReadResult,
    name: Code,
    value: float,
    unit: Code,
    *,
    derivation: Code | None = None,
    method: Code | None = None,
    site: Code | None = None,
    drawn: tuple[npt.NDArray[np.float64], SourceFrame] | None = None,
) -> hd.sr.Measurement:
    """TID 300 with TID 4019; ``drawn``: the POLYLINE (and its image) it is INFERRED FROM."""
    return hd.sr.Measurement(
        name=name,
        value=value,
        unit=unit,
        derivation=derivation,
        method=method,
        finding_sites=None if site is None else [hd.sr.FindingSite(anatomic_location=site)],
        referenced_coordinates=None if drawn is None else [polyline(*drawn)],
        algorithm_id=_algorithm(result),
    )


def _measurements(result: PreReadResult, finding: Finding) -> list[hd.sr.Measurement]:
    mm = codes.MILLIMETER
    sizes = []  # the Lung-RADS sizes the model gives (none before 2.0.0)
    if finding.axial_long_axis_mm is not None:
        axial_long = round(finding.axial_long_axis_mm, 2)
        sizes.append(_measure(result, codes.LONG_AXIS, axial_long, mm, method=codes.AXIAL))
    if finding.short_axis_mm is not None:
        short = round(finding.short_axis_mm, 2)
        sizes.append(_measure(result, codes.SHORT_AXIS, short, mm, method=codes.AXIAL))
    if finding.mean_diameter_mm is not None:
        mean = round(finding.mean_diameter_mm, 2)
        sizes.append(_measure(result, codes.MEAN_DIAMETER, mean, mm))
    if finding.solid_component_long_axis_mm is not None:
        solid = round(finding.solid_component_long_axis_mm, 2)
        sizes.append(_measure(result, codes.LONG_AXIS, solid, mm, site=codes.SOLID_COMPONENT))
    return [
        _measure(result, codes.LONG_AXIS, round(finding.long_axis_mm, 2), mm),
        *sizes,
        _measure(result, codes.VOLUME, round(finding.volume_mm3, 1), codes.CUBIC_MILLIMETER),
        _measure(
            result,
            codes.MEAN_ATTENUATION,
            round(finding.mean_hu, 1),
            codes.HOUNSFIELD_UNIT,
            derivation=codes.MEAN,
        ),
        _measure(result, codes.PROBABILITY, round(100.0 * finding.probability, 2), codes.PERCENT),
    ]


def _drawn_measurements(
    result: PreReadResult, finding: Finding, axes: SliceAxes
) -> list[hd.sr.Measurement]:
    """The long axis (the axial one when the model gives it, else the 3-D one) and the short
    axis, each INFERRED FROM its polyline on the centre slice; the long axis first."""
    long_axis = (axes.long_axis, axes.source)
    if finding.axial_long_axis_mm is None:
        value, method = finding.long_axis_mm, None
    else:
        value, method = finding.axial_long_axis_mm, codes.AXIAL
    mm = codes.MILLIMETER
    drawn = [_measure(result, codes.LONG_AXIS, round(value, 2), mm, method=method, drawn=long_axis)]
    if finding.short_axis_mm is not None and axes.short_axis is not None:
        short = round(finding.short_axis_mm, 2)
        short_axis = (axes.short_axis, axes.source)
        drawn.append(
            _measure(result, codes.SHORT_AXIS, short, mm, method=codes.AXIAL, drawn=short_axis)
        )
    return drawn


def polyline(
    points: npt.NDArray[np.float64], source: SourceFrame
) -> hd.sr.CoordinatesForMeasurement:
    """TID 320: a two-point POLYLINE on the slice ``source`` (its instance, and its frame in a
    multi-frame image) that a measurement is INFERRED FROM."""
    return hd.sr.CoordinatesForMeasurement(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=np.asarray(points, dtype=np.float64),
        source_image=hd.sr.SourceImageForRegion.from_source_image(
            source.dataset, referenced_frame_numbers=source.referenced_frame_numbers
        ),
    )


def _qualitative_evaluations(finding: Finding) -> list[hd.sr.QualitativeEvaluation] | None:
    """The nodule type, when the model gives one."""
    if finding.nodule_type is None:
        return None
    return [
        hd.sr.QualitativeEvaluation(
            name=codes.NODULE_TYPE, value=codes.NODULE_TYPES[finding.nodule_type]
        )
    ]


def _lung_rads_text(version: str, category: str | None, reason: str | None) -> str:
    if category is None:
        return f"Lung-RADS {version}: not determinable: {reason}"
    return f"Lung-RADS {version} {category}"


def _lung_rads_item(result: PreReadResult, finding: Finding) -> hd.sr.TextContentItem | None:
    """The finding's Lung-RADS category as a TEXT qualitative evaluation (TID 1411), named
    DCM 111005 "Assessment Category": DICOM has no codes for Lung-RADS categories."""
    a = result.lung_rads
    row = None if a is None else next((n for n in a.nodules if n.label == finding.label), None)
    if a is None or row is None:
        return None
    return hd.sr.TextContentItem(
        name=codes.ASSESSMENT_CATEGORY,
        value=_lung_rads_text(a.version, row.category, row.reason),
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )


def _comparison_text(result: PreReadResult, finding: Finding | None) -> str | None:
    """The comparison with the priors in words (:mod:`preread.reports.followup_text`): the
    exam's (``finding`` None) or one finding's."""
    c = comparison_out(result)  # the JSON's model, without its tracking UIDs' work
    if c is None:
        return None
    if finding is None:
        return comparison_sentence(c)
    row = next((n for n in c.nodules if n.label == finding.label), None)
    return None if row is None else nodule_sentence(row, c.prior.study_date if c.prior else None)


def _exam_evaluations(result: PreReadResult) -> hd.sr.ContainerContentItem | None:
    """TID 1500 row 12 "Qualitative Evaluations": the exam's Lung-RADS category (TEXT, DCM
    111005 "Assessment Category"; with the reason when not determinable) and its management
    (DCM 121075 "Recommendation"), and the comparison with the priors (TEXT, DCM 121106
    "Comment")."""
    a = result.lung_rads
    comparison = _comparison_text(result, None)
    if a is None and comparison is None:
        return None
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    items: list[hd.sr.ContentItem] = []
    if comparison is not None:
        items.append(_comment(comparison))
    if a is not None:
        items.append(
            hd.sr.TextContentItem(
                name=codes.ASSESSMENT_CATEGORY,
                value=_lung_rads_text(a.version, a.category, a.reason),
                relationship_type=contains,
            )
        )
    if a is not None and a.management:
        items.append(
            hd.sr.TextContentItem(
                name=codes.RECOMMENDATION, value=a.management, relationship_type=contains
            )
        )
    container = hd.sr.ContainerContentItem(
        name=codes.QUALITATIVE_EVALUATIONS, relationship_type=contains
    )
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container


def _volumetric_group(
    result: PreReadResult, finding: Finding, uid: str, seg: EncodedSeries, segment: int
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    concept = result.concept
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(result, finding, uid),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=str(seg.dataset.SOPClassUID),
            sop_instance_uid=seg.sop_instance_uid,
            segment_number=segment,
            source_series=hd.sr.SourceSeriesForSegmentation(result.series_instance_uid),
        ),
        finding_category=codes.code(concept.category),
        finding_type=codes.code(concept.finding),
        algorithm_id=_algorithm(result),
        finding_sites=_finding_sites(concept, finding),
        measurements=_measurements(result, finding),
        qualitative_evaluations=_qualitative_evaluations(finding),
    )
    lung_rads = _lung_rads_item(result, finding)
    if lung_rads is not None:
        group[0].ContentSequence.append(lung_rads)
    follow_up = _comparison_text(result, finding)
    if follow_up is not None:
        group[0].ContentSequence.append(_comment(f"Follow-up: {follow_up}"))
    group[0].ContentSequence.append(_comment(AI_NOTICE))
    return group


def _drawn_group(
    result: PreReadResult, finding: Finding, uid: str, axes: SliceAxes
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """TID 1501: the axes a viewer draws, on the centre slice (same tracking UID)."""
    concept = result.concept
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(result, finding, uid),
        finding_category=codes.code(concept.category),
        finding_type=codes.code(concept.finding),
        algorithm_id=_algorithm(result),
        finding_sites=_finding_sites(concept, finding),
        measurements=_drawn_measurements(result, finding, axes),
    )
    # OHIF labels the measurement it draws with the group's Comment: the finding's name first
    group[0].ContentSequence.append(_comment(f"{tracking_id(finding, concept)}: {AI_NOTICE}"))
    return group


def _no_finding_group(
    result: PreReadResult, uid_seed: str | None
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    concept = result.concept
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=report_uid(result, "tracking-none", uid_seed=uid_seed),
            identifier=f"AI: no {concept.finding.meaning.lower()}",
        ),
        finding_category=codes.code(concept.category),
        finding_type=codes.code(concept.finding),
        algorithm_id=_algorithm(result),
        finding_sites=[hd.sr.FindingSite(anatomic_location=codes.code(concept.site))],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=codes.PRESENCE, value=codes.ABSENT)
        ],
    )
    group[0].ContentSequence.append(_comment(no_finding_text(result)))
    return group


def _segment_numbers(seg: EncodedSeries) -> dict[str, int]:
    """Tracking UID → Segment Number of the SEG's segments."""
    return {
        str(item.TrackingUID): int(item.SegmentNumber)
        for item in seg.dataset.get("SegmentSequence", [])
        if "TrackingUID" in item
    }


def _predecessor(result: PreReadResult, ref: InstanceRef, own_sop_uid: str) -> Dataset:
    """The minimal dataset highdicom needs to list ``ref`` as a predecessor document."""
    if ref.study_instance_uid != result.study_instance_uid:
        raise ReportError(
            f"the superseded SR {ref.sop_instance_uid} is in study {ref.study_instance_uid}, "
            f"not {result.study_instance_uid}"
        )
    if ref.sop_instance_uid == own_sop_uid:
        raise ReportError(f"the SR {own_sop_uid} cannot supersede itself")
    ds = Dataset()
    ds.StudyInstanceUID = ref.study_instance_uid
    ds.SeriesInstanceUID = ref.series_instance_uid
    ds.SOPInstanceUID = ref.sop_instance_uid
    ds.SOPClassUID = ref.sop_class_uid
    return ds
