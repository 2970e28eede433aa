"""Where a finding's long and short axis lie on its source image: the geometry the SR draws.

A viewer draws a length on one image. PreRead's sizes are measured on the model's grid (the
axial long and short axis on the finding's widest slice, the 3-D long axis in space), so the SR
depicts them on the source slice through the finding's centre, the image of its Image Library
entry (:func:`centre_slice`; should the segment have no pixel there, the nearest slice where it
has):

* the **long axis** through the finding's longest chord on that slice (the two pixel centres of
  its mask that lie farthest apart, the rule of :func:`inference.measure.axial_axes`), centred
  on that chord and exactly as long as the size it depicts;
* the **short axis** perpendicular to it, across the middle of the mask's extent in that
  direction, exactly as long as the short axis.

Points are image coordinates as an SR's SCOORD holds them (PS3.3 C.18.6.1.1): (column, row) in
pixels, (0, 0) the top left corner of the top left pixel, so the centre of pixel (r, c) is
(c + 0.5, r + 0.5). The mask comes from the finding's segment in the SEG, so the drawing lies
where the segment does. A source slice is a :class:`~preread.reports.series.SourceFrame`: an
image, or one frame of a multi-frame image (its position, orientation and spacing are that
frame's, and the SEG frame is found by the source frame it references).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from scipy.spatial import ConvexHull, QhullError

from preread.reports.errors import ReportError
from preread.reports.seg import segment_pixels
from preread.reports.series import SourceFrame

__all__ = ["Located", "SliceAxes", "centre_slice", "slice_axes", "slices_by_distance"]


class Located(Protocol):
    """What the axes need of a nodule: a name for errors, its centre (LPS, mm) and its short
    axis (a :class:`~preread.domain.Finding`, the JSON's ``FindingOut``, a review's nodule)."""

    @property
    def label(self) -> int | str: ...

    @property
    def center_lps_mm(self) -> Sequence[float]: ...

    @property
    def short_axis_mm(self) -> float | None: ...


@dataclass(frozen=True)
class SliceAxes:
    """A finding's axes on one source slice, in that image's SCOORD coordinates (column, row)."""

    source: SourceFrame
    #: (2, 2): the long axis' end points.
    long_axis: npt.NDArray[np.float64]
    #: (2, 2): the short axis' end points, None when the finding has no short axis.
    short_axis: npt.NDArray[np.float64] | None

    @property
    def image(self) -> Dataset:
        """The source instance the axes are drawn on (``source.frame_number`` its frame)."""
        return self.source.dataset


def slices_by_distance(finding: Located, sources: Sequence[SourceFrame]) -> list[int]:
    """Indices into ``sources`` (array order), nearest to the finding's centre first."""
    normal = sources[0].normal
    along = np.array([np.asarray(s.position, dtype=np.float64) @ normal for s in sources])
    distance = np.abs(along - np.asarray(finding.center_lps_mm, dtype=np.float64) @ normal)
    return [int(k) for k in np.argsort(distance, kind="stable")]


def centre_slice(finding: Located, sources: Sequence[SourceFrame]) -> int:
    """Index into ``sources`` (array order) of the slice nearest to the finding's centre."""
    return slices_by_distance(finding, sources)[0]


def slice_axes(
    finding: Located,
    long_axis_mm: float,
    sources: Sequence[SourceFrame],
    seg: hd.seg.Segmentation,
    segment: int,
) -> SliceAxes:
    """The long axis (``long_axis_mm`` long) and, when the finding has one, the short axis of
    ``finding`` on its centre slice, placed on segment ``segment`` of ``seg``.

    ``sources`` in array order (:func:`~preread.reports.series.order_sources`).

    Raises:
        ReportError: the segment has no pixel on any of ``sources``.
    """
    present = _segment_frames(seg, segment)
    nearest = [k for k in slices_by_distance(finding, sources) if sources[k].key in present]
    if not nearest:
        raise ReportError(
            f"segment {segment} of the SEG {seg.SOPInstanceUID} lies on none of the "
            f"{len(sources)} source images of finding {finding.label}"
        )
    source = sources[nearest[0]]
    mask = _mask(seg, segment, source)
    rows, columns = np.nonzero(mask)
    if rows.size == 0:
        raise ReportError(
            f"segment {segment} of the SEG {seg.SOPInstanceUID} has an empty frame on "
            f"{source.describe()} (finding {finding.label})"
        )
    row_mm, column_mm = source.pixel_spacing
    scale = np.array([column_mm, row_mm])  # mm per pixel along x (columns), y (rows)
    points = np.stack([columns + 0.5, rows + 0.5], axis=1) * scale  # pixel centres, mm
    a, b = _longest_chord(points)
    chord = b - a
    length = float(np.linalg.norm(chord))
    u = chord / length if length > 0 else np.array([1.0, 0.0])
    middle = (a + b) / 2.0
    long_axis = np.stack([middle - u * long_axis_mm / 2, middle + u * long_axis_mm / 2])
    short_axis = None
    if finding.short_axis_mm is not None:
        across = np.array([-u[1], u[0]])
        extent = points @ across
        centre = middle + across * ((extent.min() + extent.max()) / 2.0 - middle @ across)
        half = across * finding.short_axis_mm / 2
        short_axis = np.stack([centre - half, centre + half]) / scale
    return SliceAxes(source=source, long_axis=long_axis / scale, short_axis=short_axis)


def _mask(seg: hd.seg.Segmentation, segment: int, source: SourceFrame) -> npt.NDArray[np.bool_]:
    """Segment ``segment`` of ``seg`` on the source slice ``source`` (rows, columns)."""
    return segment_pixels(seg, [source], [segment])[0, :, :, 0]


def _segment_frames(seg: hd.seg.Segmentation, segment: int) -> set[tuple[str, int | None]]:
    """(SOP Instance UID, frame number or None) of the source slices segment ``segment`` has a
    frame on (the SEG leaves empty frames out)."""
    images: set[tuple[str, int | None]] = set()
    # what all frames share is in the Shared Functional Groups (highdicom puts the segment
    # there when the SEG holds one segment, the derivation when it holds one frame)
    shared = seg.SharedFunctionalGroupsSequence[0]
    for item in seg.PerFrameFunctionalGroupsSequence:
        identification = item.get("SegmentIdentificationSequence") or shared.get(
            "SegmentIdentificationSequence"
        )
        if int(identification[0].ReferencedSegmentNumber) != segment:
            continue
        derivations = item.get("DerivationImageSequence") or shared.get(
            "DerivationImageSequence", []
        )
        for derivation in derivations:
            for source in derivation.get("SourceImageSequence", []):
                uid = str(source.ReferencedSOPInstanceUID)
                frames = source.get("ReferencedFrameNumber")
                if frames is None or frames == "":
                    images.add((uid, None))
                    continue
                many = isinstance(frames, Sequence) and not isinstance(frames, str)
                images.update((uid, int(n)) for n in (frames if many else [frames]))
    return images


def _longest_chord(
    points: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The two of ``points`` (n, 2) farthest apart (over their convex hull)."""
    hull = points
    if len(points) > 3:
        with contextlib.suppress(QhullError, ValueError):  # collinear points: all of them
            hull = points[ConvexHull(points).vertices]
    difference = hull[:, None, :] - hull[None, :, :]
    squared = np.einsum("ijk,ijk->ij", difference, difference)
    a, b = np.unravel_index(int(np.argmax(squared)), squared.shape)
    return hull[a], hull[b]
