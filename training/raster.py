"""Drawing analytic shapes onto an axis-aligned voxel grid, one bounding box at a time.

Phantoms are built on a *canonical* grid whose axes increase along +x, +y, +z of the DICOM
patient coordinate system (LPS, PS3.3 C.7.6.2.1.1); voxel values are sampled at voxel centres.
A shape is evaluated only inside its bounding box, with 1-D coordinate vectors broadcast into
3-D, and composited with partial-volume occupancy ``clip(0.5 - sdf / w, 0, 1)`` (``sdf`` the
signed distance in mm, ``w`` the voxel size), which anti-aliases its boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from training.vessels import Tubes

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
Box = tuple[slice, slice, slice]
Rule = Literal["max", "min"]


@dataclass(frozen=True)
class AxisGrid:
    """Canonical grid voxel centres: ``x`` (columns), ``y`` (rows), ``z`` (slices) ascending."""

    x: F64
    y: F64
    z: F64

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.z.size, self.y.size, self.x.size)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """(dz, dy, dx) in mm (1 along an axis with a single voxel)."""
        dz, dy, dx = (float(a[1] - a[0]) if a.size > 1 else 1.0 for a in (self.z, self.y, self.x))
        return dz, dy, dx

    @property
    def aa_width(self) -> float:
        """Width (mm) of the partial-volume ramp: the geometric-mean voxel size."""
        dz, dy, dx = self.spacing
        return float((dz * dy * dx) ** (1.0 / 3.0))

    def box(self, lo: F64, hi: F64) -> Box | None:
        """Index slices (k, j, i) of the voxels whose centres lie in [lo, hi] (x, y, z), or None."""
        sl = []
        for axis, a, b in ((self.z, lo[2], hi[2]), (self.y, lo[1], hi[1]), (self.x, lo[0], hi[0])):
            i0, i1 = int(np.searchsorted(axis, a)), int(np.searchsorted(axis, b, side="right"))
            if i1 <= i0:
                return None
            sl.append(slice(i0, i1))
        return sl[0], sl[1], sl[2]

    def local(self, box: Box, centre: F64) -> tuple[F32, F32, F32]:
        """Coordinates relative to ``centre`` over ``box``, shaped to broadcast (z, y, x)."""
        xs = (self.x[box[2]] - centre[0]).astype(np.float32)[None, None, :]
        ys = (self.y[box[1]] - centre[1]).astype(np.float32)[None, :, None]
        zs = (self.z[box[0]] - centre[2]).astype(np.float32)[:, None, None]
        return xs, ys, zs


def composite(view: F32, occ: F32, hu: float, rule: Rule, where: Mask | None = None) -> None:
    """Blend ``hu`` into ``view`` with occupancy ``occ``; "max" only brightens, "min" only darkens.

    The one-sided rule keeps brighter structures visible through a ground-glass nodule, keeps
    bone on top of a juxtapleural nodule and lets overlapping tubes join without seams.
    """
    diff = np.float32(hu) - view
    delta = (np.maximum(diff, 0.0) if rule == "max" else np.minimum(diff, 0.0)) * occ
    if where is not None:
        delta *= where
    view += delta


def draw_tubes(
    vol: F32,
    grid: AxisGrid,
    tubes: Tubes,
    hu: float,
    rule: Rule,
    *,
    clip_to: Mask | None = None,
    carve: Mask | None = None,
    carve_margin: float = 1.0,
) -> None:
    """Draw tapered capsules into ``vol`` (canonical grid).

    ``clip_to``: draw only where this mask is set (e.g. pulmonary vessels only in the lungs).
    ``carve``: clear this mask where the signed distance is below ``carve_margin`` mm.
    """
    w = grid.aa_width
    pad = w + max(carve_margin, 0.0) + 0.5
    for n in range(len(tubes)):
        p0, p1 = tubes.p0[n], tubes.p1[n]
        r0, r1 = float(tubes.r0[n]), float(tubes.r1[n])
        rmax = max(r0, r1) + pad
        box = grid.box(np.minimum(p0, p1) - rmax, np.maximum(p0, p1) + rmax)
        if box is None:
            continue
        xs, ys, zs = grid.local(box, p0)
        d = (p1 - p0).astype(np.float32)
        l2 = max(float(d @ d), 1e-9)
        dot = (xs * d[0] + ys * d[1]) + zs * d[2]
        t = np.clip(dot / np.float32(l2), 0.0, 1.0)
        a2 = (xs * xs + ys * ys) + zs * zs
        dist2 = np.maximum(a2 - t * (2.0 * dot - t * np.float32(l2)), 0.0)
        sdf = np.sqrt(dist2) - (np.float32(r0) + np.float32(r1 - r0) * t)
        occ = np.clip(0.5 - sdf / np.float32(w), 0.0, 1.0)
        composite(vol[box], occ, hu, rule, None if clip_to is None else clip_to[box])
        if carve is not None:
            carve[box] &= sdf >= carve_margin
