"""Key images for any PACS: a Secondary Capture per finding and a Key Object Selection.

Viewers that show neither SR nor SEG still show images. For each finding,
:func:`build_key_images` writes a DICOM Secondary Capture Image (PS3.3 A.8.1): the source CT
slice through the finding's centre in the lung window, the finding's contour (from the same
label map the SEG is built from) and, in a band below the image, its number, type, site,
axial long and short axis, volume, the model and "AI-generated, preliminary, not for
diagnosis" (rendered by :func:`preread.reports.render.render_key_image`). RGB, Burned In
Annotation YES, Source Image Sequence to the CT slice, Pixel Spacing of the display pixels (a
512 × 512 slice keeps its own: measurements on the key image are true). All of one result's
key images form one new series.

:func:`build_kos` writes one Key Object Selection Document (PS3.3 A.35.4, TID 2010) titled
(113000, DCM, "Of Interest") (CID 7010) that flags those CT slices in the original series,
with the model as the observer device and a Key Object Description saying that the AI, not a
radiologist, chose them. Both go into new series of the original study, with the Series
Description prefix PreRead's own series carry (they are never read as input) and UIDs derived
like the SR's and SEG's (:mod:`preread.reports.uids`).

The key slice of a finding is the source slice nearest its centre along the slice normal
(the SR's Image Library lists the same slice), or, should the finding have no voxel there
(a crescent), the slice nearest it that has one. A result without findings has no key image
and no KOS (there is nothing to point at; the SR says that nothing was found).

A key slice in a multi-frame source image (Enhanced CT, Legacy Converted Enhanced CT) is one
of its frames (:class:`~preread.reports.series.SourceFrame`): the key image takes that frame's
pixels, orientation and spacing and its Source Image Sequence names the instance and the
frame (Referenced Frame Number); the KOS lists the instance once, with the key frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as dcm_codes
from pydicom.uid import ExplicitVRLittleEndian
from pydicom.valuerep import DA, TM

from dicom_gateway.selection import PREREAD_SERIES_PREFIX
from preread.domain import Finding, PreReadResult
from preread.reports import codes
from preread.reports.errors import ReportError
from preread.reports.render import LUNG_WINDOW, render_key_image
from preread.reports.seg import segment_label
from preread.reports.series import (
    MANUFACTURER,
    EncodedSeries,
    SourceFrame,
    SourceImages,
    lo,
    source_instances,
    sources_for,
)
from preread.reports.uids import device_uid, report_uid

__all__ = [
    "KOS_TITLE",
    "NOT_FOR_DIAGNOSIS",
    "KeyImageSeries",
    "build_key_images",
    "build_kos",
    "key_image_lines",
    "key_slices",
]

NOT_FOR_DIAGNOSIS = "AI-generated, preliminary, not for diagnosis"
KOS_TITLE = dcm_codes.cid7010.OfInterest
"""(113000, DCM, "Of Interest"), CID 7010 Key Object Selection Document Title."""
_SOURCE_PURPOSE = dcm_codes.DCM.SourceImageForImageProcessingOperation  # CID 7202: 121322


@dataclass(frozen=True)
class KeyImageSeries:
    """The Secondary Capture key images of one result, in one new series (one per finding,
    in label order; ``finding_labels[n]`` is the finding of ``datasets[n]``)."""

    series_instance_uid: str
    datasets: tuple[Dataset, ...]
    finding_labels: tuple[int, ...]

    @property
    def sop_instance_uids(self) -> tuple[str, ...]:
        return tuple(str(ds.SOPInstanceUID) for ds in self.datasets)


def key_slices(
    result: PreReadResult, sources: Sequence[SourceFrame], labels: npt.NDArray[np.integer]
) -> dict[int, int]:
    """Finding label → index ``k`` of its key slice in ``sources`` (array order, as
    :func:`~preread.reports.series.order_sources` gives it; ``labels`` on the same grid).

    Raises:
        ReportError: ``labels`` does not fit the sources, or a finding has no voxel.
    """
    _check_grid(sources, labels)
    normal = sources[0].normal
    along = np.array([np.asarray(s.position, dtype=np.float64) @ normal for s in sources])
    chosen: dict[int, int] = {}
    for finding in result.findings:
        centre = float(np.asarray(finding.center_lps_mm, dtype=np.float64) @ normal)
        k = int(np.abs(along - centre).argmin())
        if not np.any(labels[k] == finding.label):
            held = np.flatnonzero([np.any(labels[s] == finding.label) for s in range(len(sources))])
            if held.size == 0:
                raise ReportError(f"finding {finding.label} has no voxel in the label map")
            k = int(held[np.abs(along[held] - centre).argmin()])
        chosen[finding.label] = k
    return chosen


def key_image_lines(result: PreReadResult, finding: Finding) -> list[str]:
    """The text burned into a finding's key image (ASCII: the font has no "³")."""
    concept = result.concept
    side = f"{finding.lung_side} " if concept.in_lung and finding.lung_side else ""
    ordered = sorted(f.label for f in result.findings)
    number = ordered.index(finding.label) + 1
    where = f"{side}{concept.site_name}"
    lines = [f"{segment_label(finding, concept)}, {where} - AI finding {number} of {len(ordered)}"]
    if finding.axial_long_axis_mm is not None and finding.short_axis_mm is not None:
        size = (
            f"Long axis {finding.axial_long_axis_mm:.1f} mm, short axis "
            f"{finding.short_axis_mm:.1f} mm (axial); 3-D long axis {finding.long_axis_mm:.1f} mm"
        )
    else:
        size = f"Long axis {finding.long_axis_mm:.1f} mm (3-D); short axis not measured"
    if finding.solid_component_long_axis_mm is not None:
        size += f"; solid component {finding.solid_component_long_axis_mm:.1f} mm"
    lines.append(size)
    lines.append(
        f"Volume {finding.volume_mm3:.0f} mm3, mean {finding.mean_hu:.0f} HU, "
        f"probability {100 * finding.probability:.1f}%"
    )
    model = result.model
    lines.append(f"Model {model.id} {model.version} ({model.name})")
    lines.append(NOT_FOR_DIAGNOSIS)
    return lines


def build_key_images(
    result: PreReadResult,
    source_datasets: SourceImages,
    labels: npt.NDArray[np.integer],
    hu: npt.NDArray[np.floating],
    *,
    series_number: int = 9003,
    uid_seed: str | None = None,
) -> KeyImageSeries | None:
    """One Secondary Capture per finding: its key slice, contour and text burned in.

    Args:
        result: the pre-read; its study, series and frame of reference must be the sources'.
        source_datasets: every image of the series read, any order: single-frame images or
            multi-frame images whose frames are the slices (headers only: pixel data are
            taken from ``hu``), or :class:`~preread.reports.series.OrderedSources` of them.
        labels: the label map the SEG is built from, ``[k, j, i]`` on the source grid.
        hu: the series as Hounsfield units on the same grid (the assembled volume's array;
            only the key slices are read).
        series_number: Series Number of the new series.
        uid_seed: see :mod:`preread.reports.uids`.

    Returns:
        The key images, or None when ``result`` has no findings.

    Raises:
        ReportError: the sources do not match the result, ``labels`` or ``hu`` do not fit
            them, or a finding has no voxel in ``labels``.
    """
    if not result.findings:
        return None
    sources = sources_for(result, source_datasets)
    if tuple(np.shape(hu)) != tuple(np.shape(labels)):
        raise ReportError(f"HU volume shape {np.shape(hu)} differs from the label map's")
    slices = key_slices(result, sources, labels)
    series_uid = report_uid(result, "sc-series", uid_seed=uid_seed)
    created = result.created
    datasets: list[Dataset] = []
    ordered = sorted(result.findings, key=lambda f: f.label)
    for number, finding in enumerate(ordered, start=1):
        k = slices[finding.label]
        source = sources[k]
        rendered = render_key_image(
            hu[k],
            labels[k] == finding.label,
            key_image_lines(result, finding),
            source.pixel_spacing,
            window=LUNG_WINDOW,
        )
        sop_uid = report_uid(result, f"sc-instance-{finding.label}", uid_seed=uid_seed)
        try:
            image = hd.sc.SCImage.from_ref_dataset(
                ref_dataset=source.dataset,
                pixel_array=rendered.rgb,
                photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
                bits_allocated=8,
                coordinate_system=hd.CoordinateSystemNames.PATIENT,
                series_instance_uid=series_uid,
                series_number=series_number,
                sop_instance_uid=sop_uid,
                instance_number=number,
                manufacturer=MANUFACTURER,
                # highdicom annotates tuple[int, int] here; PixelSpacing is DS (its __init__
                # takes floats)
                pixel_spacing=rendered.pixel_spacing_mm,  # type: ignore[arg-type]
                patient_orientation=_patient_orientation(source),
                transfer_syntax_uid=ExplicitVRLittleEndian,
                series_description=key_series_description(result, "key images"),
                manufacturer_model_name=lo(result.model.name),
                software_versions=lo(result.model.version),
                device_serial_number=lo(result.model.sha256 or result.model.id),
                content_date=created.date(),
                content_time=created.time(),
                series_date=created.date(),
                series_time=created.time(),
            )
        except (ValueError, TypeError) as exc:  # highdicom's checks of the inputs
            raise ReportError(
                f"cannot encode the key image of finding {finding.label}: {exc}"
            ) from exc
        image.BurnedInAnnotation = "YES"
        image.ImageLaterality = "B"  # an axial slice of the trunk shows both sides
        image.RecognizableVisualFeatures = "NO"
        image.LossyImageCompression = "00"
        image.SourceImageSequence = [_source_item(source)]
        image.DerivationDescription = lo(
            f"Lung window W{LUNG_WINDOW.width:g} L{LUNG_WINDOW.center:g}, AI contour and text"
        )
        image.ImageComments = (
            f"{NOT_FOR_DIAGNOSIS}. Contour: {segment_label(finding, result.concept)} of the "
            f"AI segmentation; source image {source.describe()}."
        )
        _fix_times(image, result)
        image.DateOfSecondaryCapture = DA(created.date())
        image.TimeOfSecondaryCapture = TM(created.time())
        datasets.append(image)
    return KeyImageSeries(
        series_instance_uid=series_uid,
        datasets=tuple(datasets),
        finding_labels=tuple(f.label for f in ordered),
    )


def build_kos(
    result: PreReadResult,
    source_datasets: SourceImages,
    labels: npt.NDArray[np.integer],
    *,
    series_number: int = 9004,
    uid_seed: str | None = None,
) -> EncodedSeries | None:
    """A Key Object Selection Document flagging each finding's key slice (see the module
    docstring); None when ``result`` has no findings.

    Raises:
        ReportError: the sources do not match the result, ``labels`` does not fit them, or a
            finding has no voxel in ``labels``.
    """
    if not result.findings:
        return None
    sources = sources_for(result, source_datasets)
    slices = key_slices(result, sources, labels)
    selected = [sources[k] for k in sorted(set(slices.values()))]
    instances = source_instances(selected)
    model = result.model
    n = len(result.findings)
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=device_uid(model),
        name=f"{model.name} (AI-generated, preliminary)",
        manufacturer_name=MANUFACTURER,
        model_name=f"{model.name} {model.version}",
        serial_number=model.sha256 or model.id,
    )
    description = (
        f"Selected by the AI model {model.name} {model.version} ({model.id}), not by a "
        f"radiologist: the CT slice through the centre of each of its {n} "
        f"{result.concept.name(n)} finding{'s' if n != 1 else ''}. {NOT_FOR_DIAGNOSIS}."
    )
    series_uid = report_uid(result, "kos-series", uid_seed=uid_seed)
    sop_uid = report_uid(result, "kos-instance", uid_seed=uid_seed)
    created = result.created
    try:
        content = hd.ko.KeyObjectSelection(
            document_title=KOS_TITLE,
            referenced_objects=instances,
            observer_device_context=hd.sr.ObserverContext(
                observer_type=codes.DEVICE, observer_identifying_attributes=device
            ),
            description=description,
        )
        _select_frames(content, selected)
        kos = hd.ko.KeyObjectSelectionDocument(
            evidence=instances,
            content=content,
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=sop_uid,
            instance_number=1,
            manufacturer=MANUFACTURER,
            transfer_syntax_uid=ExplicitVRLittleEndian,
            series_description=key_series_description(result, "key objects"),
            manufacturer_model_name=lo(model.name),
            software_versions=lo(model.version),
            device_serial_number=lo(model.sha256 or model.id),
            content_date=created.date(),
            content_time=created.time(),
            series_date=created.date(),
            series_time=created.time(),
        )
    except (ValueError, TypeError, AttributeError) as exc:  # highdicom's checks, missing tags
        raise ReportError(f"cannot encode the key object selection: {exc}") from exc
    _fix_times(kos, result)
    return EncodedSeries(dataset=kos, series_instance_uid=series_uid, sop_instance_uid=sop_uid)


def key_series_description(result: PreReadResult, what: str) -> str:
    """ "AI pre-read key images (preliminary) - <model id> <version>" (the prefix marks
    PreRead's own series: :func:`dicom_gateway.selection.is_preread_series`)."""
    model = result.model
    return lo(f"{PREREAD_SERIES_PREFIX} {what} (preliminary) - {model.id} {model.version}")


def _select_frames(content: hd.ko.KeyObjectSelection, selected: Sequence[SourceFrame]) -> None:
    """Name the key frames in the KOS's IMAGE item of each multi-frame image (highdicom's
    items reference whole instances): TID 2010 IMAGE items take Referenced Frame Numbers."""
    frames: dict[str, list[int]] = {}
    for source in selected:
        if source.frame_number is not None:
            frames.setdefault(source.sop_instance_uid, []).append(source.frame_number)
    items = content[0].ContentSequence
    for n, item in enumerate(items):
        if item.ValueType != "IMAGE":
            continue
        reference = item.ReferencedSOPSequence[0]
        numbers = frames.get(str(reference.ReferencedSOPInstanceUID))
        if numbers is None:
            continue
        # a slice: highdicom's ContentSequence.__setitem__ takes one item for an iterable
        items[n : n + 1] = [
            hd.sr.ImageContentItem(
                name=hd.sr.CodedConcept.from_dataset(item.ConceptNameCodeSequence[0]),
                referenced_sop_class_uid=str(reference.ReferencedSOPClassUID),
                referenced_sop_instance_uid=str(reference.ReferencedSOPInstanceUID),
                referenced_frame_numbers=sorted(numbers),
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        ]


def _check_grid(sources: Sequence[SourceFrame], labels: npt.NDArray[np.integer]) -> None:
    expected = (len(sources), int(sources[0].dataset.Rows), int(sources[0].dataset.Columns))
    if tuple(np.shape(labels)) != expected:
        raise ReportError(
            f"label map has shape {np.shape(labels)}, the {len(sources)} source images make a "
            f"volume of shape {expected}"
        )


_LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))  # LPS: +x left, +y posterior, +z head


def _patient_orientation(source: SourceFrame) -> tuple[str, str]:
    """Patient Orientation (PS3.3 C.7.6.1.1.1) of the rows and columns: the main direction of
    the slice's row and column cosines, one letter each (highdicom's enum)."""
    cosines = np.asarray([*source.row_direction, *source.column_direction], dtype=np.float64)

    def letter(direction: npt.NDArray[np.float64]) -> str:
        axis = int(np.abs(direction).argmax())
        return _LETTERS[axis][0 if direction[axis] > 0 else 1]

    return letter(cosines[:3]), letter(cosines[3:])


def _source_item(source: SourceFrame) -> Dataset:
    """Source Image Sequence item (PS3.3 C.7.6.1.1.4): the slice's instance and, in a
    multi-frame image, its frame."""
    item = Dataset()
    item.ReferencedSOPClassUID = source.sop_class_uid
    item.ReferencedSOPInstanceUID = source.sop_instance_uid
    if source.frame_number is not None:
        item.ReferencedFrameNumber = source.frame_number
    item.PurposeOfReferenceCodeSequence = [hd.sr.CodedConcept.from_code(_SOURCE_PURPOSE)]
    return item


def _fix_times(ds: Dataset, result: PreReadResult) -> None:
    """Instance Creation Date/Time from the result, like the content's (highdicom writes the
    clock's): a retry stores the same instance with the same dates."""
    ds.InstanceCreationDate = DA(result.created.date())
    ds.InstanceCreationTime = TM(result.created.time())
