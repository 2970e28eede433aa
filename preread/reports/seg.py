"""A PreRead result's finding masks as a DICOM Segmentation (PS3.3 A.51, C.8.20).

One BINARY segment per finding (segment ``n`` is the ``n``-th finding by label), labelled
"<finding type> <label>" ("Nodule 1"; with the type when the model gives one: "Nodule 2
(part-solid)", also said in the Segment Description), with the finding's Tracking ID and
Tracking UID (the same the SR and the JSON carry), the category, type and anatomic region of the
result's concept (the model card's label; for the lung-nodule model SNOMED CT 49755003
"Morphologically abnormal structure", 27925004 "Nodule" whatever the nodule type, 39607008
"Lung"), algorithm type AUTOMATIC and the model as the algorithm (family DCM 123110 "Artificial
Intelligence"). Frames reference the source CT slices they lie on (Derivation Image, Source
Image Sequence; for a multi-frame source image, Enhanced CT or Legacy Converted Enhanced CT,
the instance and the frame); empty frames are left out.

The source images are either single-frame images or one multi-frame image (what highdicom and
the Segmentation IOD's Derivation Image references allow one SEG instance to be derived from);
a series that mixes them, or holds several multi-frame images, is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from preread.domain import Finding, FindingConcept, PreReadResult
from preread.reports import codes
from preread.reports.errors import ReportError
from preread.reports.series import (
    AI_NOTICE,
    MANUFACTURER,
    EncodedSeries,
    SourceFrame,
    SourceImages,
    lo,
    series_description,
    source_instances,
    sources_for,
)
from preread.reports.uids import report_uid, tracking_id, tracking_uid

__all__ = [
    "CONTENT_LABEL",
    "algorithm_parameters",
    "build_seg",
    "derivation_images",
    "segment_label",
    "segment_pixels",
    "source_planes",
]

CONTENT_LABEL = "AI_PRELIMINARY"
"""Content Label (CS, at most 16 characters), shown by viewers as the SEG's name."""


#: Recommended Display CIELab Value of every AI segment (0062,000D): yellow, the colour of the
#: contour burned into the key images (``preread.reports.render.CONTOUR_RGB``, sRGB 255/255/0);
#: without it OHIF warns on import and picks a colour of its own.
AI_SEGMENT_COLOR = hd.color.CIELabColor(97.14, -21.55, 94.48)


def algorithm_parameters(result: PreReadResult) -> dict[str, str]:
    """What identifies the run besides name and version: the model id, its file's sha256 and
    the ONNX Runtime execution provider that actually ran it."""
    return {
        "model_id": result.model.id,
        "model_sha256": result.model.sha256,
        "provider": result.provider,
    }


def build_seg(
    result: PreReadResult,
    source_datasets: SourceImages,
    labels: npt.NDArray[np.integer],
    *,
    series_number: int = 9001,
    uid_seed: str | None = None,
) -> EncodedSeries | None:
    """Encode the findings' voxels as a SEG instance in a new series of the source study.

    Args:
        result: the pre-read; its study, series and frame of reference must be the sources'.
        source_datasets: every image of the series that was read, any order (pixel data not
            needed): single-frame images, or one multi-frame image whose frames are the
            slices; or those images ordered once for several encoders
            (:class:`~preread.reports.series.OrderedSources`).
        labels: integer array ``[k, j, i]`` on the source grid (the shape of the volume
            :func:`dicom_gateway.volume.assemble_volume` makes of ``source_datasets``);
            value ``n`` marks the voxels of the finding with ``label == n``, 0 background;
            values of no finding are ignored.
        series_number: Series Number of the new series.
        uid_seed: see :mod:`preread.reports.uids`.

    Returns:
        The SEG, or None when ``result`` has no findings (there is nothing to segment).

    Raises:
        ReportError: the sources do not match the result (see
            :func:`~preread.reports.series.order_sources`), mix multi-frame and single-frame
            images or hold several multi-frame images, ``labels`` has the wrong shape or
            type, findings share a label, or a finding has no voxel in ``labels``.
    """
    if not result.findings:
        return None
    sources = sources_for(result, source_datasets)
    findings = _sorted_findings(result.findings)
    images, segments = source_planes(sources, _segment_array(labels, findings, sources))
    algorithm = hd.AlgorithmIdentificationSequence(
        name=lo(result.model.name),
        family=codes.ALGORITHM_FAMILY,
        version=lo(result.model.version),
        source=MANUFACTURER,
        parameters=algorithm_parameters(result),
    )
    concept = result.concept
    descriptions = []
    for number, finding in enumerate(findings, start=1):
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=lo(segment_label(finding, concept)),
            segmented_property_category=codes.code(concept.category),
            segmented_property_type=codes.code(concept.finding),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=tracking_uid(result, finding, uid_seed=uid_seed),
            tracking_id=lo(tracking_id(finding, concept)),
            anatomic_regions=[codes.code(concept.site)],
            display_color=AI_SEGMENT_COLOR,
        )
        description.SegmentDescription = _description(finding)  # (0062,0006), Type 3
        descriptions.append(description)
    created = result.created
    series_uid = report_uid(result, "seg-series", uid_seed=uid_seed)
    sop_uid = report_uid(result, "seg-instance", uid_seed=uid_seed)
    try:
        seg = hd.seg.Segmentation(
            source_images=images,
            pixel_array=segments,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=sop_uid,
            instance_number=1,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=lo(result.model.name),
            software_versions=lo(result.model.version),
            device_serial_number=lo(result.model.sha256 or result.model.id),
            content_description=lo(
                f"AI-generated, preliminary: {concept.name(2)}, {result.model.name} "
                f"{result.model.version}"
            ),
            content_label=CONTENT_LABEL,
            omit_empty_frames=True,
            series_description=series_description(result.model),
            content_date=created.date(),
            content_time=created.time(),
            series_date=created.date(),
            series_time=created.time(),
        )
    except (ValueError, TypeError) as exc:  # highdicom's checks of the inputs
        raise ReportError(f"cannot encode the SEG: {exc}") from exc
    # highdicom draws a random Dimension Organization UID; derive it like every other UID
    dimension_uid = report_uid(result, "seg-dimension-organization", uid_seed=uid_seed)
    for item in (*seg.DimensionOrganizationSequence, *seg.DimensionIndexSequence):
        item.DimensionOrganizationUID = dimension_uid
    return EncodedSeries(dataset=seg, series_instance_uid=series_uid, sop_instance_uid=sop_uid)


def segment_label(finding: Finding, concept: FindingConcept) -> str:
    """ "<finding type> <label>" ("Nodule 1"), and the nodule type when the model gives one:
    "Nodule 2 (part-solid)"."""
    kind = "" if finding.nodule_type is None else f" ({finding.nodule_type})"
    return f"{concept.finding.meaning} {finding.label}{kind}"


def _description(finding: Finding) -> str:
    """Segment Description: the type in words (when known), then the AI notice."""
    if finding.nodule_type is None:
        return AI_NOTICE
    return f"{finding.nodule_type.capitalize()} nodule. {AI_NOTICE}"


def _sorted_findings(findings: Sequence[Finding]) -> list[Finding]:
    ordered = sorted(findings, key=lambda f: f.label)
    labels = [f.label for f in ordered]
    if len(set(labels)) != len(labels) or labels[0] < 1:
        raise ReportError(f"finding labels must be distinct and positive, got {labels}")
    return ordered


def derivation_images(sources: Sequence[SourceFrame]) -> list[Dataset]:
    """The instances a SEG of the slices ``sources`` is derived from (listed in its Common
    Instance Reference Module, PS3.3 C.12.2; each frame's Derivation Image Sequence names one
    of them, and for a multi-frame image its frame, C.7.6.16.2.6): the single-frame images in
    array order, or the one multi-frame image.

    Raises:
        ReportError: the slices lie on several multi-frame images, or on multi-frame and
            single-frame images, naming how many of each.
    """
    images = source_instances(sources)
    if len(images) > 1 and any(s.frame_number is not None for s in sources):
        multi = len({s.sop_instance_uid for s in sources if s.frame_number is not None})
        raise ReportError(
            f"the series holds {multi} multi-frame image(s) and {len(images) - multi} "
            "single-frame image(s): a SEG is derived from single-frame images or from one "
            "multi-frame image"
        )
    return images


def source_planes(
    sources: Sequence[SourceFrame], segments: npt.NDArray[np.unsignedinteger]
) -> tuple[list[Dataset], npt.NDArray[np.unsignedinteger]]:
    """highdicom's ``source_images`` and ``pixel_array`` for segments in array order: the
    single-frame images in array order and ``segments`` as they are, or the one multi-frame
    image and ``segments`` in its frame order (plane ``i`` on frame ``i + 1``).

    Raises:
        ReportError: ``sources`` mix images a SEG cannot derive from together
            (:func:`derivation_images`).
    """
    images = derivation_images(sources)
    numbers = [s.frame_number for s in sources if s.frame_number is not None]
    if not numbers:
        return images, segments
    return images, segments[np.argsort(numbers)]  # plane i: the slice k of frame i + 1


def segment_pixels(
    seg: hd.seg.Segmentation, sources: Sequence[SourceFrame], segment_numbers: Sequence[int]
) -> npt.NDArray[np.bool_]:
    """Segments ``segment_numbers`` of ``seg`` on the slices ``sources``: booleans
    ``[k, row, column, n]``, ``k`` the slice ``sources[k]``, ``n`` the ``n``-th segment asked.

    Each SEG frame is found by the source image it is derived from (Derivation Image Sequence,
    PS3.3 C.7.6.16.2.6): a single-frame image by its SOP Instance UID, a frame of a
    multi-frame image by the instance and its Referenced Frame Number. A slice that no frame
    of a segment references is empty there (a SEG may leave empty frames out).

    Raises:
        ReportError: ``sources`` mix images a SEG cannot derive from together
            (:func:`derivation_images`), or highdicom cannot index ``seg`` by them.
    """
    images = derivation_images(sources)
    numbers = [s.frame_number for s in sources if s.frame_number is not None]
    try:
        if not numbers:
            pixels = seg.get_pixels_by_source_instance(
                source_sop_instance_uids=[s.sop_instance_uid for s in sources],
                segment_numbers=list(segment_numbers),
                assert_missing_frames_are_empty=True,
            )
        else:
            pixels = seg.get_pixels_by_source_frame(
                source_sop_instance_uid=str(images[0].SOPInstanceUID),
                source_frame_numbers=numbers,
                segment_numbers=list(segment_numbers),
                assert_missing_frames_are_empty=True,
            )
    except (KeyError, ValueError, RuntimeError) as exc:
        raise ReportError(
            f"the SEG {seg.SOPInstanceUID} cannot be read on the source images: {exc}"
        ) from exc
    return np.asarray(pixels, dtype=bool)


def _segment_array(
    labels: npt.NDArray[np.integer], findings: list[Finding], sources: list[SourceFrame]
) -> npt.NDArray[np.unsignedinteger]:
    """Finding labels as segment numbers 1..N (other values 0), in source order.

    A label map whose findings are already labelled 1..N (what :func:`preread.pipeline.analyze`
    makes) is used as it is, not copied.
    """
    array = np.asarray(labels)
    expected = (len(sources), int(sources[0].dataset.Rows), int(sources[0].dataset.Columns))
    if array.shape != expected:
        raise ReportError(
            f"label map has shape {array.shape}, the {len(sources)} source images make a "
            f"volume of shape {expected}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise ReportError(f"label map must hold integers, got {array.dtype}")
    if array.size and int(array.min()) < 0:
        raise ReportError("label map holds negative values")
    top = max(int(array.max(initial=0)), findings[-1].label)
    numbered = [f.label for f in findings] == list(range(1, len(findings) + 1))
    segments: npt.NDArray[np.unsignedinteger]
    if numbered and top == len(findings) and np.issubdtype(array.dtype, np.unsignedinteger):
        segments = array
    else:
        lut = np.zeros(top + 1, dtype=np.uint8 if len(findings) < 2**8 else np.uint16)
        for number, finding in enumerate(findings, start=1):
            lut[finding.label] = number
        segments = np.asarray(lut[array], dtype=lut.dtype)
    # over the labelled voxels only (a whole-volume bincount widens every byte to 64 bits)
    present = np.bincount(segments[segments != 0], minlength=len(findings) + 1)
    missing = [f.label for n, f in enumerate(findings, start=1) if present[n] == 0]
    if missing:
        raise ReportError(f"finding(s) {missing} have no voxel in the label map")
    return segments
