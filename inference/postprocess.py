"""From a foreground probability map to measured findings.

:func:`find_nodules` thresholds the map, splits it into 26-connected components, drops the small
ones and measures the rest in patient space (LPS mm). Definitions, stated once:

* **centre** — the plain (unweighted) centroid of the component's voxel centres, in LPS.
* **long axis** — the largest distance between two voxel centres of the component (taken over
  its surface voxels, which include the extreme points), plus the extent of one voxel along that
  direction (``1 / |A⁻¹ u|`` for the unit direction ``u`` and the index→mm matrix ``A``: the
  spacing itself for an axis-aligned direction on any grid); for a one-voxel component, the
  largest spacing.
* **volume** — voxel count × voxel volume.
* **probability** — the maximum foreground probability inside the component.
* **mean HU** — the mean of the Hounsfield values (on the same grid) over the component.
* **side** — ``"right"`` when the centre's x is below the body midline (the patient's right is
  −x in LPS), ``"left"`` otherwise; ``None`` when no midline is known.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from preread.domain import Finding, Geometry, Shape3

_STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)
_HULL_ABOVE = 64  # points; below this a brute-force diameter is cheaper than a hull
_BLOCK = 2048


@dataclass(frozen=True)
class Detections:
    """Findings and their voxels: ``label_map`` holds ``Finding.label`` (1..N, by probability,
    highest first) on the grid of the probability map, 0 elsewhere."""

    findings: tuple[Finding, ...]
    label_map: npt.NDArray[np.int32]


def find_nodules(
    probability: npt.NDArray[np.float32],
    hu: npt.NDArray[np.float32],
    geometry: Geometry,
    *,
    threshold: float,
    min_volume_mm3: float,
    midline_x_mm: float | None = None,
) -> Detections:
    """Connected components of ``probability >= threshold`` as measured findings.

    Args:
        probability: foreground probability ``[D, H, W]`` on ``geometry``.
        hu: Hounsfield units on the same grid (for ``mean_hu``).
        geometry: maps the grid's (k, j, i) indices to LPS.
        threshold: probability at or above which a voxel is foreground.
        min_volume_mm3: smaller components are dropped.
        midline_x_mm: LPS x of the body midline, for ``lung_side`` (see
            :func:`inference.body.find_body`); None leaves ``lung_side`` unset.

    Returns:
        :class:`Detections`; ``Finding.bbox_kji`` is ``((k0, j0, i0), (k1, j1, i1))``, stop
        exclusive, on this grid.
    """
    if probability.shape != geometry.shape or hu.shape != geometry.shape:
        raise ValueError(
            f"probability {probability.shape} and hu {hu.shape} must have the grid's shape "
            f"{geometry.shape}"
        )
    components, n = ndimage.label(probability >= threshold, structure=_STRUCTURE_26)
    components = np.asarray(components, dtype=np.int32)
    counts = np.bincount(components.ravel(), minlength=n + 1)
    min_voxels = min_volume_mm3 / geometry.voxel_volume_mm3
    measured: list[tuple[int, Finding]] = []
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None or counts[index] < min_voxels or counts[index] == 0:
            continue
        measured.append(
            (
                index,
                measure_component(index, box, components, probability, hu, geometry, midline_x_mm),
            )
        )
    measured.sort(key=lambda m: (-m[1].probability, -m[1].voxel_count, m[1].center_lps_mm))
    lut = np.zeros(n + 1, dtype=np.int32)
    findings = []
    for new_label, (index, finding) in enumerate(measured, start=1):
        lut[index] = new_label
        findings.append(replace(finding, label=new_label))
    return Detections(findings=tuple(findings), label_map=lut[components])


def long_axis_mm(points_kji: npt.NDArray[np.float64], geometry: Geometry) -> float:
    """Long axis (see the module docstring) of a set of voxel indices ``(N, 3)``."""
    pts = geometry.index_to_lps(points_kji)
    if len(pts) < 2:
        return float(max(geometry.spacing))
    if len(pts) > _HULL_ABOVE:
        with contextlib.suppress(QhullError, ValueError):  # flat: brute force on all points
            pts = pts[ConvexHull(pts).vertices]
    a, b, dist = _diameter(pts)
    if dist == 0.0:
        return float(max(geometry.spacing))
    u = (pts[b] - pts[a]) / dist
    step = 1.0 / float(np.linalg.norm(np.linalg.inv(geometry.affine[:3, :3]) @ u))
    return dist + step


def _diameter(pts: npt.NDArray[np.float64]) -> tuple[int, int, float]:
    """Indices of the two farthest points and their distance (blocked brute force)."""
    sq = np.einsum("ij,ij->i", pts, pts)
    best = (0, 0, -1.0)
    for start in range(0, len(pts), _BLOCK):
        blk = pts[start : start + _BLOCK]
        d2 = sq[start : start + _BLOCK, None] + sq[None, :] - 2.0 * (blk @ pts.T)
        flat = int(np.argmax(d2))
        r, c = divmod(flat, d2.shape[1])
        if d2[r, c] > best[2]:
            best = (start + r, c, float(d2[r, c]))
    a, b, _ = best
    return a, b, float(np.linalg.norm(pts[a] - pts[b]))


def measure_component(
    index: int,
    box: tuple[slice, ...],
    components: npt.NDArray[np.int32],
    probability: npt.NDArray[np.float32],
    hu: npt.NDArray[np.float32],
    geometry: Geometry,
    midline_x_mm: float | None,
) -> Finding:
    """Component ``index`` of ``components`` (within ``box``) measured as a :class:`Finding`
    (definitions in the module docstring)."""
    mask = components[box] == index
    offset = np.array([s.start for s in box], dtype=np.float64)
    idx = np.argwhere(mask).astype(np.float64) + offset
    centre = geometry.index_to_lps(idx.mean(axis=0))
    surface = mask & ~ndimage.binary_erosion(mask, border_value=0)
    surf_idx = np.argwhere(surface).astype(np.float64) + offset
    count = int(mask.sum())
    side: Literal["left", "right"] | None = None
    if midline_x_mm is not None:
        side = "right" if centre[0] < midline_x_mm else "left"
    start: Shape3 = (box[0].start, box[1].start, box[2].start)
    stop: Shape3 = (box[0].stop, box[1].stop, box[2].stop)
    return Finding(
        label=index,
        center_lps_mm=(float(centre[0]), float(centre[1]), float(centre[2])),
        long_axis_mm=long_axis_mm(surf_idx, geometry),
        volume_mm3=count * geometry.voxel_volume_mm3,
        probability=float(probability[box][mask].max()),
        mean_hu=float(hu[box][mask].astype(np.float64).mean()),
        voxel_count=count,
        lung_side=side,
        bbox_kji=(start, stop),
    )
