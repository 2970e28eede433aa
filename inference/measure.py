"""Measurements of one nodule mask that radiologists and Lung-RADS use.

* **Axial long and short axis** (Lung-RADS v2022, and Fleischner: measured on the axial image):
  for every axial slice of the mask, the largest distance between two pixel centres (over the
  convex hull) plus one pixel along that direction; the slice with the largest such diameter
  gives the long axis, and the short axis is the mask's extent perpendicular to it in the same
  slice (again plus one pixel). Mean diameter = (long + short) / 2.
* **Type** from attenuation: the share of the nodule's voxels at or above ``solid_hu`` (soft
  tissue; solid nodules are ≈ 0–60 HU, ground glass −750…−300 HU). Solid when that share is
  at least ``solid_fraction``, ground-glass when it is below ``ggo_fraction``, part-solid in
  between; the solid component is the largest connected part of the solid voxels, and its long
  axis is measured like the nodule's. The thresholds are chosen on the validation split and
  recorded in the card.
* **The rim** (``rim_mm``, 0 = none): the share is taken over the nodule's interior, the
  voxels deeper than ``rim_mm`` inside its mask. At the edge of every nodule the scanner's blur
  and the resampling average it with the lung around it (partial volume), so a solid nodule's
  outer millimetres read like ground glass and its whole-mask share falls with its size and
  the scan's sharpness; the interior of a solid nodule is soft tissue throughout. A nodule too
  small to have ``MIN_INTERIOR_VOXELS`` voxels that deep is measured with half the rim, then
  with none.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from preread.domain import Geometry, NoduleType


@dataclass(frozen=True)
class AxialAxes:
    long_mm: float
    short_mm: float
    slice_k: int  # the mask's slice (index into the mask's first axis) they were measured on


@dataclass(frozen=True)
class TypeRule:
    """Attenuation thresholds of :func:`nodule_type` (see the module docstring)."""

    solid_hu: float = -300.0
    solid_fraction: float = 0.6
    ggo_fraction: float = 0.04
    rim_mm: float = 0.0


#: the fewest voxels a nodule's interior may have before the rim is narrowed (see the module
#: docstring): below this, a share is a handful of voxels' noise
MIN_INTERIOR_VOXELS = 8


def _hull(points: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    if len(points) > 16:
        with contextlib.suppress(QhullError, ValueError):
            return np.asarray(points[ConvexHull(points).vertices], dtype=np.float64)
    return points


def axial_axes(mask: npt.NDArray[np.bool_], geometry: Geometry) -> AxialAxes | None:
    """Long and short axis of ``mask`` (on ``geometry``; axial slices along its first axis)."""
    spacing = np.asarray(geometry.spacing[1:], dtype=np.float64)  # (row, column) mm
    best: AxialAxes | None = None
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        pix = np.argwhere(mask[k]).astype(np.float64) * spacing
        pts = _hull(pix)
        if len(pts) < 2:
            d, u = 0.0, np.array([1.0, 0.0])
        else:
            diff = pts[:, None, :] - pts[None, :, :]
            d2 = np.einsum("ijk,ijk->ij", diff, diff)
            a, b = np.unravel_index(int(np.argmax(d2)), d2.shape)
            d = float(np.sqrt(d2[a, b]))
            u = diff[a, b] / d if d > 0 else np.array([1.0, 0.0])
        step = 1.0 / float(np.linalg.norm(u / spacing))  # one pixel along u, in mm
        long_mm = d + step
        if best is not None and long_mm <= best.long_mm:
            continue
        perp = np.array([-u[1], u[0]])
        proj = pix @ perp
        pstep = 1.0 / float(np.linalg.norm(perp / spacing))
        best = AxialAxes(long_mm, float(proj.max() - proj.min()) + pstep, int(k))
    return best


@dataclass(frozen=True)
class TypeResult:
    type: NoduleType
    solid_share: float  # over the interior when the rule has a rim
    solid_component_long_axis_mm: float | None  # part-solid only


def interior(
    mask: npt.NDArray[np.bool_], spacing: tuple[float, float, float], rim_mm: float
) -> npt.NDArray[np.bool_]:
    """The voxels of ``mask`` deeper than ``rim_mm`` inside it (Euclidean distance, in mm, from
    the nearest voxel outside the mask or beyond the array); half the rim, then the whole mask,
    when fewer than :data:`MIN_INTERIOR_VOXELS` are that deep."""
    if rim_mm <= 0.0:
        return mask
    # padded: the array's border counts as outside (a mask cut by its crop has an edge there)
    depth = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    for rim in (rim_mm, rim_mm / 2.0):
        inner = depth > rim
        if int(inner.sum()) >= MIN_INTERIOR_VOXELS:
            return np.asarray(inner)
    return mask


def nodule_type(
    mask: npt.NDArray[np.bool_], hu: npt.NDArray[np.float32], geometry: Geometry, rule: TypeRule
) -> TypeResult:
    """Solid / part-solid / ground-glass from the HU inside ``mask`` (same grid)."""
    if not mask.any():
        raise ValueError("nodule_type needs a non-empty mask")
    # A 3×3×3 median takes the image noise out of the voxel-wise threshold.
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    grown = tuple(
        slice(max(0, s.start - 1), min(n, s.stop + 1)) for s, n in zip(box, mask.shape, strict=True)
    )
    smooth = ndimage.median_filter(hu[grown], size=3)
    m = mask[grown]
    solid = m & (smooth >= rule.solid_hu)
    inner = interior(m, geometry.spacing, rule.rim_mm)
    share = float((solid & inner).sum()) / float(inner.sum())
    if share >= rule.solid_fraction:
        return TypeResult("solid", share, None)
    if share < rule.ggo_fraction:
        return TypeResult("ground-glass", share, None)
    comps, n = ndimage.label(solid, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return TypeResult("ground-glass", share, None)
    sizes = np.bincount(comps.ravel())[1:]
    core = comps == (int(np.argmax(sizes)) + 1)
    axes = axial_axes(core, geometry)
    return TypeResult("part-solid", share, None if axes is None else axes.long_mm)
