"""Training annotations: DICOM SEG objects read onto the grid of the CT series they segment.

A Segmentation (PS3.3 A.51; Segmentation Image Module C.8.20.2) is accepted only when it provably
belongs to the CT volume: it references the CT series (Common Instance Reference Module,
C.12.2: ReferencedSeriesSequence; Derivation Image Functional Group, C.7.6.16.2.6: the source
instances of each frame), shares its FrameOfReferenceUID (C.7.4.1), and every frame lies on a CT
slice with the CT's orientation, pixel spacing and matrix (Plane Position, Plane Orientation and
Pixel Measures functional groups, C.7.6.16.2.1-3). Anything else raises :class:`AnnotationError`
naming the SEG file and the mismatch; a label is never silently misaligned.

Frames are read one by one from the Per-frame Functional Groups (Segment Identification,
C.8.20.3.1, and Plane Position), so highdicom SEGs (every frame, sorted) and dcmqi SEGs (only
non-empty frames, any order, segments interleaved) are read the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from dicom_gateway.errors import DicomFileError, SeriesError
from dicom_gateway.volume import assemble_volume, frame_item, read_instance
from preread.domain import Geometry, Volume
from training.errors import TrainingError

__all__ = [
    "AnnotatedCase",
    "AnnotationError",
    "LabelVolume",
    "Segment",
    "SegmentFilter",
    "SeriesRef",
    "labelled",
    "load_annotated_pairs",
    "read_segmentation",
]

ORIENTATION_TOL = 1e-3
PIXEL_SPACING_TOL_MM = 1e-3
GRID_TOL = 0.1
"""Largest distance of a SEG frame from a CT slice origin, as a fraction of the voxel size."""


class AnnotationError(TrainingError):
    """A SEG (or its case folder) cannot be turned into a trustworthy label volume."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class Segment:
    """One item of the SEG's SegmentSequence (PS3.3 C.8.20.2)."""

    number: int
    label: str
    property_category: str
    property_type: str


SegmentFilter = Callable[[Segment], bool]


def labelled(*labels: str) -> SegmentFilter:
    """A filter keeping the segments whose SegmentLabel is one of ``labels`` (any case)."""
    wanted = {label.casefold() for label in labels}
    return lambda segment: segment.label.casefold() in wanted


@dataclass(frozen=True)
class SeriesRef:
    """What identifies a CT series to a SEG: its UIDs and its instances."""

    series_uid: str
    frame_of_reference_uid: str
    sop_instance_uids: frozenset[str]

    @classmethod
    def from_datasets(cls, datasets: Sequence[Dataset]) -> SeriesRef:
        """The reference of the series whose instances are ``datasets`` (headers suffice)."""
        return cls(
            series_uid=str(datasets[0].get("SeriesInstanceUID", "")),
            frame_of_reference_uid=str(datasets[0].get("FrameOfReferenceUID", "")),
            sop_instance_uids=frozenset(str(ds.get("SOPInstanceUID", "")) for ds in datasets),
        )


@dataclass(frozen=True)
class LabelVolume:
    """Segment numbers on a CT grid: ``labels[k, j, i]`` is 0 (background) or a segment number.

    ``fractional`` says the SEG was FRACTIONAL and was thresholded at half its maximum value.
    """

    labels: npt.NDArray[np.uint8]
    segment_names: dict[int, str]
    source: Path
    fractional: bool


@dataclass(frozen=True)
class AnnotatedCase:
    """One CT volume with one SEG read onto it."""

    case_id: str
    image: Volume
    label: LabelVolume
    ct_dir: Path
    seg_path: Path


def read_segmentation(
    seg_path: Path,
    ct: Volume,
    reference: SeriesRef,
    *,
    segment_filter: SegmentFilter | None = None,
) -> LabelVolume:
    """Read a BINARY or FRACTIONAL SEG onto the grid of ``ct``.

    Args:
        seg_path: the SEG file.
        ct: the CT volume, as :func:`dicom_gateway.volume.assemble_volume` made it.
        reference: the CT series' UIDs (:meth:`SeriesRef.from_datasets`).
        segment_filter: which segments to keep (default: all); see :func:`labelled`.

    Returns:
        The kept segments merged into one uint8 label volume, value = segment number;
        ``segment_names`` lists the kept segments only.

    Raises:
        AnnotationError: the file is no readable SEG, does not reference the CT series or its
            frame of reference, a frame lies off the CT grid, kept segments overlap, or the
            filter keeps no segment. The message names ``seg_path``.
    """
    try:
        ds = read_instance(seg_path)
    except DicomFileError as exc:
        raise AnnotationError(seg_path, exc.reason) from exc
    try:
        return _label_volume(ds, seg_path, ct, reference, segment_filter)
    except AnnotationError:
        raise
    except Exception as exc:  # malformed values in an untrusted header
        raise AnnotationError(
            seg_path, f"unreadable SEG header ({type(exc).__name__}: {exc})"
        ) from exc


def _label_volume(
    ds: Dataset,
    seg_path: Path,
    ct: Volume,
    reference: SeriesRef,
    segment_filter: SegmentFilter | None,
) -> LabelVolume:
    def refuse(reason: str) -> AnnotationError:
        return AnnotationError(seg_path, reason)

    if ds.get("Modality") != "SEG":
        raise refuse(f"Modality is '{ds.get('Modality', '')}', not SEG")
    kind = str(ds.get("SegmentationType", ""))
    if kind not in ("BINARY", "FRACTIONAL"):
        raise refuse(f"SegmentationType '{kind}' is not supported (BINARY or FRACTIONAL)")
    _check_series_reference(ds, reference, refuse)
    segment_of_reference = str(ds.get("FrameOfReferenceUID", ""))
    if segment_of_reference != reference.frame_of_reference_uid:
        raise refuse(
            f"FrameOfReferenceUID {segment_of_reference or '<none>'} differs from "
            f"{reference.frame_of_reference_uid} of CT series {reference.series_uid}"
        )
    segments = _segments(ds, refuse)
    kept = {n: s for n, s in segments.items() if segment_filter is None or segment_filter(s)}
    if not kept:
        names = ", ".join(f"{n} '{s.label}'" for n, s in sorted(segments.items()))
        raise refuse(f"the segment filter keeps none of the segments ({names})")
    frames = _frame_pixels(ds, refuse)
    threshold = 0.5 * float(ds.get("MaximumFractionalValue", 255)) if kind == "FRACTIONAL" else 0.5
    masks = {n: np.zeros(ct.geometry.shape, dtype=bool) for n in kept}
    placed: dict[tuple[int, int], int] = {}
    for f in range(frames.shape[0]):
        number = _frame_segment(ds, f, segments, refuse)
        k = _frame_slice(ds, f, ct.geometry, reference.series_uid, refuse)
        if (number, k) in placed:
            raise refuse(
                f"frames {placed[number, k] + 1} and {f + 1} of segment {number} both lie on "
                f"CT slice {k}"
            )
        placed[number, k] = f
        if number in masks:
            masks[number][k] = frames[f] >= threshold
    labels = np.zeros(ct.geometry.shape, dtype=np.uint8)
    for number, mask in sorted(masks.items()):
        overlap = int(np.count_nonzero(mask & (labels > 0)))
        if overlap:
            others = sorted({int(v) for v in np.unique(labels[mask]) if v})
            raise refuse(
                f"segment {number} overlaps segment(s) {others} in {overlap} voxels; pass a "
                "segment_filter that keeps non-overlapping segments"
            )
        labels[mask] = number
    return LabelVolume(
        labels=labels,
        segment_names={n: s.label for n, s in sorted(kept.items())},
        source=seg_path,
        fractional=kind == "FRACTIONAL",
    )


def _check_series_reference(
    ds: Dataset, reference: SeriesRef, refuse: Callable[[str], AnnotationError]
) -> None:
    """The SEG names the CT series, and each frame derives from instances of it."""
    series = {
        str(item.get("SeriesInstanceUID", "")): item
        for item in ds.get("ReferencedSeriesSequence", [])
    }
    if series and reference.series_uid not in series:
        raise refuse(
            f"references series {', '.join(sorted(series))}, not CT series {reference.series_uid}"
        )
    listed = {
        str(item.get("ReferencedSOPInstanceUID", ""))
        for item in series.get(reference.series_uid, Dataset()).get(
            "ReferencedInstanceSequence", []
        )
    }
    foreign = sorted(listed - reference.sop_instance_uids)
    if foreign:
        raise refuse(
            f"references {len(foreign)} instance(s) not in CT series {reference.series_uid}, "
            f"e.g. {foreign[0]}"
        )
    derived = False
    for f in range(int(ds.get("NumberOfFrames") or 1)):
        derivation = frame_item(ds, f, "DerivationImageSequence")
        for source in derivation.get("SourceImageSequence", []) if derivation else []:
            derived = True
            uid = str(source.get("ReferencedSOPInstanceUID", ""))
            if uid not in reference.sop_instance_uids:
                raise refuse(
                    f"frame {f + 1} derives from instance {uid}, which is not in CT series "
                    f"{reference.series_uid}"
                )
    if not series and not derived:
        raise refuse(
            "references no source series (no ReferencedSeriesSequence and no frame "
            "DerivationImageSequence)"
        )


def _segments(ds: Dataset, refuse: Callable[[str], AnnotationError]) -> dict[int, Segment]:
    segments = {}
    for item in ds.get("SegmentSequence", []):
        number = int(item.SegmentNumber)
        if not 1 <= number <= 255:
            raise refuse(f"segment number {number} does not fit a uint8 label volume")
        category = item.get("SegmentedPropertyCategoryCodeSequence") or [Dataset()]
        kind = item.get("SegmentedPropertyTypeCodeSequence") or [Dataset()]
        segments[number] = Segment(
            number=number,
            label=str(item.get("SegmentLabel", "")),
            property_category=str(category[0].get("CodeMeaning", "")),
            property_type=str(kind[0].get("CodeMeaning", "")),
        )
    if not segments:
        raise refuse("has an empty SegmentSequence")
    return segments


def _frame_pixels(ds: Dataset, refuse: Callable[[str], AnnotationError]) -> npt.NDArray[np.generic]:
    frames = int(ds.get("NumberOfFrames") or 1)
    try:
        array = np.asarray(ds.pixel_array)
    except Exception as exc:  # any decoder failure
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
        raise refuse(f"cannot decode pixel data ({syntax}): {type(exc).__name__}: {exc}") from exc
    shape = (frames, int(ds.Rows), int(ds.Columns))
    if array.size != np.prod(shape):
        raise refuse(f"pixel data has shape {array.shape}, expected {shape}")
    return array.reshape(shape)


def _frame_segment(
    ds: Dataset, f: int, segments: dict[int, Segment], refuse: Callable[[str], AnnotationError]
) -> int:
    item = frame_item(ds, f, "SegmentIdentificationSequence")
    if item is None or "ReferencedSegmentNumber" not in item:
        raise refuse(f"frame {f + 1} has no SegmentIdentificationSequence")
    number = int(item.ReferencedSegmentNumber)
    if number not in segments:
        raise refuse(f"frame {f + 1} refers to segment {number}, absent from SegmentSequence")
    return number


def _frame_slice(
    ds: Dataset, f: int, grid: Geometry, series_uid: str, refuse: Callable[[str], AnnotationError]
) -> int:
    """The CT slice that frame ``f`` lies on, or refuse."""
    orientation = frame_item(ds, f, "PlaneOrientationSequence")
    iop = orientation.get("ImageOrientationPatient") if orientation else None
    if iop is None or np.abs(np.subtract(iop, grid.image_orientation)).max() > ORIENTATION_TOL:
        raise refuse(
            f"frame {f + 1} has ImageOrientationPatient {iop and [float(v) for v in iop]}, CT "
            f"series {series_uid} has {[round(v, 6) for v in grid.image_orientation]}"
        )
    measures = frame_item(ds, f, "PixelMeasuresSequence")
    spacing = measures.get("PixelSpacing") if measures else None
    if spacing is None or np.abs(np.subtract(spacing, grid.spacing[1:])).max() > (
        PIXEL_SPACING_TOL_MM
    ):
        raise refuse(
            f"frame {f + 1} has PixelSpacing {spacing and [float(v) for v in spacing]} mm, CT "
            f"series {series_uid} has {list(grid.spacing[1:])} mm"
        )
    if (int(ds.Rows), int(ds.Columns)) != grid.shape[1:]:
        raise refuse(
            f"frames are {ds.Rows}×{ds.Columns}, CT series {series_uid} slices are "
            f"{grid.shape[1]}×{grid.shape[2]}"
        )
    position = frame_item(ds, f, "PlanePositionSequence")
    ipp = position.get("ImagePositionPatient") if position else None
    if ipp is None:
        raise refuse(f"frame {f + 1} has no ImagePositionPatient (PlanePositionSequence)")
    point = np.asarray([float(v) for v in ipp])
    index = grid.lps_to_index(point)
    k = int(np.clip(np.rint(index[0]), 0, grid.shape[0] - 1))
    nearest = np.asarray(grid.slice_position(k))
    where = f"(ImagePositionPatient {[round(float(v), 2) for v in point]})"
    if abs(index[0] - k) > GRID_TOL:
        normal = np.asarray(grid.slice_direction)
        axis = int(np.argmax(np.abs(normal)))
        name, at, near = (
            ("xyz"[axis], point[axis], nearest[axis])
            if abs(normal[axis]) > 0.99
            else ("position along the slice normal ", point @ normal, nearest @ normal)
        )
        raise refuse(
            f"frame {f + 1} at {name}={at:.2f} mm {where} lies on no slice of CT series "
            f"{series_uid} (nearest {near:.2f} mm, slice {k})"
        )
    if np.abs(index[1:]).max() > GRID_TOL:
        offset = float(np.linalg.norm(point - nearest))
        raise refuse(
            f"frame {f + 1} {where} is offset {offset:.2f} mm within the image plane from slice "
            f"{k} of CT series {series_uid} (at {[round(float(v), 2) for v in nearest]}), so "
            "its pixels do not lie on the CT voxels"
        )
    return k


def load_annotated_pairs(
    folder: Path, *, segment_filter: SegmentFilter | None = None
) -> list[AnnotatedCase]:
    """Every (CT series, SEG) pair under ``folder``, one case per sub-folder.

    A case folder holds the CT instances (any names, any depth) and one or more SEG files;
    files are told apart by their headers. Files directly in ``folder`` are ignored, as are
    hidden files, DICOMDIRs and side files that are not DICOM (no "DICM" prefix and no
    SOPInstanceUID, e.g. truth.json); a file with the DICM prefix that cannot be read is
    refused. A case with several SEGs gives one :class:`AnnotatedCase` per SEG, with
    ``case_id`` "<folder>/<SEG path without suffix>".

    Raises:
        AnnotationError: no case folder, a case without SEG, a broken DICOM file, a SEG
            whose referenced series is not in its case folder, a CT series that cannot be
            assembled, or any :func:`read_segmentation` refusal.
    """
    cases = sorted(d for d in Path(folder).iterdir() if d.is_dir() and not d.name.startswith("."))
    if not cases:
        raise AnnotationError(folder, "holds no case folders")
    return [pair for case in cases for pair in _load_case(case, segment_filter)]


def _load_case(case: Path, segment_filter: SegmentFilter | None) -> list[AnnotatedCase]:
    segs: dict[Path, Dataset] = {}
    series: dict[str, dict[Path, Dataset]] = {}
    for file in sorted(case.rglob("*")):
        if not file.is_file() or file.name.startswith(".") or file.name.upper() == "DICOMDIR":
            continue
        try:
            header = read_instance(file, stop_before_pixels=True)
        except DicomFileError as exc:
            if not _has_dicom_prefix(file):
                continue  # a side file such as truth.json: not DICOM at all
            raise AnnotationError(file, exc.reason) from exc
        if header.get("Modality") == "SEG":
            segs[file] = header
        else:
            series.setdefault(str(header.get("SeriesInstanceUID", "")), {})[file] = header
    if not segs:
        raise AnnotationError(case, "case folder holds no SEG file (Modality SEG)")
    loaded: dict[str, tuple[Volume, SeriesRef, Path]] = {}
    pairs = []
    for seg_path, header in segs.items():
        uid = _referenced_series(seg_path, header, series)
        if uid not in loaded:
            loaded[uid] = _load_ct(case, uid, list(series[uid]))
        image, reference, ct_dir = loaded[uid]
        label = read_segmentation(seg_path, image, reference, segment_filter=segment_filter)
        case_id = case.name
        if len(segs) > 1:
            case_id = f"{case.name}/{seg_path.relative_to(case).with_suffix('').as_posix()}"
        pairs.append(AnnotatedCase(case_id, image, label, ct_dir, seg_path))
    return pairs


def _has_dicom_prefix(path: Path) -> bool:
    """Whether the file starts with the PS3.10 preamble and "DICM" prefix (PS3.10 7.1)."""
    with path.open("rb") as file:
        return file.read(132)[128:] == b"DICM"


def _referenced_series(seg_path: Path, seg: Dataset, series: dict[str, dict[Path, Dataset]]) -> str:
    """The one series of the case folder that the SEG references."""
    named = {
        str(item.get("SeriesInstanceUID", "")) for item in seg.get("ReferencedSeriesSequence", [])
    }
    sources = {
        str(source.get("ReferencedSOPInstanceUID", ""))
        for group in seg.get("PerFrameFunctionalGroupsSequence", [])
        for derivation in group.get("DerivationImageSequence", [])
        for source in derivation.get("SourceImageSequence", [])
    }
    for uid, headers in series.items():
        if sources & {str(ds.get("SOPInstanceUID", "")) for ds in headers.values()}:
            named.add(uid)
    present = sorted(named & series.keys())
    if len(present) != 1:
        raise AnnotationError(
            seg_path,
            f"references series {sorted(named) or 'none'}; the case folder {seg_path.parent} "
            f"holds series {sorted(series) or 'none'}"
            + (" (more than one referenced series is present)" if present else ""),
        )
    return present[0]


def _load_ct(case: Path, uid: str, files: list[Path]) -> tuple[Volume, SeriesRef, Path]:
    datasets = []
    for file in files:
        try:
            datasets.append(read_instance(file))
        except DicomFileError as exc:
            raise AnnotationError(file, exc.reason) from exc
    ct_dir = Path(os.path.commonpath(files)) if len(files) > 1 else files[0].parent
    try:
        image = assemble_volume(datasets)
    except SeriesError as exc:
        raise AnnotationError(ct_dir, f"CT series cannot be assembled: {exc}") from exc
    return image, SeriesRef.from_datasets(datasets), ct_dir
