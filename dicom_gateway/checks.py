"""Checks of untrusted DICOM headers, made before anything is allocated or written from them.

A header is whatever the sender wrote: a size, a spacing or a UID is checked against the
standard and against what a CT series can plausibly be before it becomes an array shape, a
resampling grid or a path. Each check raises :class:`~dicom_gateway.errors.SeriesError` naming
the instance (and its file), the attribute and the value; none of them decodes pixel data.

* UIDs: PS3.5 9.1 (digits and dots, at most 64 characters).
* Sizes: the pixel data of a native (uncompressed) transfer syntax is exactly
  ``Rows × Columns × NumberOfFrames × SamplesPerPixel × BitsAllocated / 8`` bytes, padded to
  an even length (PS3.5 8.1.1, A.4 for the encapsulated ones); a series is bounded by
  :class:`SeriesLimits` (slices and bytes) before any frame is parsed or decoded.
* Multi-frame: the Per-frame Functional Groups Sequence has NumberOfFrames items
  (PS3.3 C.7.6.16.1.1).
* A series: one modality, one frame of reference (PS3.3 C.7.4.1), grey-level images with one
  sample per pixel (C.7.6.3.1.2).
* CT: the SOP class is a CT image (CT Image, Enhanced CT, Legacy Converted Enhanced CT) and
  RescaleSlope / RescaleIntercept are present (Type 1 in the CT Image module, PS3.3 C.8.2.1.1,
  and in the Pixel Value Transformation functional group, C.7.6.16.2.9).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields

from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    EnhancedCTImageStorage,
    LegacyConvertedEnhancedCTImageStorage,
)

from dicom_gateway.errors import SeriesError

__all__ = [
    "CT_IMAGE_STORAGE",
    "PIXEL_KEYWORDS",
    "SeriesLimits",
    "check_frame_of_reference",
    "check_instance_kinds",
    "check_monochrome",
    "check_rescale",
    "check_series_size",
    "check_spacing",
    "frame_count",
    "header_errors",
    "header_int",
    "instance_label",
    "is_encapsulated",
    "is_valid_uid",
    "stored_pixel_bytes",
    "transfer_syntax",
]

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
UID_MAX_LENGTH = 64
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")

CT_IMAGE_STORAGE = frozenset(
    {CTImageStorage, EnhancedCTImageStorage, LegacyConvertedEnhancedCTImageStorage}
)
"""The SOP classes of CT images a CT series may hold."""

RESCALE_SLOPE_RANGE = (1e-3, 1e3)
"""Plausible RescaleSlope of a CT image (stored value → HU); nearly every scanner writes 1."""
MAX_ABS_RESCALE_INTERCEPT = 1e5


def is_valid_uid(value: str) -> bool:
    """Whether ``value`` is a DICOM UID (PS3.5 9.1): digit groups joined by dots, ≤ 64 chars.

    Leading zeros in a component, which PS3.5 forbids but some archives hold, are accepted;
    anything that could act as a path (``..``, ``/``, empty) is not.
    """
    return len(value) <= UID_MAX_LENGTH and _UID.fullmatch(value) is not None


@dataclass(frozen=True)
class SeriesLimits:
    """What one series may be: checked on its headers before a frame is parsed or decoded.

    Attributes:
        max_slices: slices (single-frame instances plus the frames of multi-frame ones).
        max_pixel_bytes: stored pixel data of the whole series, decoded
            (Rows × Columns × frames × BitsAllocated / 8); the HU volume is twice that for
            16-bit images.
        min_spacing_mm, max_spacing_mm: pixel spacing and slice spacing.
        max_field_of_view_mm: Rows × row spacing and Columns × column spacing.
        max_scan_length_mm: slices × slice spacing.
        max_abs_position_mm: largest coordinate of ImagePositionPatient.
    """

    max_slices: int = 2000
    max_pixel_bytes: int = 2 * 1024**3
    min_spacing_mm: float = 0.05
    max_spacing_mm: float = 20.0
    max_field_of_view_mm: float = 1000.0
    max_scan_length_mm: float = 2000.0
    max_abs_position_mm: float = 100_000.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"SeriesLimits.{field.name} must be positive, got {value}")
        if self.min_spacing_mm >= self.max_spacing_mm:
            raise ValueError("SeriesLimits: min_spacing_mm must be below max_spacing_mm")


def instance_label(ds: Dataset, index: int) -> str:
    """``instance <SOPInstanceUID> (file <path>)``: how refusals name one instance."""
    sop = str(ds.get("SOPInstanceUID", "")) or f"#{index + 1}"
    filename = getattr(ds, "filename", None)
    return f"instance {sop}" + (f" (file {filename})" if isinstance(filename, str) else "")


def check_instance_kinds(datasets: Sequence[Dataset], uid: str) -> None:
    """One modality per series; a CT series holds CT images only (not MR slices, not an MR
    SOP class labelled CT)."""
    modalities = Counter(str(ds.get("Modality", "")).strip() for ds in datasets)
    if len(modalities) > 1:
        rare = min(modalities, key=lambda m: modalities[m])
        where = next(
            instance_label(ds, i)
            for i, ds in enumerate(datasets)
            if str(ds.get("Modality", "")).strip() == rare
        )
        counts = ", ".join(f"{m or '<none>'} ({n})" for m, n in sorted(modalities.items()))
        raise SeriesError(
            uid, f"instances of different modalities are mixed: {counts}; e.g. {where}"
        )
    if "CT" not in modalities:
        return
    for index, ds in enumerate(datasets):
        sop_class = UID(str(ds.get("SOPClassUID", "")))
        if sop_class not in CT_IMAGE_STORAGE:
            name = sop_class.name if sop_class else "<none>"
            raise SeriesError(
                uid,
                f"{instance_label(ds, index)} has Modality CT but SOPClassUID {name}"
                f"{f' ({sop_class})' if sop_class and name != sop_class else ''}, "
                "not a CT image",
            )


def frame_count(ds: Dataset, index: int, uid: str, limits: SeriesLimits) -> int:
    """NumberOfFrames (1 when absent), bounded, and matched by the per-frame groups."""
    label = instance_label(ds, index)
    raw = ds.get("NumberOfFrames")
    try:
        frames = 1 if raw is None or raw == "" else int(raw)
    except (TypeError, ValueError):
        raise SeriesError(uid, f"{label} has an invalid NumberOfFrames {raw!r}") from None
    if frames < 1:
        raise SeriesError(uid, f"{label} has NumberOfFrames {frames}")
    if frames > limits.max_slices:
        raise SeriesError(
            uid,
            f"{label} declares NumberOfFrames {frames}, more than the limit of "
            f"{limits.max_slices} slices per series",
        )
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) != frames:
        raise SeriesError(
            uid,
            f"{label} has NumberOfFrames {frames} but {len(per_frame)} item(s) in its "
            "PerFrameFunctionalGroupsSequence",
        )
    return frames


def header_int(ds: Dataset, keyword: str, label: str, uid: str, default: int | None = None) -> int:
    """An integer attribute of the instance; SeriesError naming it when it is absent (and has
    no ``default``) or not one integer (a list, a text, a NaN)."""
    value = ds.get(keyword)
    if value is None or value == "":
        if default is None:
            raise SeriesError(uid, f"{label} has no {keyword}")
        return default
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise SeriesError(uid, f"{label} has an invalid {keyword} {shown}") from None


def stored_pixel_bytes(ds: Dataset, frames: int, index: int, uid: str, encapsulated: bool) -> int:
    """The decoded size of the instance's pixel data, from Rows, Columns, BitsAllocated, frames.

    For a native transfer syntax the PixelData length must match it (plus at most one padding
    byte): a header whose sizes do not describe its pixel data gives scrambled images.
    """
    label = instance_label(ds, index)
    rows, columns, bits = (
        header_int(ds, k, label, uid) for k in ("Rows", "Columns", "BitsAllocated")
    )
    if rows < 1 or columns < 1:
        raise SeriesError(uid, f"{label} has Rows {rows} and Columns {columns}")
    if bits not in (1, 8, 16, 32, 64):
        raise SeriesError(uid, f"{label} has BitsAllocated {bits}")
    if "PixelData" in ds:  # integer pixels (float pixel data have neither attribute)
        stored = header_int(ds, "BitsStored", label, uid, default=bits)
        high = header_int(ds, "HighBit", label, uid, default=stored - 1)
        sign = header_int(ds, "PixelRepresentation", label, uid, default=0)
        if not (1 <= stored <= bits and 0 <= high < bits and sign in (0, 1)):
            raise SeriesError(
                uid,
                f"{label} has BitsAllocated {bits}, BitsStored {stored}, HighBit {high}, "
                f"PixelRepresentation {sign}: not a pixel layout (PS3.5 8.1.1, PS3.3 C.7.6.3.1)",
            )
    samples = header_int(ds, "SamplesPerPixel", label, uid, default=1)
    count = rows * columns * frames * samples
    expected = (count + 7) // 8 if bits == 1 else count * (bits // 8)
    if not encapsulated and "PixelData" in ds:
        actual = len(ds.PixelData)
        if actual not in (expected, expected + 1):
            raise SeriesError(
                uid,
                f"{label}: PixelData holds {actual} bytes, but Rows {rows} x Columns {columns} x "
                f"{frames} frame(s) x {bits} bits need {expected} bytes",
            )
    return expected


def check_rescale(
    slope: float | None, intercept: float | None, label: str, uid: str, *, ct: bool
) -> tuple[float, float]:
    """The (slope, intercept) of a plane: required for CT, finite, slope within
    :data:`RESCALE_SLOPE_RANGE` (0, negative or huge slopes give images without lesions)."""
    if ct and (slope is None or intercept is None):
        missing = " and ".join(
            name
            for name, value in (("RescaleSlope", slope), ("RescaleIntercept", intercept))
            if value is None
        )
        raise SeriesError(
            uid, f"{label} has no {missing} (Type 1 for CT images, PS3.3 C.8.2.1.1.1)"
        )
    slope = 1.0 if slope is None else slope
    intercept = 0.0 if intercept is None else intercept
    lo, hi = RESCALE_SLOPE_RANGE
    if not (math.isfinite(slope) and lo <= slope <= hi):
        raise SeriesError(
            uid, f"{label} has RescaleSlope {slope:g}, outside the plausible {lo:g} to {hi:g}"
        )
    if not (math.isfinite(intercept) and abs(intercept) <= MAX_ABS_RESCALE_INTERCEPT):
        raise SeriesError(uid, f"{label} has RescaleIntercept {intercept:g}, not plausible")
    return slope, intercept


def check_spacing(value: float, what: str, label: str, uid: str, limits: SeriesLimits) -> None:
    """A pixel or slice spacing within ``[min_spacing_mm, max_spacing_mm]``."""
    if not (limits.min_spacing_mm <= value <= limits.max_spacing_mm):
        raise SeriesError(
            uid,
            f"{label} has {what} {value:g} mm, outside the plausible "
            f"{limits.min_spacing_mm:g} to {limits.max_spacing_mm:g} mm",
        )


@contextmanager
def header_errors(uid: str, index: int, ds: Dataset | None) -> Iterator[None]:
    """Turn any parser error on an untrusted header value into a SeriesError naming the file."""
    try:
        yield
    except SeriesError:
        raise
    except Exception as exc:  # malformed values in untrusted headers
        where = instance_label(ds, index) if ds is not None else "an instance"
        raise SeriesError(uid, f"{where}: unreadable header ({type(exc).__name__}: {exc})") from exc


def transfer_syntax(ds: Dataset) -> UID | None:
    meta = ds.get("file_meta")
    value = str(meta.get("TransferSyntaxUID", "")) if meta else ""
    return UID(value) if value else None


def is_encapsulated(ds: Dataset, label: str, uid: str) -> bool:
    """Whether the instance's pixel data are encapsulated (compressed, PS3.5 A.4); SeriesError
    when its TransferSyntaxUID names no transfer syntax (PS3.5 10): neither the native nor an
    encapsulated layout can then be trusted."""
    syntax = transfer_syntax(ds)
    if syntax is None:
        return False
    if not syntax.is_transfer_syntax:
        known = f" ({syntax.name})" if syntax.name != syntax else ""
        raise SeriesError(
            uid,
            f"{label} has TransferSyntaxUID '{syntax}'{known}, not a transfer syntax "
            "(PS3.5 Annex A): its pixel data cannot be read",
        )
    return syntax.is_encapsulated


def check_series_size(datasets: Sequence[Dataset], uid: str, limits: SeriesLimits) -> None:
    """Frames and bytes of the whole series within ``limits``, and each native PixelData as
    long as its header says, before a frame is parsed or a byte allocated."""
    total_frames = 0
    total_bytes = 0
    for index, ds in enumerate(datasets):
        with header_errors(uid, index, ds):
            check_monochrome(ds, instance_label(ds, index), uid)
        with header_errors(uid, index, ds):
            frames = frame_count(ds, index, uid, limits)
        total_frames += frames
        if total_frames > limits.max_slices:
            raise SeriesError(
                uid,
                f"more than {limits.max_slices} slices (the limit per series): "
                f"{total_frames} in the first {index + 1} instance(s)",
            )
        with header_errors(uid, index, ds):
            encapsulated = is_encapsulated(ds, instance_label(ds, index), uid)
            total_bytes += stored_pixel_bytes(ds, frames, index, uid, encapsulated)
        if total_bytes > limits.max_pixel_bytes:
            raise SeriesError(
                uid,
                f"more than {limits.max_pixel_bytes} bytes of pixel data (the limit per series):"
                f" {total_bytes} declared by the first {index + 1} instance(s)",
            )


def check_monochrome(ds: Dataset, label: str, uid: str) -> None:
    """Pixel data present, one sample per pixel, grey levels (PS3.3 C.7.6.3.1.2)."""
    if not any(keyword in ds for keyword in PIXEL_KEYWORDS):
        raise SeriesError(uid, f"{label} has no pixel data")
    samples = header_int(ds, "SamplesPerPixel", label, uid, default=1)
    if samples != 1:
        raise SeriesError(uid, f"{label} has SamplesPerPixel {samples}, expected 1")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise SeriesError(
            uid,
            f"{label} has PhotometricInterpretation '{photometric}', "
            "expected MONOCHROME1 or MONOCHROME2",
        )


def check_frame_of_reference(datasets: Sequence[Dataset], uid: str) -> None:
    """One FrameOfReferenceUID for every instance (PS3.3 C.7.4.1); the odd one out is named."""
    by_frame: dict[str, list[int]] = {}
    for index, ds in enumerate(datasets):
        by_frame.setdefault(str(ds.get("FrameOfReferenceUID", "")), []).append(index)
    if len(by_frame) < 2:
        return
    missing = by_frame.get("")
    if missing:
        raise SeriesError(
            uid,
            f"{instance_label(datasets[missing[0]], missing[0])} has no FrameOfReferenceUID, "
            f"{len(datasets) - len(missing)} other instance(s) have one"
            + (f" ({len(missing)} instances have none)" if len(missing) > 1 else ""),
        )
    odd = min(by_frame, key=lambda f: len(by_frame[f]))
    listed = ", ".join(f"{f} ({len(i)} instances)" for f, i in sorted(by_frame.items()))
    example = instance_label(datasets[by_frame[odd][0]], by_frame[odd][0])
    raise SeriesError(
        uid, f"instances lie in different frames of reference: {listed}; e.g. {example}"
    )
