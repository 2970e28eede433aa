"""The lungs on the model grid, by classical image processing (numpy and scipy only).

:func:`lung_mask` finds both lungs in a CT in HU (``array[k, j, i]``, ``k`` → +z Superior, ``i``
→ +x Left; any spacing, built for the 1 mm model grid). The mask restricts sliding-window
inference to windows that see lung (:func:`inference.sliding_window.plan_windows`) and filters
candidates (:meth:`LungMask.near`, with a margin in mm). The recipe, on a grid of about
``coarse_mm`` (2 mm) per voxel (majority of each block):

1. **Air** is below ``air_hu`` (−400 HU: halfway between aerated lung, −950…−600 HU even when
   dependent or emphysematous, and soft tissue, −100…+60 HU; ground-glass −700…−300 is
   inside the lung outline and comes back with the hole filling). Air 3-D connected to the
   in-plane border of the image is outside the body and dropped (not the top and bottom
   planes: the lungs may reach them).
2. **Components**: the largest enclosed air component (at least ``min_component_ml``) and the
   second largest when it is at least a tenth of it and centred within its z range (the other
   lung; bowel gas is smaller or lower).
3. **Airways**: from the top slice down, slice by slice, air components of at most
   ``max_airway_mm2`` (trachea, main bronchi) seeded near the body midline and then followed
   by overlap with the airway of the slice above are removed; the tracking stops where an
   airway merges into a lung's cross-section. The components are then chosen again.
4. **Holes**: per axial slice, holes up to ``max_hole_mm2`` (vessels, nodules, bronchial walls)
   are filled; larger enclosed areas (the top of a diaphragm dome surrounded by lung) are not.
5. **Closing**: each side (split at the body midline, so the mediastinum is never bridged) is
   closed in 3-D with a cube of half-size ``closing_mm`` (20 mm), which fills the notch a
   juxtapleural nodule up to ~30 mm makes in the outline; the lung outline is convex towards
   the chest wall, so the closing adds nothing there. Of what it adds, blocks holding bone
   (> ``bone_hu``, 200 HU: rib cortex and marrow, vertebrae; soft-tissue nodules are < 100 HU)
   are dropped, and so is any part no longer connected to the lung.
6. Back on the input grid, voxels above ``bone_hu`` are removed once more.

Measured on the full-size phantom 900001 (512 × 512 × 100 at 0.62 × 0.62 × 2.5 mm; model grid
248 × 318 × 318 at 1 mm): 0.55–0.65 s on one (shared) core, 3453 ml, Dice 0.97 against the
analytic lungs. Its lungs fill the chest, so every window over the body box holds lung (96³,
overlap 0.25: 48 of 48; 64³: 120 of 120); the lung box is tighter than the body box: 32 and 90
windows over their intersection.

Limits: the part of a juxtapleural nodule beyond the pleural line, and voxels blurred with an
adjacent rib above ``bone_hu``, stay outside (use a margin of ~3 mm for candidates); the last
few mm of the main bronchi, where they enter the hilum, may stay inside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from inference.grid import Region, mask_box
from preread.domain import Geometry, Vec3

Mask = npt.NDArray[np.bool_]
_INPLANE = np.zeros((3, 3, 3), dtype=bool)
_INPLANE[1] = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True, eq=False)
class LungMask:
    """Both lungs on a grid.

    ``mask``: bool, the grid's shape; ``box``: its bounding box grown by the margin (None when
    no voxel is lung); ``volume_ml``: the mask's volume.
    """

    mask: Mask
    geometry: Geometry
    box: Region | None
    volume_ml: float

    def contains_index(self, kji: npt.ArrayLike, margin_mm: float = 0.0) -> bool:
        """Whether voxel ``(k, j, i)`` (rounded) lies within ``margin_mm`` of the mask."""
        idx = np.rint(np.asarray(kji, dtype=np.float64)).astype(np.intp)
        return bool(self.near(idx[None], margin_mm)[0])

    def near(self, kji: npt.NDArray[np.intp], margin_mm: float) -> npt.NDArray[np.bool_]:
        """For each voxel index of ``kji`` (``[N, 3]``, integers; may lie outside the grid):
        whether a mask voxel lies within ``margin_mm`` of it (Euclidean, in mm).

        The same answer as the mask grown by ``margin_mm`` (a Euclidean distance transform) at
        those voxels, without transforming the whole lungs' box: one lookup per voxel of the
        margin's ball per point, what the candidate filter needs (a few hundred points per
        scan)."""
        points = np.asarray(kji, dtype=np.intp).reshape(-1, 3)
        offsets = _ball_offsets(self.geometry.spacing, max(margin_mm, 0.0))
        at = points[:, None, :] + offsets[None, :, :]  # [N, M, 3]
        shape = np.asarray(self.mask.shape)
        inside = np.all((at >= 0) & (at < shape), axis=2)
        at = np.where(inside[..., None], at, 0)
        hit = self.mask[at[..., 0], at[..., 1], at[..., 2]] & inside
        return np.asarray(hit.any(axis=1), dtype=bool)

    def contains_lps(self, point: Vec3 | npt.ArrayLike, margin_mm: float = 0.0) -> bool:
        """Whether the LPS ``point`` (mm) lies within ``margin_mm`` of the mask."""
        return self.contains_index(self.geometry.lps_to_index(point), margin_mm)


def lung_mask(
    hu: npt.NDArray[np.float32],
    geometry: Geometry,
    *,
    air_hu: float = -400.0,
    bone_hu: float = 200.0,
    coarse_mm: float = 2.0,
    min_component_ml: float = 30.0,
    max_airway_mm2: float = 800.0,
    lumen_hu: float = -950.0,
    max_hole_mm2: float = 1250.0,
    closing_mm: float = 20.0,
    box_margin_mm: float = 10.0,
) -> LungMask:
    """The lungs of ``hu`` (on ``geometry``), as described in the module docstring.

    Args:
        hu: ``[K, J, I]`` HU on a canonical grid (``k`` → +z, ``j`` → +y, ``i`` → +x).
        geometry: the grid of ``hu``.
        box_margin_mm: how much :attr:`LungMask.box` is grown around the mask.

    Returns:
        The mask (empty, with ``box`` None, when no lung is found: all air, no body, ...).
    """
    if hu.shape != geometry.shape:
        raise ValueError(f"hu shape {hu.shape} differs from the geometry's {geometry.shape}")
    f = tuple(max(1, round(coarse_mm / s)) for s in geometry.spacing)
    sp = tuple(s * n for s, n in zip(geometry.spacing, f, strict=True))
    vox_ml = sp[0] * sp[1] * sp[2] / 1000.0
    n_block = f[0] * f[1] * f[2]
    air = _block_count(hu < np.float32(air_hu), f) * 2 >= n_block
    bone = _block_count(hu > np.float32(bone_hu), f) * 2 >= n_block

    labels, _ = ndimage.label(air)
    faces = [labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]]
    outside = np.unique(np.concatenate([face.ravel() for face in faces]))
    outside = outside[outside > 0]
    sizes = np.bincount(labels.ravel())
    sizes[outside] = 0
    body_i = (~np.isin(labels, outside)).sum(axis=(0, 1))
    if body_i.sum() == 0:
        return _empty(geometry)
    mid_i = float(np.dot(np.arange(body_i.size), body_i) / body_i.sum())

    lungs = _largest(labels, sizes, math.ceil(min_component_ml / vox_ml))
    if lungs is None:
        return _empty(geometry)
    lumen = _block_count(hu < np.float32(lumen_hu), f) * 2 >= n_block
    lungs &= ~_airways(lungs, lumen, mid_i, sp, max_airway_mm2, 60.0)
    labels, _ = ndimage.label(lungs)
    lungs = _largest(labels, np.bincount(labels.ravel()), math.ceil(min_component_ml / vox_ml))
    if lungs is None:
        return _empty(geometry)

    reach = [math.ceil(closing_mm / s) + 1 for s in sp]
    box = _grow(mask_box(lungs), reach, lungs.shape)
    assert box is not None
    core = _fill_small_holes(lungs[box], max_hole_mm2 / (sp[1] * sp[2]))
    half = [math.ceil(closing_mm / s) for s in sp]
    split = min(max(round(mid_i) - box[2].start, 0), core.shape[2])
    closed = np.zeros_like(core)
    for side in (slice(0, split), slice(split, core.shape[2])):
        closed[:, :, side] = _close_cube(core[:, :, side], half)
    grown = core | (closed & ~bone[box])
    labels, _ = ndimage.label(grown)
    keep = np.unique(labels[core])
    grown = np.isin(labels, keep[keep > 0])

    up = grown
    for axis, n in enumerate(f):
        if n > 1:
            up = np.repeat(up, n, axis=axis)
    r0, r1, r2 = (
        slice(b.start * n, min(b.stop * n, size))
        for b, n, size in zip(box, f, geometry.shape, strict=True)
    )
    region = (r0, r1, r2)
    out = np.zeros(geometry.shape, dtype=bool)
    out[region] = up[: r0.stop - r0.start, : r1.stop - r1.start, : r2.stop - r2.start]
    out[region] &= hu[region] <= np.float32(bone_hu)
    return _lung_mask(out, geometry, box_margin_mm)


def _lung_mask(mask: Mask, geometry: Geometry, box_margin_mm: float) -> LungMask:
    box = mask_box(mask)
    if box is not None:
        margin = [math.ceil(box_margin_mm / s) for s in geometry.spacing]
        box = _grow(box, margin, mask.shape)
    volume = float(np.count_nonzero(mask)) * geometry.voxel_volume_mm3 / 1000.0
    return LungMask(mask=mask, geometry=geometry, box=box, volume_ml=volume)


def _empty(geometry: Geometry) -> LungMask:
    return LungMask(np.zeros(geometry.shape, dtype=bool), geometry, None, 0.0)


def _ball_offsets(spacing: tuple[float, float, float], radius_mm: float) -> npt.NDArray[np.intp]:
    """The voxel offsets ``[M, 3]`` within ``radius_mm`` of a voxel (Euclidean, in mm), the
    offset 0 first."""
    reach = [math.floor(radius_mm / s) for s in spacing]
    grid = np.stack(
        np.meshgrid(*(np.arange(-r, r + 1) for r in reach), indexing="ij"), axis=-1
    ).reshape(-1, 3)
    d2 = ((grid * np.asarray(spacing)) ** 2).sum(axis=1)
    keep = grid[d2 <= radius_mm**2]
    return np.asarray(keep[np.argsort((keep**2).sum(axis=1), kind="stable")], dtype=np.intp)


def _block_count(a: Mask, f: tuple[int, ...]) -> npt.NDArray[np.uint8]:
    """How many voxels of each ``f``-block are True (the array padded with False)."""
    if f == (1, 1, 1):
        return a.astype(np.uint8)
    shape = [math.ceil(n / b) for n, b in zip(a.shape, f, strict=True)]
    pad = [(0, s * b - n) for s, b, n in zip(shape, f, a.shape, strict=True)]
    if any(p[1] for p in pad):
        a = np.pad(a, pad)
    out = np.zeros(shape, dtype=np.uint8)
    for dk in range(f[0]):
        for dj in range(f[1]):
            for di in range(f[2]):
                out += a[dk :: f[0], dj :: f[1], di :: f[2]]
    return out


def _grow(box: Region | None, by: list[int], shape: tuple[int, ...]) -> Region | None:
    if box is None:
        return None
    out = [
        slice(max(b.start - m, 0), min(b.stop + m, n))
        for b, m, n in zip(box, by, shape, strict=True)
    ]
    return (out[0], out[1], out[2])


def _largest(
    labels: npt.NDArray[np.int32], sizes: npt.NDArray[np.intp], min_size: int
) -> Mask | None:
    """The largest labelled component (at least ``min_size``) and the second largest when it is
    at least a tenth of it and its z centre lies within the first's z range."""
    sizes = sizes.copy()
    sizes[0] = 0
    order = np.argsort(sizes)[::-1][:2]
    first = int(order[0])
    if sizes[first] < max(min_size, 1):
        return None
    keep = [first]
    if order.size > 1:
        second = int(order[1])
        if sizes[second] >= max(min_size, 0.1 * sizes[first], 1):
            z = np.flatnonzero(np.isin(labels, [first]).any(axis=(1, 2)))
            z2 = np.flatnonzero((labels == second).any(axis=(1, 2)))
            if z[0] <= 0.5 * (z2[0] + z2[-1]) <= z[-1]:
                keep.append(second)
    return np.isin(labels, keep)


def _airways(
    lungs: Mask, lumen: Mask, mid_i: float, sp: tuple[float, ...], max_mm2: float, reach_mm: float
) -> Mask:
    """Trachea and main bronchi: the trachea tracked down from the top slice (:func:`_trachea`),
    then grown in 3-D through ``lumen`` (pure air, darker than parenchyma) within ``reach_mm``
    of the midline and below the carina; a growth of more than 100 ml is a leak into the
    parenchyma, and dropped."""
    seed = _trachea(lungs, mid_i, sp, max_mm2)
    ks = np.flatnonzero(seed.any(axis=(1, 2)))
    if ks.size == 0:
        return seed
    near = math.ceil(reach_mm / sp[2])
    lo = max(int(ks[0]) - math.ceil(reach_mm / sp[0]), 0)
    i0, i1 = max(round(mid_i) - near, 0), round(mid_i) + near + 1
    zone = np.zeros_like(lungs)
    zone[lo : int(ks[0]) + 1, :, i0:i1] = True
    labels, _ = ndimage.label((lungs & lumen & zone) | seed)
    keep = np.unique(labels[seed])
    grown = np.isin(labels, keep[keep > 0])
    extra_ml = np.count_nonzero(grown & ~seed) * sp[0] * sp[1] * sp[2] / 1000.0
    if extra_ml > 100.0:
        return seed
    # the blurred rim of the bronchi (between pure air and parenchyma), 2 voxels deep
    rim = ndimage.binary_dilation(grown & ~seed, iterations=2, mask=lungs & zone)
    return np.asarray(grown | rim, dtype=bool)


def _trachea(lungs: Mask, mid_i: float, sp: tuple[float, ...], max_mm2: float) -> Mask:
    """Small air cross-sections near the midline, tracked down from the top slice by overlap
    until they merge into a lung's cross-section."""
    out = np.zeros_like(lungs)
    px = sp[1] * sp[2]
    near = 30.0 / sp[2]
    above: Mask | None = None
    seeding = True
    for k in range(lungs.shape[0] - 1, -1, -1):
        sl = lungs[k]
        if not sl.any():
            above = None
            continue
        lab, n = ndimage.label(sl)
        areas = np.bincount(lab.ravel()) * px
        small = areas <= max_mm2
        small[0] = False
        if seeding:
            cols = np.broadcast_to(np.arange(sl.shape[1], dtype=np.float64), sl.shape)
            col_sum = np.bincount(lab.ravel(), weights=cols.ravel(), minlength=n + 1)
            count = np.maximum(np.bincount(lab.ravel(), minlength=n + 1), 1)
            chosen = small & (np.abs(col_sum / count - mid_i) <= near)
            if (~small[1:]).any():  # a lung's cross-section: stop seeding below this slice
                seeding = False
        else:
            chosen = np.zeros(n + 1, dtype=bool)
        if above is not None:
            hit = np.unique(lab[above & sl])
            chosen[hit[hit > 0]] |= small[hit[hit > 0]]
        airway = chosen[lab]
        out[k] = airway
        above = airway if airway.any() else None
        if above is None and not seeding:
            break
    return out


def _fill_small_holes(mask: Mask, max_px: float) -> Mask:
    """Fill each axial slice's holes of at most ``max_px`` pixels."""
    padded = np.pad(~mask, ((0, 0), (1, 1), (1, 1)), constant_values=True)
    labels, _ = ndimage.label(padded, structure=_INPLANE)
    border = np.unique(np.concatenate([labels[:, 0].ravel(), labels[:, :, 0].ravel()]))
    sizes = np.bincount(labels.ravel())
    fill = sizes <= max_px
    fill[border] = False
    fill[0] = False
    return np.asarray(mask | fill[labels[:, 1:-1, 1:-1]], dtype=bool)


def _close_cube(mask: Mask, half: list[int]) -> Mask:
    """Binary closing with a ``(2h + 1)``-cube (separable running max / min); outside the array
    counts as background."""
    if not mask.any():
        return mask.copy()
    pad = [(h, h) for h in half]
    a = np.pad(mask.astype(np.uint8), pad)
    for axis, h in enumerate(half):
        a = ndimage.maximum_filter1d(a, 2 * h + 1, axis=axis, mode="constant", cval=0)
    for axis, h in enumerate(half):
        a = ndimage.minimum_filter1d(a, 2 * h + 1, axis=axis, mode="constant", cval=1)
    crop = tuple(slice(h, h + n) for h, n in zip(half, mask.shape, strict=True))
    return a[crop].astype(bool) | mask
