"""Assemble the instances of one CT series into a :class:`~preread.domain.Volume`.

Patient geometry follows DICOM PS3.3 C.7.6.2 (Image Plane Module): ImagePositionPatient is the
centre of the first transmitted pixel, ImageOrientationPatient the row then column direction
cosines, PixelSpacing the (row spacing, column spacing). Multi-frame instances (Enhanced CT,
Legacy Converted Enhanced CT) carry the same attributes per frame in functional groups, PS3.3
C.7.6.16 (Multi-frame Functional Groups Module): Plane Position, Plane Orientation, Pixel
Measures and Pixel Value Transformation (C.7.6.16.2.1-3, C.7.6.16.2.9). Stored values become
Hounsfield units through RescaleSlope and RescaleIntercept (PS3.3 C.11.1.1.2), per slice.

Slices are sorted along the slice normal ``n = row × column``, so ``k`` grows along ``n``. A
series whose geometry cannot be described by one affine (mixed orientations, gantry tilt,
uneven or missing slices, duplicates) is refused with :class:`SeriesError`, never resampled.
:func:`slice_planes` gives the same order from the headers alone (which instance and frame is
slice ``k``): what the SR, SEG and key images reference.

Headers are untrusted: sizes, spacings, rescale values and the kind of instance are checked
(:mod:`dicom_gateway.checks`, bounded by :class:`~dicom_gateway.checks.SeriesLimits`) before a
frame is parsed, a volume allocated or a pixel decoded.
"""

from __future__ import annotations

import io
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicom_gateway.checks import (
    PIXEL_KEYWORDS,
    SeriesLimits,
    check_frame_of_reference,
    check_instance_kinds,
    check_rescale,
    check_series_size,
    check_spacing,
    frame_count,
    header_errors,
    instance_label,
)
from dicom_gateway.errors import DicomFileError, SeriesError
from dicom_gateway.pixels import decode_frames
from preread.domain import Geometry, Volume

__all__ = [
    "Plane",
    "assemble_volume",
    "frame_item",
    "read_instance",
    "read_series_dir",
    "slice_planes",
]

ORIENTATION_TOL = 1e-3
"""Largest difference allowed between direction cosines that are meant to be equal."""
PIXEL_SPACING_TOL_MM = 1e-3
STEP_TOL = 0.05
"""Largest relative deviation of one slice step from the median step."""
GRID_TOL = 0.1
"""Largest distance of a slice from the affine's prediction, as a fraction of a voxel."""
DUPLICATE_TOL_MM = 0.01
_UNDEFINED_LENGTH = 0xFFFFFFFF
DEFAULT_LIMITS = SeriesLimits()


@dataclass(frozen=True)
class Plane:
    """One 2-D image (a single-frame instance, or one frame of a multi-frame instance) and its
    plane geometry, read from the instance or, for a multi-frame one, from the functional
    groups that apply to the frame (:func:`frame_item`)."""

    #: "instance <SOPInstanceUID> [frame <n>] (file <path>)", for refusals
    label: str
    #: index of the instance in the datasets given
    dataset: int
    #: 0-based index of the frame in the instance (0 for a single-frame instance)
    frame: int
    #: whether the instance carries functional groups (PS3.3 C.7.6.16): a multi-frame image,
    #: whose frames are referenced by number
    multi_frame: bool
    #: ImagePositionPatient (mm) and ImageOrientationPatient (row, then column cosines)
    position: npt.NDArray[np.float64]
    orientation: npt.NDArray[np.float64]
    pixel_spacing: tuple[float, float]
    matrix: tuple[int, int]
    slope: float
    intercept: float
    #: SpacingBetweenSlices, else SliceThickness (mm)
    thickness: float | None

    @property
    def frame_number(self) -> int | None:
        """The frame's number in a multi-frame image, as a Referenced Frame Number (0008,1160)
        gives it (1 for the first frame, PS3.3 C.7.6.6); None for a single-frame image."""
        return self.frame + 1 if self.multi_frame else None


class _BoundedReader(io.BufferedReader):
    """A file whose ``read(n)`` never asks for more bytes than are left in it.

    pydicom reads a value with ``read(length)`` of the length the file declares, and a
    buffered file allocates ``length`` bytes before reading: a 200-byte file whose garbage
    declares 0xFFFFFFF0 bytes would cost 4 GiB of address space (MemoryError under a limit).
    """

    def __init__(self, path: Path) -> None:
        super().__init__(io.FileIO(str(path), "r"))  # a str name: ds.filename, in reasons
        self._size = os.fstat(self.fileno()).st_size

    def read(self, size: int | None = -1, /) -> bytes:
        if size is not None and size > 0:
            size = min(size, max(0, self._size - self.tell()))
        return super().read(size)


def read_instance(path: Path, *, stop_before_pixels: bool = False) -> Dataset:
    """Read one DICOM file (PS3.10), also one without the 128-byte preamble.

    A file without File Meta Information (PS3.10 7.1; old software wrote such files) gets the
    uncompressed transfer syntax it was read in, so that its pixel data can be decoded.

    Raises:
        DicomFileError: the file cannot be parsed, is cut short (an element declares more bytes
            than the file holds), or is not a composite instance (it has no SOPInstanceUID).
    """
    try:
        with _BoundedReader(path) as fp:
            ds = pydicom.dcmread(fp, force=True, stop_before_pixels=stop_before_pixels)
        sop_uid = ds.get("SOPInstanceUID")
        if sop_uid and "TransferSyntaxUID" not in ds.file_meta:
            implicit, little = ds.original_encoding
            ds.file_meta.TransferSyntaxUID = (
                ImplicitVRLittleEndian
                if implicit
                else ExplicitVRLittleEndian
                if little
                else ExplicitVRBigEndian
            )
    except Exception as exc:  # untrusted bytes: any parser failure (even RecursionError)
        raise DicomFileError(
            path, f"not a readable DICOM file ({type(exc).__name__}: {exc})"
        ) from exc
    if not sop_uid:
        raise DicomFileError(path, "not a DICOM instance (no SOPInstanceUID)")
    _check_complete(ds, path)
    _check_values(ds, path)
    return ds


def _check_complete(ds: Dataset, path: Path) -> None:
    """Refuse a file cut short: pydicom reads what is there when an element's declared length
    runs past the end of the file (a truncated copy, or a forged length such as 0x7FFFFFF0)."""
    for tag in list(ds.keys()):
        element = ds.get_item(tag, keep_deferred=True)  # no conversion of an empty value
        if not isinstance(element, RawDataElement) or element.length == _UNDEFINED_LENGTH:
            continue
        held = 0 if element.value is None else len(element.value)
        if held < element.length:
            raise DicomFileError(
                path,
                f"the file is cut short: element {tag} declares {element.length} bytes, the file "
                f"holds {held}",
            )


def _check_values(ds: Dataset, path: Path) -> None:
    """Refuse a file with a top-level value that cannot be decoded (an unknown VR such as
    ``XX``, one bit flipped in ``OW``, a value that does not fit its VR): pydicom decodes values
    when they are first used, and the first use may lie outside every check (grouping a
    folder by study and series, or asking whether an element is empty)."""
    for tag in list(ds.keys()):
        element = ds.get_item(tag, keep_deferred=True)
        if not isinstance(element, RawDataElement) or element.VR == "SQ":
            continue  # sequences are read item by item where they are used, under checks
        try:  # pixel data too: their bytes are kept as they are (decoded later, under checks)
            ds[tag]
        except Exception as exc:  # untrusted bytes: any decoder failure
            raise DicomFileError(
                path,
                f"element {tag} (VR {element.VR!r}, {element.length} bytes) cannot be read "
                f"({type(exc).__name__}: {exc})",
            ) from exc


def read_series_dir(path: Path, *, min_slices: int = 2) -> Volume:
    """Read every file under ``path`` (one series; sub-folders included) into a volume.

    Hidden files and DICOMDIR files (PS3.10 media directories) are skipped.

    Raises:
        DicomFileError: a file that is not a readable DICOM instance.
        SeriesError: see :func:`assemble_volume`; also when the folder holds no file.
    """
    datasets = [
        read_instance(file)
        for file in sorted(Path(path).rglob("*"))
        if file.is_file() and not file.name.startswith(".") and file.name.upper() != "DICOMDIR"
    ]
    if not datasets:
        raise SeriesError("", f"folder {path} holds no DICOM instance")
    return assemble_volume(datasets, min_slices=min_slices)


def frame_item(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """The functional group macro item ``sequence`` that applies to ``frame`` (0-based).

    The Per-frame Functional Groups item wins over the Shared one (PS3.3 C.7.6.16.1); ``None``
    when neither holds ``sequence``.
    """
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame < len(per_frame):
        items = per_frame[frame].get(sequence)
        if items:
            item: Dataset = items[0]
            return item
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        items = shared[0].get(sequence)
        if items:
            shared_item: Dataset = items[0]
            return shared_item
    return None


def assemble_volume(
    datasets: Sequence[Dataset],
    *,
    min_slices: int = 2,
    release_pixel_data: bool = False,
    timings: dict[str, float] | None = None,
    limits: SeriesLimits = DEFAULT_LIMITS,
) -> Volume:
    """Stack the instances of one series into a float32 HU volume with its geometry.

    Args:
        datasets: every instance of the series, in any order; single-frame images and/or
            multi-frame images with functional groups.
        min_slices: fewest slices accepted. With one slice the slice spacing is
            SpacingBetweenSlices, else SliceThickness, else 1 mm.
        release_pixel_data: delete each instance's pixel data (and pydicom's decoded copy)
            once its frames are in the volume, so that a series is never held three times
            (encoded, decoded, in HU); the datasets keep every other attribute. Done only
            after the geometry checks passed.
        timings: when given, receives ``decode`` (seconds spent decoding pixel data) and
            ``volume`` (everything else: headers, checks, rescaling, stacking).
        limits: slices, bytes and geometry a series may have; checked on the headers before
            any frame is parsed or decoded and before the volume is allocated.

    Returns:
        A :class:`Volume` whose ``array[k, j, i]`` is HU and whose geometry maps each voxel
        onto the ImagePositionPatient of its slice.

    Raises:
        SeriesError: mixed series (also mixed modalities, or a non-CT SOP class labelled
            CT), missing or undecodable pixel data, sizes that do not match the pixel data,
            a series beyond ``limits``, not monochrome, missing or implausible rescale values
            (for CT) or spacings, inconsistent orientation / pixel spacing / matrix,
            duplicate or unevenly spaced slices, gantry tilt, or fewer than ``min_slices``
            slices. The message names the series, the instance and its file, the problem and
            the numbers.
    """
    if not datasets:
        raise SeriesError("", "no instances given")
    started = time.perf_counter()
    decoding = 0.0
    uids = sorted({str(ds.get("SeriesInstanceUID", "")) for ds in datasets})
    uid = str(datasets[0].get("SeriesInstanceUID", ""))
    if len(uids) > 1:
        raise SeriesError(uid, f"instances of {len(uids)} series are mixed: {', '.join(uids)}")
    if not uid:
        raise SeriesError("", f"{len(datasets)} instance(s) have no SeriesInstanceUID")
    if len(datasets) > limits.max_slices:
        raise SeriesError(
            uid,
            f"{len(datasets)} instances, more than the limit of {limits.max_slices} slices "
            "per series",
        )
    with header_errors(uid, -1, None):
        check_instance_kinds(datasets, uid)
    check_series_size(datasets, uid, limits)
    sops = Counter(_sop(ds, index) for index, ds in enumerate(datasets))
    repeated = [f"{sop} ({n} times)" for sop, n in sops.items() if n > 1]
    if repeated:
        raise SeriesError(uid, f"the same instance is given more than once: {', '.join(repeated)}")
    ct = str(datasets[0].get("Modality", "")).strip() == "CT"
    planes = [p for index, ds in enumerate(datasets) for p in _planes(ds, index, uid, ct, limits)]
    check_frame_of_reference(datasets, uid)
    planes, geometry = _grid(planes, uid, min_slices, limits)
    slices: dict[int, list[tuple[int, Plane]]] = {}
    for k, plane in enumerate(planes):
        slices.setdefault(plane.dataset, []).append((k, plane))
    array = np.empty(geometry.shape, dtype=np.float32)
    floats = False  # integers within the checked slope and intercept always give finite HU
    for index, ds in enumerate(datasets):  # one instance decoded at a time
        t0 = time.perf_counter()
        frames = decode_frames(ds, index, uid)
        decoding += time.perf_counter() - t0
        floats = floats or frames.dtype.kind == "f"
        for k, plane in slices[index]:
            array[k] = frames[plane.frame].astype(np.float64) * plane.slope + plane.intercept
        del frames
        if release_pixel_data:
            for keyword in PIXEL_KEYWORDS:
                if keyword in ds:
                    delattr(ds, keyword)  # pydicom drops its cached pixel_array with it
    if floats and not np.isfinite(array).all():  # Float Pixel Data may hold NaN or infinity
        raise SeriesError(uid, "pixel data holds non-finite values (NaN or infinity)")
    if timings is not None:
        timings["decode"] = decoding
        timings["volume"] = time.perf_counter() - started - decoding
    return Volume(array=array, geometry=geometry)


def slice_planes(
    datasets: Sequence[Dataset], *, limits: SeriesLimits = DEFAULT_LIMITS
) -> list[Plane]:
    """The slices of a series in array order, from the headers alone: ``planes[k]`` is the
    image (instance ``datasets[planes[k].dataset]``, frame ``planes[k].frame``) that
    :func:`assemble_volume` puts at ``array[k]``.

    Every frame of a multi-frame image is a slice, placed by the functional groups that apply
    to it. Pixel data are not needed (an instance whose pixel data were released serves). The
    planes' geometry is checked as :func:`assemble_volume` checks it (one orientation, one
    regular grid, no tilt); what concerns pixel data and the series as a whole is not.

    Raises:
        SeriesError: no instances, or headers that do not give every slice its place on one
            regular grid (the message names the instance and frame).
    """
    if not datasets:
        raise SeriesError("", "no instances given")
    uid = str(datasets[0].get("SeriesInstanceUID", ""))
    ct = str(datasets[0].get("Modality", "")).strip() == "CT"
    planes = [p for index, ds in enumerate(datasets) for p in _planes(ds, index, uid, ct, limits)]
    ordered, _ = _grid(planes, uid, 1, limits)
    return ordered


def _sop(ds: Dataset, index: int) -> str:
    return str(ds.get("SOPInstanceUID", "")) or f"#{index}"


def _planes(ds: Dataset, index: int, uid: str, ct: bool, limits: SeriesLimits) -> list[Plane]:
    with header_errors(uid, index, ds):
        return _read_planes(ds, index, uid, ct, limits)


def _read_planes(ds: Dataset, index: int, uid: str, ct: bool, limits: SeriesLimits) -> list[Plane]:
    sop = instance_label(ds, index)
    if "ModalityLUTSequence" in ds and "RescaleSlope" not in ds:
        raise SeriesError(uid, f"{sop} uses a Modality LUT Sequence, not supported")
    matrix = (int(ds.Rows), int(ds.Columns))
    n_frames = frame_count(ds, index, uid, limits)  # bounded before any frame is parsed
    functional = "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds
    if not functional and n_frames != 1:
        raise SeriesError(
            uid,
            f"{sop} has {n_frames} frames but no functional groups giving each "
            "frame's position (PerFrameFunctionalGroupsSequence)",
        )
    planes = []
    for frame in range(n_frames):
        label = sop + (f" frame {frame + 1}" if n_frames > 1 else "")
        items = [ds]
        if functional:
            items = [
                item
                for name in (
                    "PlanePositionSequence",
                    "PlaneOrientationSequence",
                    "PixelMeasuresSequence",
                    "PixelValueTransformationSequence",
                    "CTAcquisitionDetailsSequence",
                    "UnassignedPerFrameConvertedAttributesSequence",
                    "UnassignedSharedConvertedAttributesSequence",
                )
                if (item := frame_item(ds, frame, name)) is not None
            ] + [ds]
        planes.append(_plane(items, label, index, frame, functional, matrix, uid, ct, limits))
    return planes


def _find(items: Sequence[Dataset], keyword: str) -> Any:
    """The first non-empty value of ``keyword`` in ``items`` (DICOM values are dynamic)."""
    for item in items:
        value = item.get(keyword)
        if value is not None and value != "":
            return value
    return None


def _floats(value: Any, count: int, what: str, label: str, uid: str) -> list[float]:
    if value is None:
        raise SeriesError(uid, f"{label} has no {what}")
    many = isinstance(value, Sequence | np.ndarray) and not isinstance(value, str | bytes)
    floats = [float(v) for v in value] if many else [float(value)]
    if len(floats) != count or not all(np.isfinite(floats)):
        raise SeriesError(uid, f"{label} has an invalid {what}: {floats}")
    return floats


def _plane(
    items: Sequence[Dataset],
    label: str,
    index: int,
    frame: int,
    multi_frame: bool,
    matrix: tuple[int, int],
    uid: str,
    ct: bool,
    limits: SeriesLimits,
) -> Plane:
    tilt = _find(items, "GantryDetectorTilt")
    if tilt is not None and abs(float(tilt)) > 1e-3:
        raise SeriesError(uid, f"{label} was acquired with GantryDetectorTilt {tilt} degrees")
    position = _floats(_find(items, "ImagePositionPatient"), 3, "ImagePositionPatient", label, uid)
    if max(abs(v) for v in position) > limits.max_abs_position_mm:
        raise SeriesError(
            uid,
            f"{label} has ImagePositionPatient {position} mm, beyond "
            f"{limits.max_abs_position_mm:g} mm from the origin",
        )
    orientation = _floats(
        _find(items, "ImageOrientationPatient"), 6, "ImageOrientationPatient", label, uid
    )
    spacing = _floats(_find(items, "PixelSpacing"), 2, "PixelSpacing", label, uid)
    if min(spacing) <= 0:
        raise SeriesError(uid, f"{label} has a non-positive PixelSpacing {spacing}")
    for value in spacing:
        check_spacing(value, "PixelSpacing", label, uid, limits)
    fov = (matrix[0] * spacing[0], matrix[1] * spacing[1])
    if max(fov) > limits.max_field_of_view_mm:
        raise SeriesError(
            uid,
            f"{label} covers {fov[0]:g} x {fov[1]:g} mm (Rows {matrix[0]} x PixelSpacing "
            f"{spacing[0]:g}, Columns {matrix[1]} x {spacing[1]:g}), more than the plausible "
            f"{limits.max_field_of_view_mm:g} mm",
        )
    raw_slope = _find(items, "RescaleSlope")
    raw_intercept = _find(items, "RescaleIntercept")
    slope, intercept = check_rescale(
        None if raw_slope is None else _floats(raw_slope, 1, "RescaleSlope", label, uid)[0],
        None
        if raw_intercept is None
        else _floats(raw_intercept, 1, "RescaleIntercept", label, uid)[0],
        label,
        uid,
        ct=ct,
    )
    thickness = _find(items, "SpacingBetweenSlices") or _find(items, "SliceThickness")
    return Plane(
        label=label,
        dataset=index,
        frame=frame,
        multi_frame=multi_frame,
        position=np.asarray(position),
        orientation=np.asarray(orientation),
        pixel_spacing=(spacing[0], spacing[1]),
        matrix=matrix,
        slope=slope,
        intercept=intercept,
        thickness=None if thickness is None else abs(float(thickness)),
    )


def _grid(
    planes: list[Plane], uid: str, min_slices: int, limits: SeriesLimits
) -> tuple[list[Plane], Geometry]:
    """Check that the planes form one regular grid; return them sorted along the normal."""
    if len(planes) < min_slices:
        raise SeriesError(uid, f"{len(planes)} slice(s), at least {min_slices} needed")
    first = planes[0]
    for plane in planes[1:]:
        if np.abs(plane.orientation - first.orientation).max() > ORIENTATION_TOL:
            raise SeriesError(
                uid,
                f"orientation differs between slices: {first.label} has ImageOrientationPatient "
                f"{first.orientation.tolist()}, {plane.label} has {plane.orientation.tolist()}",
            )
        if np.abs(np.subtract(plane.pixel_spacing, first.pixel_spacing)).max() > (
            PIXEL_SPACING_TOL_MM
        ):
            raise SeriesError(
                uid,
                f"pixel spacing differs between slices: {first.label} has "
                f"{list(first.pixel_spacing)} mm, {plane.label} has {list(plane.pixel_spacing)} mm",
            )
        if plane.matrix != first.matrix:
            raise SeriesError(
                uid,
                f"matrix differs between slices: {first.label} is {first.matrix[0]}x"
                f"{first.matrix[1]}, {plane.label} is {plane.matrix[0]}x{plane.matrix[1]}",
            )
    row, col = first.orientation[:3], first.orientation[3:]
    if (
        abs(np.linalg.norm(row) - 1) > ORIENTATION_TOL
        or abs(np.linalg.norm(col) - 1) > ORIENTATION_TOL
        or abs(float(row @ col)) > ORIENTATION_TOL
    ):
        raise SeriesError(
            uid, f"ImageOrientationPatient {first.orientation.tolist()} is not orthonormal"
        )
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    order = sorted(range(len(planes)), key=lambda p: float(planes[p].position @ normal))
    planes = [planes[p] for p in order]
    positions = np.stack([p.position for p in planes])
    along = positions @ normal
    spacing = _slice_spacing(planes, along, uid)
    what = "a slice spacing" if len(planes) > 1 else "a slice thickness"
    check_spacing(spacing, what, "the series", uid, limits)
    if len(planes) * spacing > limits.max_scan_length_mm:
        raise SeriesError(
            uid,
            f"{len(planes)} slices {spacing:g} mm apart span {len(planes) * spacing:g} mm, more "
            f"than the plausible {limits.max_scan_length_mm:g} mm",
        )
    _check_in_plane(planes, positions, along, normal, uid)
    return planes, Geometry(
        shape=(len(planes), *first.matrix),
        origin=(float(positions[0][0]), float(positions[0][1]), float(positions[0][2])),
        row_direction=(float(row[0]), float(row[1]), float(row[2])),
        column_direction=(float(col[0]), float(col[1]), float(col[2])),
        slice_direction=(float(normal[0]), float(normal[1]), float(normal[2])),
        spacing=(spacing, *first.pixel_spacing),
    )


def _slice_spacing(planes: list[Plane], along: npt.NDArray[np.float64], uid: str) -> float:
    """The slice spacing of a regular grid, or SeriesError naming the slice that breaks it."""
    if len(planes) == 1:
        return planes[0].thickness or 1.0
    steps = np.diff(along)
    for k, step in enumerate(steps):
        if step < DUPLICATE_TOL_MM:
            raise SeriesError(
                uid,
                f"duplicate slice position: {planes[k].label} and {planes[k + 1].label} both lie "
                f"at {along[k]:.3f} mm along the slice normal",
            )
    median = float(np.median(steps))
    for k, step in enumerate(steps):
        if abs(step - median) <= STEP_TOL * median:
            continue
        where = (
            f"between slice {k} ({planes[k].label}, {along[k]:.3f} mm) and slice {k + 1} "
            f"({planes[k + 1].label}, {along[k + 1]:.3f} mm)"
        )
        ratio = step / median
        if round(ratio) >= 2 and abs(ratio - round(ratio)) <= STEP_TOL * round(ratio):
            raise SeriesError(
                uid,
                f"slices are missing: the gap {where} is {step:.3f} mm, {round(ratio)} x the "
                f"median step {median:.3f} mm ({round(ratio) - 1} slice(s) missing)",
            )
        raise SeriesError(
            uid,
            f"inconsistent slice spacing: the step {where} is {step:.3f} mm, the median step "
            f"is {median:.3f} mm (tolerance {STEP_TOL:.0%})",
        )
    spacing = float(along[-1] - along[0]) / (len(planes) - 1)
    residual = np.abs(along - (along[0] + spacing * np.arange(len(planes))))
    k = int(residual.argmax())
    if residual[k] > GRID_TOL * spacing:
        raise SeriesError(
            uid,
            f"inconsistent slice spacing: slice {k} ({planes[k].label}) lies {residual[k]:.3f} mm "
            f"from a uniform grid of step {spacing:.3f} mm",
        )
    return spacing


def _check_in_plane(
    planes: list[Plane],
    positions: npt.NDArray[np.float64],
    along: npt.NDArray[np.float64],
    normal: npt.NDArray[np.float64],
    uid: str,
) -> None:
    """Refuse slices whose origins drift within the image plane (gantry tilt, shear)."""
    offsets = positions - positions[0]
    in_plane = offsets - np.outer(offsets @ normal, normal)
    drift = np.linalg.norm(in_plane, axis=1)
    k = int(drift.argmax())
    tolerance = GRID_TOL * min(planes[0].pixel_spacing)
    if drift[k] > tolerance:
        angle = float(np.degrees(np.arctan2(drift[k], abs(along[k] - along[0]))))
        raise SeriesError(
            uid,
            f"slice positions are not along the slice normal (gantry tilt or shear): slice {k} "
            f"({planes[k].label}) is offset {drift[k]:.3f} mm within the image plane from slice 0"
            f" (about {angle:.2f} degrees; tolerance {tolerance:.3f} mm)",
        )
