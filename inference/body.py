"""The patient's body on a CT grid: where to run the network, and where the midline is.

The body is every voxel above ``threshold_hu`` (−500 HU by default: soft tissue and bone, not air
or lung). Its bounding box, grown by a margin, restricts sliding-window inference so that windows
of outside air are skipped; the x of its centre of mass is the left/right midline used for
:attr:`preread.domain.Finding.lung_side`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inference.grid import Region, covering_box
from preread.domain import Geometry


@dataclass(frozen=True)
class Body:
    """``box``: the body's bounding box grown by the margin (None when no voxel is body);
    ``midline_x_mm``: LPS x of the body's centre of mass (None likewise)."""

    box: Region | None
    midline_x_mm: float | None


def find_body(
    hu: npt.NDArray[np.float32],
    geometry: Geometry,
    *,
    threshold_hu: float = -500.0,
    margin_mm: float = 10.0,
) -> Body:
    """Locate the body in ``hu`` (on ``geometry``); see the module docstring."""
    mask = hu > np.float32(threshold_hu)
    box: list[slice] = []
    centre: list[float] = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        profile = mask.sum(axis=others, dtype=np.int64)
        hits = np.flatnonzero(profile)
        if hits.size == 0:
            return Body(box=None, midline_x_mm=None)
        margin = math.ceil(margin_mm / geometry.spacing[axis])
        n = geometry.shape[axis]
        box.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, n)))
        weights = profile.astype(np.float64)
        centre.append(float(np.dot(np.arange(n, dtype=np.float64), weights) / weights.sum()))
    midline = float(geometry.index_to_lps(centre)[0])
    return Body(box=(box[0], box[1], box[2]), midline_x_mm=midline)


def box_from_lps(
    lps_min: tuple[float, float, float],
    lps_max: tuple[float, float, float],
    geometry: Geometry,
) -> Region | None:
    """The index box of ``geometry`` covering the LPS box between two corner points (None when
    they do not overlap)."""
    xs, ys, zs = zip(lps_min, lps_max, strict=True)
    return covering_box([[x, y, z] for x in xs for y in ys for z in zs], geometry)


def intersect(a: Region, b: Region) -> Region | None:
    """The overlap of two index boxes (None when empty)."""
    out = [slice(max(x.start, y.start), min(x.stop, y.stop)) for x, y in zip(a, b, strict=True)]
    if any(s.stop <= s.start for s in out):
        return None
    return (out[0], out[1], out[2])
