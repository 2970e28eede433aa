"""Nodule candidates: where the detector fired, and the patches the false-positive reducer reads.

A **candidate** is a 26-connected component of the detector's foreground probability at or above
the candidate threshold, located at its probability-weighted centroid (on the model grid) and
carrying the component's peak probability. A component larger than any nodule (``max_voxels``:
a nodule grown into the vessels, the hilum or the chest wall by the detector) is split: every
local maximum of its distance to its own border that is at least ``min_radius_vox`` deep is a
candidate (the ``max_split`` deepest), and its voxels are those of the component within 1.5 ×
that depth of the centre (a nodule is a ball in the component; a vessel is a tube, whose depth
is its radius). The false-positive reduction network then scores a two-scale patch around each
candidate (:func:`candidate_patches`):

* channel 0: ``size``³ voxels at the model grid's spacing (1 mm: the nodule and its border);
* channel 1: ``2·size``³ voxels averaged 2 × 2 × 2 down to ``size``³ (2 mm: the context, which
  tells a nodule from a vessel branch point, a rib or the chest wall).

Both are centred on the candidate voxel; beyond the volume the patch is 0 (air after
windowing). Pure numpy: the serving side never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from inference.grid import mask_box

F32 = npt.NDArray[np.float32]
#: Which voxels (``[N, 3]`` indices on the probability's grid) a split may keep (e.g. those near
#: the lungs: :meth:`inference.lungs.LungMask.near`).
PointFilter = Callable[[npt.NDArray[np.intp]], npt.NDArray[np.bool_]]
_STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class Candidate:
    """One detector component on the model grid (``centre_kji``: fractional voxel indices)."""

    component: int  # its value in the component map
    centre_kji: tuple[float, float, float]
    peak_probability: float
    voxel_count: int
    box: tuple[slice, slice, slice]
    radius_vox: float | None = None  # a split candidate: its voxels lie within this of the centre

    def mask(self, components: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
        """Its voxels within :attr:`box`."""
        m = np.asarray(components[self.box] == self.component, dtype=bool)
        if self.radius_vox is None:
            return m
        grid = np.ogrid[tuple(slice(s.start, s.stop) for s in self.box)]
        d2 = sum((g - c) ** 2 for g, c in zip(grid, self.centre_kji, strict=True))
        return np.asarray(m & (d2 <= self.radius_vox**2), dtype=bool)


@dataclass(frozen=True)
class CandidateMap:
    candidates: tuple[Candidate, ...]
    components: npt.NDArray[np.int32]  # 0 outside, Candidate.component inside


def find_candidates(
    probability: F32,
    *,
    threshold: float,
    min_voxels: int = 1,
    max_voxels: int | None = None,
    min_radius_vox: float = 2.0,
    max_split: int = 256,
    within: PointFilter | None = None,
) -> CandidateMap:
    """Components of ``probability >= threshold`` with at least ``min_voxels`` voxels; those
    above ``max_voxels`` split at their deepest points (see the module docstring). With
    ``within``, a split keeps only the points it accepts (e.g. those near the lungs)."""
    foreground = probability >= threshold
    components = np.zeros(probability.shape, dtype=np.int32)
    where = mask_box(foreground)
    if where is None:
        return CandidateMap((), components)
    # labelled inside the foreground's box only: the volume-sized map stays untouched outside
    inner, _ = ndimage.label(foreground[where], structure=_STRUCTURE_26)
    components[where] = inner
    out: list[Candidate] = []
    for index, found in enumerate(ndimage.find_objects(inner), start=1):
        if found is None:
            continue
        box = tuple(
            slice(f.start + w.start, f.stop + w.start) for f, w in zip(found, where, strict=True)
        )
        mask = components[box] == index
        count = int(mask.sum())
        if count < min_voxels:
            components[box][mask] = 0
            continue
        if max_voxels is not None and count > max_voxels:
            out.extend(
                _split(
                    index,
                    (box[0], box[1], box[2]),
                    mask,
                    within,
                    probability,
                    min_radius_vox,
                    max_split,
                )
            )
            continue
        weights = probability[box][mask].astype(np.float64)
        idx = np.argwhere(mask).astype(np.float64) + [s.start for s in box]
        centre = (idx * weights[:, None]).sum(0) / max(float(weights.sum()), 1e-12)
        out.append(
            Candidate(
                component=index,
                centre_kji=(float(centre[0]), float(centre[1]), float(centre[2])),
                peak_probability=float(weights.max()),
                voxel_count=count,
                box=(box[0], box[1], box[2]),
            )
        )
    return CandidateMap(tuple(out), components)


def _split(
    index: int,
    box: tuple[slice, slice, slice],
    mask: npt.NDArray[np.bool_],
    within: PointFilter | None,
    probability: F32,
    min_radius_vox: float,
    max_split: int,
) -> list[Candidate]:
    depth = ndimage.distance_transform_edt(mask)
    size = 2 * int(np.ceil(min_radius_vox)) + 1
    peaks = mask & (depth >= min_radius_vox) & (depth == ndimage.maximum_filter(depth, size=size))
    offset = np.array([s.start for s in box])
    at = np.argwhere(peaks)
    if within is not None:
        at = at[within(at + offset)]
    at = at[np.argsort(-depth[tuple(at.T)], kind="stable")[:max_split]]  # the deepest first
    out = []
    shape = np.array([s.stop for s in box])
    for p in at:
        r = float(depth[tuple(p)]) * 1.5
        c = p + offset
        lo = np.maximum(np.floor(c - r).astype(int), offset)
        hi = np.minimum(np.ceil(c + r + 1).astype(int), shape)
        sub = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
        out.append(
            Candidate(
                component=index,
                centre_kji=(float(c[0]), float(c[1]), float(c[2])),
                peak_probability=float(probability[tuple(c)]),
                voxel_count=int(mask.sum()),
                box=sub,
                radius_vox=r,
            )
        )
    return out


def _crop(volume: F32, centre: npt.NDArray[np.int64], size: int) -> F32:
    """``size``³ voxels of ``volume`` around ``centre`` (0 beyond the volume)."""
    start = centre - size // 2
    out = np.zeros((size, size, size), dtype=np.float32)
    src = tuple(
        slice(max(0, int(start[a])), min(volume.shape[a], int(start[a]) + size)) for a in range(3)
    )
    if any(s.stop <= s.start for s in src):
        return out
    dst = tuple(slice(src[a].start - int(start[a]), src[a].stop - int(start[a])) for a in range(3))
    out[dst] = volume[src]
    return out


def two_scale_patch(volume: F32, centre_kji: npt.ArrayLike, size: int) -> F32:
    """``[2, size, size, size]``: the fine crop and the 2× context averaged down (see above)."""
    c = np.rint(np.asarray(centre_kji, dtype=np.float64)).astype(np.int64)
    fine = _crop(volume, c, size)
    wide = _crop(volume, c, 2 * size)
    coarse = wide.reshape(size, 2, size, 2, size, 2).mean(axis=(1, 3, 5), dtype=np.float32)
    return np.stack([fine, coarse])


def candidate_patches(
    volume: F32, centres_kji: npt.ArrayLike, size: int = 32
) -> npt.NDArray[np.float32]:
    """``[N, 2, size, size, size]`` patches of the windowed model-grid ``volume``."""
    centres = np.asarray(centres_kji, dtype=np.float64).reshape(-1, 3)
    out = np.empty((len(centres), 2, size, size, size), dtype=np.float32)
    for n, c in enumerate(centres):
        out[n] = two_scale_patch(volume, c, size)
    return out
