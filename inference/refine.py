"""A nodule's extent from the pixels, around the detector's segmentation of it.

The detector's mask at its threshold finds nodules but draws them small: on 1.0.0 and 2.0.0
the boundary voxels were missed (surface covered 19–86 %), so volumes came out 35–55 % low and
long axes short. A nodule's edge in CT is where the attenuation is halfway between the
nodule's and the lung's around it (the half-maximum of a blurred step; PreRead's phantoms
label a voxel by whether its centre lies inside the surface, which is the same place). So,
per finding, on the model grid:

1. a 3×3×3 median takes the noise out of the HU;
2. the nodule's level is a low percentile of the mask's interior (for a part-solid nodule,
   its ground-glass part, which is the outer edge), the lung's the median of a shell around the
   mask inside the lungs (vessels in it are brighter than the nodule's level and left out);
3. how far the edge lies beyond the detector's mask is read from shells around it, one voxel
   thick (inside the lungs): the mask grows through every shell whose voxels are mostly at or
   above the halfway level, plus one (the partial-volume edge). A detector that drew the nodule
   small leaves whole shells of nodule outside its mask; one that drew it right (2.4.0 does)
   leaves none, and a vessel or a fissure touching one side of the nodule never fills a whole
   shell, so it cannot carry the mask away. The shells are read up to the growth limit (2 mm,
   or 15 % of the mask's diameter), or up to ``reach_mm`` (the card's ``pipeline.refine``) for a
   detector that drew only a core of the nodule: full shells all the way out are nodule;
4. the voxels at or above the halfway level within that distance of the detector's mask (and
   never beyond a few millimetres: the chest wall, the mediastinum) and inside the lungs,
   connected to the mask, holes filled, after an opening (one voxel, two from 10 mm on) that
   cuts thin vessels off the nodule;
5. the detector's mask is kept when the contrast is too low to place an edge, or when the
   result is implausible (under a quarter or, when the edge lies within the growth limit, over
   four times the detector's volume).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from inference.grid import Region

Mask = npt.NDArray[np.bool_]
_BALL_1 = ndimage.generate_binary_structure(3, 1)
_STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class RefineRule:
    """The constants of :func:`refine_nodule` (model grid, mm)."""

    min_contrast_hu: float = 100.0
    grow_mm: float = 2.0  # how far beyond the detector's mask the edge may lie, at least …
    grow_fraction: float = 0.15  # … or this share of the mask's equivalent diameter
    shell_mm: float = 4.0  # the lung shell the background level is taken from
    level_percentile: float = 30.0
    wide_opening_mm: float = 10.0  # from this equivalent diameter on, a two-voxel opening
    min_ratio: float = 0.25
    max_ratio: float = 4.0
    shell_share: float = 0.5  # a shell beyond the mask is nodule when this share is at the level
    #: how far beyond the detector's mask the edge may lie when every shell up to there is
    #: nodule (a detector that drew only a fragment of it); 0: no farther than ``grow_mm``.
    #: An edge found beyond ``grow_mm`` this way is not held to ``max_ratio``
    reach_mm: float = 0.0


def _ball(radius_vox: int) -> Mask:
    r = max(int(radius_vox), 1)
    z, y, x = np.ogrid[-r : r + 1, -r : r + 1, -r : r + 1]
    return np.asarray(x * x + y * y + z * z <= r * r, dtype=bool)


def _grow(box: Region, by: int, shape: tuple[int, ...]) -> Region:
    return tuple(  # type: ignore[return-value]
        slice(max(0, s.start - by), min(n, s.stop + by)) for s, n in zip(box, shape, strict=True)
    )


def _edge_distance(
    outside: npt.NDArray[np.float64],
    above: Mask,
    lung: Mask | None,
    limit: int,
    share: float,
) -> int:
    """How many voxels beyond the mask its edge may lie: the shells (one voxel thick) that are
    mostly at or above the halfway level, plus one, at most ``limit``."""
    for d in range(1, limit + 1):
        shell = (outside > d - 1) & (outside <= d)
        if lung is not None:
            shell &= lung
        if not shell.any() or float(above[shell].mean()) < share:
            return min(d, limit)
    return limit


def refine_nodule(
    seed: Mask,
    box: Region,
    hu: npt.NDArray[np.float32],
    spacing_mm: float,
    lungs: Mask | None = None,
    rule: RefineRule = RefineRule(),
) -> tuple[Region, Mask]:
    """The refined mask of one nodule and the box it lies in.

    Args:
        seed: the detector's mask of the nodule within ``box`` (non-empty).
        box: where ``seed`` lies in ``hu``.
        hu: the whole volume's HU on an isotropic grid of ``spacing_mm``.
        lungs: the lung mask on the same grid (juxtapleural nodules inside it), if known.

    Returns:
        ``(grown box, mask in it)``; the seed itself (in its box) when it cannot be refined.
    """
    n = int(seed.sum())
    if n == 0:
        raise ValueError("refine_nodule needs a non-empty seed")
    diameter_mm = 2.0 * (3.0 * n * spacing_mm**3 / (4.0 * np.pi)) ** (1.0 / 3.0)
    grow = int(np.ceil(max(rule.grow_mm, rule.grow_fraction * diameter_mm) / spacing_mm))
    reach = max(grow, int(np.ceil(rule.reach_mm / spacing_mm)))
    shell = int(np.ceil(rule.shell_mm / spacing_mm))
    big = _grow(box, reach + shell + 1, hu.shape)
    offset = tuple(b.start - g.start for b, g in zip(box, big, strict=True))
    s = np.zeros(tuple(g.stop - g.start for g in big), dtype=bool)
    s[tuple(slice(o, o + d) for o, d in zip(offset, seed.shape, strict=True))] = seed
    smooth = ndimage.median_filter(hu[big], size=3)
    lung = None if lungs is None else lungs[big] | s

    interior = ndimage.binary_erosion(s, _BALL_1)
    if interior.sum() < 8:
        interior = s
    level = float(np.percentile(smooth[interior], rule.level_percentile))
    ring = ndimage.binary_dilation(s, _ball(grow + shell)) & ~ndimage.binary_dilation(
        s, _ball(grow)
    )
    if lung is not None:
        ring &= lung
    around = smooth[ring & (smooth < level)]
    if around.size < 20:
        return box, seed
    background = float(np.median(around))
    if level - background < rule.min_contrast_hu:
        return box, seed

    half = 0.5 * (level + background)
    outside = ndimage.distance_transform_edt(~s)  # voxels (the grid is isotropic)
    edge = _edge_distance(outside, smooth >= half, lung, reach, rule.shell_share)
    allowed = outside <= edge
    if lung is not None:
        allowed &= lung
    grown = allowed & (smooth >= half)
    opening = _ball(2) if diameter_mm >= rule.wide_opening_mm else _BALL_1
    opened = ndimage.binary_opening(grown, opening)
    if (opened & s).any():
        grown = opened
    comps, _ = ndimage.label(grown, structure=_STRUCTURE_26)
    keep = np.unique(comps[s & (comps > 0)])
    if keep.size == 0:
        return box, seed
    mask = ndimage.binary_fill_holes(np.isin(comps, keep))
    ratio = float(mask.sum()) / n
    if not rule.min_ratio <= ratio <= (rule.max_ratio if edge <= grow else np.inf):
        return box, seed
    tight = ndimage.find_objects(mask.astype(np.uint8))[0]
    out_box = tuple(
        slice(g.start + t.start, g.start + t.stop) for g, t in zip(big, tight, strict=True)
    )
    return out_box, np.asarray(mask[tight], dtype=bool)  # type: ignore[return-value]
