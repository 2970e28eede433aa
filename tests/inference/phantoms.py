"""Synthetic volumes for the inference tests: geometry in closed form, values known exactly."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from preread.domain import Geometry, Vec3, Volume

HFS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))  # row, column, slice
FFS = ((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, -1.0))
PRONE = ((-1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, 1.0))
CORONAL = ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0))
SAGITTAL = ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0), (-1.0, 0.0, 0.0))


def geometry(
    shape: tuple[int, int, int],
    spacing: Vec3,
    orientation: tuple[Vec3, Vec3, Vec3] = HFS,
    origin: Vec3 = (-40.0, -55.0, -120.0),
) -> Geometry:
    row, col, sl = orientation
    return Geometry(shape, origin, row, col, sl, spacing)


def voxel_lps(g: Geometry) -> npt.NDArray[np.float64]:
    """LPS of every voxel centre, shape ``(*g.shape, 3)``."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in g.shape), indexing="ij")
    return g.index_to_lps(np.stack([k, j, i], axis=-1))


def spheres(
    g: Geometry,
    centres: list[Vec3],
    radius_mm: float,
    inside: float = 0.0,
    outside: float = -850.0,
) -> Volume:
    """Balls of ``inside`` HU (voxel centres within ``radius_mm``) in ``outside`` HU."""
    p = voxel_lps(g)
    arr = np.full(g.shape, outside, dtype=np.float32)
    for c in centres:
        arr[np.linalg.norm(p - np.asarray(c), axis=-1) <= radius_mm] = inside
    return Volume(arr, g)
