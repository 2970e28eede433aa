"""Canonical orientation and the model's input grid.

The canonical grid (the card's ``input.orientation: LPS``) is indexed ``array[k, j, i]`` with ``i``
increasing towards +x (patient Left), ``j`` towards +y (Posterior) and ``k`` towards +z
(Superior), DICOM PS3.3 C.7.6.2.1.1. Any axis-aligned series (axial, coronal or sagittal, head or
feet first, any slice order) reaches it by permuting and flipping array axes; an oblique series
cannot and is refused.

The canonical geometry keeps the series' own direction cosines (permuted and negated, so each
lies within ``tol`` of +x, +y, +z), so that no position moves: voxel indices of the canonical
and model grids map to LPS exactly as the source's do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inference.errors import PreprocessError
from preread.domain import Geometry, Vec3

AXIS_TOLERANCE = 1e-3
_PATIENT_AXES = "xyz"


@dataclass(frozen=True)
class AxisAlignment:
    """For each array axis (k, j, i): the patient axis it runs along (0=x, 1=y, 2=z) and its
    sign (+1 towards L/P/S)."""

    patient_axis: tuple[int, int, int]
    sign: tuple[int, int, int]


def axis_alignment(geometry: Geometry, tol: float = AXIS_TOLERANCE) -> AxisAlignment:
    """How the array axes of ``geometry`` line up with the patient axes.

    Raises:
        PreprocessError: an axis direction is more than ``tol`` (length of its off-axis
            components) away from every ±x, ±y, ±z: the series is oblique.
    """
    directions = (geometry.slice_direction, geometry.column_direction, geometry.row_direction)
    axes: list[int] = []
    signs: list[int] = []
    for name, d in zip(("slice", "column", "row"), directions, strict=True):
        v = np.asarray(d)
        p = int(np.argmax(np.abs(v)))
        off = math.sqrt(float(np.sum(np.delete(v, p) ** 2)))
        if off > tol:
            raise PreprocessError(
                f"oblique series: the {name} direction {tuple(round(c, 6) for c in d)} is "
                f"{off:.2g} away from the nearest patient axis (tolerance {tol}); only "
                "axis-aligned (axial, coronal, sagittal) series can be put on the model grid"
            )
        axes.append(p)
        signs.append(1 if v[p] > 0 else -1)
    if len(set(axes)) != 3:
        raise PreprocessError(
            f"degenerate geometry: array axes run along patient axes "
            f"{[_PATIENT_AXES[a] for a in axes]}, not three different ones"
        )
    return AxisAlignment((axes[0], axes[1], axes[2]), (signs[0], signs[1], signs[2]))


def canonical_geometry(geometry: Geometry, tol: float = AXIS_TOLERANCE) -> Geometry:
    """The same voxels re-indexed canonically (k → +z, j → +y, i → +x); origin is the centre of
    the voxel that becomes ``[0, 0, 0]``.

    Raises:
        PreprocessError: the series is oblique (see :func:`axis_alignment`).
    """
    align = axis_alignment(geometry, tol)
    directions = (geometry.slice_direction, geometry.column_direction, geometry.row_direction)
    shape: list[int] = [0, 0, 0]
    spacing: list[float] = [0.0, 0.0, 0.0]
    dirs: list[Vec3] = [(0.0, 0.0, 0.0)] * 3
    corner = [0, 0, 0]
    for a in range(3):
        c = 2 - align.patient_axis[a]  # x → i (2), y → j (1), z → k (0)
        s = align.sign[a]
        shape[c] = geometry.shape[a]
        spacing[c] = geometry.spacing[a]
        d = directions[a]
        dirs[c] = (s * d[0], s * d[1], s * d[2])
        corner[a] = geometry.shape[a] - 1 if s < 0 else 0
    origin = geometry.index_to_lps(corner)
    return Geometry(
        shape=(shape[0], shape[1], shape[2]),
        origin=(float(origin[0]), float(origin[1]), float(origin[2])),
        row_direction=dirs[2],
        column_direction=dirs[1],
        slice_direction=dirs[0],
        spacing=(spacing[0], spacing[1], spacing[2]),
    )


MAX_GRID_VOXELS = 400_000_000
"""The largest model grid :func:`model_grid_geometry` accepts by default (1.6 GB per float32
array; a reading holds several): a 2 m whole-body CT at 1 mm over a 50 cm field of view is
about 500 million voxels, a chest CT about 100 million."""


def model_grid_geometry(
    geometry: Geometry,
    spacing_zyx: tuple[float, float, float],
    tol: float = AXIS_TOLERANCE,
    *,
    max_voxels: int = MAX_GRID_VOXELS,
) -> Geometry:
    """The model's input grid for a series: canonical, ``spacing_zyx`` mm, same origin.

    Along each axis the new size is ``floor((n - 1) * s / s_new) + 1``: the grid starts at the
    centre of the series' first canonical voxel and never extends past the last one.

    Raises:
        PreprocessError: the series is oblique, or its grid would hold more than
            ``max_voxels`` voxels (checked before anything is allocated: a header's spacing
            can make a small series cover metres).
    """
    canon = canonical_geometry(geometry, tol)
    extent = [(n - 1) * s for n, s in zip(canon.shape, canon.spacing, strict=True)]
    sizes = [math.floor(e / s_new + 1e-6) + 1 for e, s_new in zip(extent, spacing_zyx, strict=True)]
    if math.prod(sizes) > max_voxels:
        raise PreprocessError(
            f"the model grid would be {sizes[0]} x {sizes[1]} x {sizes[2]} voxels at "
            f"{spacing_zyx} mm (the series spans {extent[0]:.4g} x {extent[1]:.4g} x "
            f"{extent[2]:.4g} mm): more than the {max_voxels} voxels one reading may take "
            "(PREREAD_MAX_MODEL_GRID_VOXELS)"
        )
    shape = tuple(sizes)
    return Geometry(
        shape=(shape[0], shape[1], shape[2]),
        origin=canon.origin,
        row_direction=canon.row_direction,
        column_direction=canon.column_direction,
        slice_direction=canon.slice_direction,
        spacing=spacing_zyx,
    )


Region = tuple[slice, slice, slice]


def mask_box(mask: npt.NDArray[np.bool_]) -> Region | None:
    """The bounding box of ``mask``'s True voxels (None when it has none)."""
    out: list[slice] = []
    for axis in range(3):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        if hits.size == 0:
            return None
        out.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return (out[0], out[1], out[2])


def covering_box(lps_points: npt.ArrayLike, geometry: Geometry) -> Region | None:
    """The smallest index box of ``geometry`` whose voxels enclose ``lps_points`` ``(N, 3)``
    (clipped to the grid; None when it misses the grid)."""
    idx = geometry.lps_to_index(np.asarray(lps_points, dtype=np.float64).reshape(-1, 3))
    lo = np.maximum(np.floor(idx.min(axis=0) + 1e-6).astype(int), 0)
    hi = np.minimum(np.ceil(idx.max(axis=0) - 1e-6).astype(int) + 1, geometry.shape)
    if np.any(hi <= lo):
        return None
    return (
        slice(int(lo[0]), int(hi[0])),
        slice(int(lo[1]), int(hi[1])),
        slice(int(lo[2]), int(hi[2])),
    )


def box_corners(box: Region) -> npt.NDArray[np.float64]:
    """The 8 corner voxel indices ``(8, 3)`` of an index box."""
    k, j, i = ((s.start, s.stop - 1) for s in box)
    return np.array([[a, b, c] for a in k for b in j for c in i], dtype=np.float64)
