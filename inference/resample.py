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
    # Bring the source axes into target order (a view), then interpolate axis by axis.
    x: npt.NDArray[np.generic] = np.transpose(array, perm)
    if order == 1 and x.dtype != np.float32:
        x = x.astype(np.float32)
    passes = []
    for t in range(3):
        a = perm[t]
        coords = m[a, 3] + m[a, t] * np.arange(target.shape[t], dtype=np.float64)
        passes.append((target.shape[t] / x.shape[t], t, coords))
    for _, t, coords in sorted(passes, key=lambda p: p[0]):  # shrink first: less work after
        x = _resample_axis(x, t, coords, order, fill, edge_tolerance)
    return np.ascontiguousarray(x)


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
