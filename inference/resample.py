"""Resampling a voxel array from one :class:`~preread.domain.Geometry` onto another.

Every target voxel takes the value at its centre's LPS position in the source array, by linear
(``order=1``) or nearest-neighbour (``order=0``) interpolation. When the two grids are
axis-aligned with each other (any axis permutation, flip, scale and shift — the case for the
model grid of an axis-aligned series) the work is separable and done as at most three 1-D passes
in numpy, each a gather and one fused multiply-add; otherwise ``scipy.ndimage.affine_transform``
does it in one pass.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar, overload

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from preread.domain import Geometry

Order = Literal[0, 1]
ScalarT = TypeVar("ScalarT", bound=np.generic)

# A separable pass is exact when the index map's cross terms shift positions by less than this
# many source voxels across the whole target grid.
_CROSS_TOLERANCE_VOX = 1e-3


def index_map(source: Geometry, target: Geometry) -> npt.NDArray[np.float64]:
    """4×4 matrix mapping homogeneous target (k, j, i, 1) indices to source indices."""
    return np.asarray(np.linalg.inv(source.affine) @ target.affine, dtype=np.float64)


@overload
def resample(
    array: npt.NDArray[Any],
    source: Geometry,
    target: Geometry,
    *,
    order: Literal[1] = 1,
    fill: float = 0.0,
    edge_tolerance: float = 0.0,
) -> npt.NDArray[np.float32]: ...
@overload
def resample(
    array: npt.NDArray[ScalarT],
    source: Geometry,
    target: Geometry,
    *,
    order: Literal[0],
    fill: float = 0.0,
    edge_tolerance: float = 0.0,
) -> npt.NDArray[ScalarT]: ...
def resample(
    array: npt.NDArray[Any],
    source: Geometry,
    target: Geometry,
    *,
    order: Order = 1,
    fill: float = 0.0,
    edge_tolerance: float = 0.0,
) -> npt.NDArray[Any]:
    """``array`` (on ``source``) resampled onto ``target``.

    Args:
        array: values on the source grid, shape ``source.shape``.
        source: where ``array`` lies.
        target: the grid to produce.
        order: 1 linear (output float32), 0 nearest neighbour (output keeps ``array``'s dtype).
        fill: value of target voxels outside the source grid.
        edge_tolerance: target voxels up to this many source voxels outside the source grid take
            the edge value instead of ``fill`` (separable path only).

    Returns:
        An array of shape ``target.shape``.
    """
    if tuple(array.shape) != source.shape:
        raise ValueError(f"array shape {array.shape} does not match source {source.shape}")
    m = index_map(source, target)
    perm = _axis_permutation(m[:3, :3], target.shape)
    if perm is None:
        return _resample_general(array, m, target, order, fill)
    # Bring the source axes into target order (a view), then interpolate axis by axis, one
    # target plane (along axis 0) at a time: no volume-sized intermediate, and the in-plane
    # passes work on arrays that stay in cache.
    x: npt.NDArray[np.generic] = np.transpose(array, perm)
    coords = [
        m[perm[t], 3] + m[perm[t], t] * np.arange(target.shape[t], dtype=np.float64)
        for t in range(3)
    ]
    in_plane = sorted((1, 2), key=lambda t: target.shape[t] / x.shape[t])  # shrink first
    out = np.empty(target.shape, dtype=np.float32 if order == 1 else x.dtype)
    n = x.shape[0]
    lo, weight, valid = _axis_plan(coords[0], n, order, edge_tolerance)
    for k in range(target.shape[0]):
        if not valid[k]:
            out[k] = fill
            continue
        plane: npt.NDArray[np.generic] = x[lo[k]]
        if order == 1:
            lower = plane.astype(np.float32)
            if weight[k] > 0.0:
                upper = x[lo[k] + 1].astype(np.float32)
                upper -= lower
                upper *= np.float32(weight[k])
                lower += upper
            plane = lower
        plane = plane[np.newaxis]
        for t in in_plane:
            plane = _resample_axis(plane, t, coords[t], order, fill, edge_tolerance)
        out[k] = plane[0]
    return out


def _axis_plan(
    coords: npt.NDArray[np.float64], n: int, order: Order, edge_tolerance: float
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """For each target index along one axis: the source index below it, the weight of the one
    above (0 for nearest neighbour, where the index is the nearest), and whether it is inside
    the source grid (allowing ``edge_tolerance`` source voxels)."""
    eps = 1e-6
    valid = (coords >= -edge_tolerance - eps) & (coords <= n - 1 + edge_tolerance + eps)
    c = np.clip(coords, 0.0, n - 1.0)
    rounded = np.floor(c + 0.5)
    if order == 0 or n == 1:
        return np.minimum(rounded.astype(np.intp), n - 1), np.zeros(len(c)), valid
    lo = np.minimum(np.floor(c).astype(np.intp), n - 2)
    weight = c - lo
    weight[np.abs(c - rounded) < eps] = 0.0  # on a source voxel (within rounding)
    lo = np.where(weight == 0.0, np.minimum(rounded.astype(np.intp), n - 1), lo)
    return lo, weight, valid


def _axis_permutation(
    m3: npt.NDArray[np.float64], target_shape: tuple[int, int, int]
) -> tuple[int, int, int] | None:
    """For each target axis, the source axis it runs along; None when the grids are not
    axis-aligned to each other."""
    perm = tuple(int(np.argmax(np.abs(m3[:, t]))) for t in range(3))
    if len(set(perm)) != 3:
        return None
    extent = np.asarray(target_shape, dtype=np.float64) - 1.0
    for t in range(3):
        cross = np.abs(np.delete(m3[:, t], perm[t])) * extent[t]
        if float(cross.sum()) > _CROSS_TOLERANCE_VOX:
            return None
    return (perm[0], perm[1], perm[2])


def _resample_axis(
    x: npt.NDArray[np.generic],
    axis: int,
    coords: npt.NDArray[np.float64],
    order: Order,
    fill: float,
    edge_tolerance: float,
) -> npt.NDArray[np.generic]:
    n = x.shape[axis]
    eps = 1e-6
    valid = (coords >= -edge_tolerance - eps) & (coords <= n - 1 + edge_tolerance + eps)
    c = np.clip(coords, 0.0, n - 1.0)
    rounded = np.floor(c + 0.5)
    integral = bool(np.all(np.abs(c - rounded) < eps))
    if integral and valid.all() and len(c) == n and np.array_equal(rounded, np.arange(n)):
        return x  # identity along this axis
    if order == 0 or integral or n == 1:
        idx = np.minimum(rounded.astype(np.intp), n - 1)
        step = _constant_step(idx)
        if step is not None:  # a pure crop / flip: a view, no copy
            stop = idx[-1] + step
            sl = slice(int(idx[0]), None if stop < 0 else int(stop), step)
            out = x[(slice(None),) * axis + (sl,)]
        else:
            out = np.take(x, idx, axis=axis)
    else:
        lo = np.minimum(np.floor(c).astype(np.intp), n - 2)
        shape = [1, 1, 1]
        shape[axis] = len(c)
        w = (c - lo).astype(np.float32).reshape(shape)
        out = np.take(x, lo, axis=axis)
        hi = np.take(x, lo + 1, axis=axis)
        np.subtract(hi, out, out=hi)
        np.multiply(hi, w, out=hi)
        np.add(out, hi, out=out)
    if not valid.all():
        out = np.array(out, copy=True)
        out[(slice(None),) * axis + (~valid,)] = fill
    return out


def _constant_step(idx: npt.NDArray[np.intp]) -> int | None:
    if len(idx) == 1:
        return 1
    d = np.diff(idx)
    if d[0] in (1, -1) and np.all(d == d[0]):
        return int(d[0])
    return None


def _resample_general(
    array: npt.NDArray[np.generic],
    m: npt.NDArray[np.float64],
    target: Geometry,
    order: Order,
    fill: float,
) -> npt.NDArray[np.generic]:
    src = array.astype(np.float32, copy=False) if order == 1 else array
    out = ndimage.affine_transform(
        src,
        m[:3, :3],
        offset=m[:3, 3],
        output_shape=target.shape,
        order=order,
        mode="constant",
        cval=fill,
        prefilter=False,
    )
    return np.asarray(out)
