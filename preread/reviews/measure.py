"""A nodule the reader added with one click, measured from the pixels around the click.

:func:`measure_added` works on the source series as :func:`dicom_gateway.volume.assemble_volume`
makes it (HU, any axis-aligned orientation, any spacing), with numpy and scipy only (the
serving install has no torch):

1. the neighbourhood of the click (a cube of :attr:`AddRule.reach_mm` either side) is put on a
   local isotropic 1 mm grid (the model grid's spacing) in canonical orientation (axial slices
   first, as :mod:`inference.measure` expects), by linear interpolation
   (:mod:`inference.resample`);
2. a 3×3×3 median takes the noise out; the lung's level is the median of the voxels below
   :attr:`AddRule.lung_below_hu` around the click, the nodule's the brightest smoothed voxel
   within :attr:`AddRule.snap_mm` of the click (a click on the edge still finds the nodule);
   less than :attr:`AddRule.min_contrast_hu` between them: nothing there
   (:class:`NoNoduleHereError`);
3. the voxels above the halfway level, connected to that voxel, opened by a growing ball until
   what holds the click is compact and no longer reaches the edge of the neighbourhood (a vessel
   or the chest wall does; a nodule attached to a thin vessel is cut off it): the seed;
4. the seed's edge is placed by :func:`inference.refine.refine_nodule` (the detector's own
   refinement: the half-maximum between the nodule and the lung around it), then measured as
   PreRead measures the AI's findings — centre, 3-D long axis
   (:func:`inference.postprocess.long_axis_mm`), axial long and short axis
   (:func:`inference.measure.axial_axes`), volume, mean HU and type
   (:func:`inference.measure.nodule_type`);
5. the mask goes back to the source grid by nearest neighbour, box only.

Refused with :class:`NoNoduleHereError` (the message says what is there instead): a click
outside the series, lung without anything brighter, something thinner than a nodule (a vessel,
a fissure), something larger than a nodule or running out of the neighbourhood (chest wall,
mediastinum, a vessel tree), or an elongated structure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from inference.errors import PreprocessError
from inference.grid import canonical_geometry, covering_box
from inference.measure import TypeRule, axial_axes, nodule_type
from inference.postprocess import long_axis_mm
from inference.refine import refine_nodule
from inference.resample import resample
from preread.domain import Geometry, Vec3, Volume
from preread.reviews.domain import AddedNodule, VoxelMask
from preread.reviews.errors import NoNoduleHereError

__all__ = ["DEFAULT_TYPE_RULE", "AddRule", "measure_added"]

Mask = npt.NDArray[np.bool_]
DEFAULT_TYPE_RULE = TypeRule()
"""inference.measure's defaults; pass the model card's ``pipeline.type_rule`` when it has one."""
_STRUCTURE_6 = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class AddRule:
    """The constants of :func:`measure_added` (mm and HU)."""

    reach_mm: float = 24.0  # the neighbourhood: this far from the click along each axis
    spacing_mm: float = 1.0  # the local grid's spacing (the model grid's, where the AI's
    # findings are refined and measured)
    snap_mm: float = 3.0  # the nodule is looked for this far from the click
    lung_below_hu: float = -500.0  # voxels below this around the click are the lung
    min_lung_voxels: int = 200
    min_contrast_hu: float = 150.0  # nodule level minus lung level, at least
    min_diameter_mm: float = 3.0  # equivalent-sphere diameter of the result, at least …
    max_diameter_mm: float = 30.0  # … and at most (larger is a mass, not a nodule)
    max_elongation: float = 2.5  # 3-D long axis / equivalent diameter, at most
    max_opening_mm: float = 4.0  # the largest ball radius tried to cut the click's structure free


def measure_added(
    volume: Volume,
    centre_lps: Vec3,
    *,
    rule: AddRule = AddRule(),
    type_rule: TypeRule = DEFAULT_TYPE_RULE,
) -> AddedNodule:
    """The nodule at ``centre_lps`` (where the reader clicked, LPS mm) in ``volume`` (the
    source series, HU), measured from the pixels (see the module docstring).

    Args:
        volume: the series the AI read, on its own grid (``assemble_volume``).
        centre_lps: the clicked point in patient coordinates (LPS, mm).
        rule: where to look and what counts as a nodule.
        type_rule: the attenuation thresholds of solid / part-solid / ground-glass (the
            model card's ``pipeline.type_rule`` when it has one).

    Returns:
        The nodule, reader-placed, its mask on ``volume``'s grid (no tracking UID yet).

    Raises:
        NoNoduleHereError: nothing nodule-like at the click (the message says what is there).
    """
    click = np.asarray(centre_lps, dtype=np.float64).reshape(3)
    if not np.all(np.isfinite(click)):
        raise NoNoduleHereError(f"the click {tuple(centre_lps)} is not a point")
    source = volume.geometry
    where = source.lps_to_index(click)
    if np.any(where < -0.5) or np.any(where > np.asarray(source.shape) - 0.5):
        raise NoNoduleHereError(f"the click at {_mm(click)} is outside the series")
    grid = _local_grid(source, click, rule)
    hu = resample(volume.array, source, grid, order=1, fill=-1024.0, edge_tolerance=0.5)
    smooth = ndimage.median_filter(hu, size=3)
    spacing = grid.spacing[0]
    middle = np.array(grid.shape) // 2
    seed = _seed(smooth, middle, spacing, click, rule)
    box = _box(seed)
    box, mask = refine_nodule(seed[box], box, hu, spacing)
    return _measured(volume, grid, hu, box, mask, click, type_rule, rule)


def _local_grid(source: Geometry, click: npt.NDArray[np.float64], rule: AddRule) -> Geometry:
    """An isotropic cube centred on the click, canonical (k towards +z: axial slices)."""
    try:
        canon = canonical_geometry(source)
    except PreprocessError as exc:
        raise NoNoduleHereError(f"cannot measure on this series: {exc}") from exc
    spacing = rule.spacing_mm
    half = math.ceil(rule.reach_mm / spacing)
    directions = np.array(
        [canon.slice_direction, canon.column_direction, canon.row_direction], dtype=np.float64
    )
    origin = click - half * spacing * directions.sum(axis=0)
    n = 2 * half + 1
    return Geometry(
        shape=(n, n, n),
        origin=(float(origin[0]), float(origin[1]), float(origin[2])),
        row_direction=canon.row_direction,
        column_direction=canon.column_direction,
        slice_direction=canon.slice_direction,
        spacing=(spacing, spacing, spacing),
    )


def _ball(radius_vox: float) -> Mask:
    r = max(math.floor(radius_vox), 1)
    z, y, x = np.ogrid[-r : r + 1, -r : r + 1, -r : r + 1]
    return np.asarray(x * x + y * y + z * z <= radius_vox * radius_vox + 1e-9, dtype=bool)


def _seed(
    smooth: npt.NDArray[np.float32],
    middle: npt.NDArray[np.int64],
    spacing: float,
    click: npt.NDArray[np.float64],
    rule: AddRule,
) -> Mask:
    """The structure under the click, cut free of what it touches (step 3)."""
    shape = np.array(smooth.shape)
    kk, jj, ii = np.ogrid[: shape[0], : shape[1], : shape[2]]
    dist2 = ((kk - middle[0]) ** 2 + (jj - middle[1]) ** 2 + (ii - middle[2]) ** 2) * spacing**2
    lung = smooth[smooth < rule.lung_below_hu]
    if lung.size < rule.min_lung_voxels:
        raise NoNoduleHereError(
            f"the click at {_mm(click)} is not in the lung: there is almost no lung within "
            f"{rule.reach_mm:.0f} mm (median {float(np.median(smooth)):.0f} HU)"
        )
    background = float(np.median(lung))
    near = dist2 <= rule.snap_mm**2
    candidates = np.where(near, smooth, -np.inf)
    peak = tuple(int(v) for v in np.unravel_index(int(np.argmax(candidates)), smooth.shape))
    level = float(smooth[peak])
    if level - background < rule.min_contrast_hu:
        raise NoNoduleHereError(
            f"nothing nodule-like at {_mm(click)}: the image within {rule.snap_mm:.0f} mm of the "
            f"click is no brighter than the lung around it ({level:.0f} HU against "
            f"{background:.0f} HU)"
        )
    above = smooth >= 0.5 * (level + background)
    radius = 0.0
    what = "a structure"
    while radius <= rule.max_opening_mm / spacing + 1e-9:
        opened = above if radius == 0.0 else ndimage.binary_opening(above, _ball(radius))
        comps, _ = ndimage.label(opened, structure=_STRUCTURE_6)
        label = _nearest_label(comps, peak, dist2, rule.snap_mm)
        if label == 0:
            what = "something thinner than a nodule (a vessel, a fissure or a scar)"
            break
        part: Mask = np.asarray(comps == label, dtype=bool)
        if _touches_edge(part):
            what = "a structure that runs out of the click's neighbourhood (chest wall, " + (
                "mediastinum or a vessel)"
            )
            radius = 1.0 if radius == 0.0 else radius + 1.0
            continue
        return part
    raise NoNoduleHereError(
        f"nothing nodule-like at {_mm(click)}: {what} is there (the structure at the click "
        f"could not be separated into a compact nodule)"
    )


def _nearest_label(
    comps: npt.NDArray[np.int32], peak: tuple[int, ...], dist2: npt.NDArray[np.float64], snap: float
) -> int:
    """The component at ``peak``, else the one nearest the click within ``snap`` mm."""
    at = int(comps[peak])
    if at:
        return at
    near = (comps > 0) & (dist2 <= snap * snap)
    if not near.any():
        return 0
    flat = np.where(near, dist2, np.inf)
    return int(comps.flat[int(np.argmin(flat))])


def _touches_edge(part: Mask) -> bool:
    return bool(
        part[0].any()
        or part[-1].any()
        or part[:, 0].any()
        or part[:, -1].any()
        or part[:, :, 0].any()
        or part[:, :, -1].any()
    )


def _box(mask: Mask) -> tuple[slice, slice, slice]:
    found = ndimage.find_objects(mask.astype(np.uint8))[0]
    return (found[0], found[1], found[2])


def _measured(
    volume: Volume,
    grid: Geometry,
    hu: npt.NDArray[np.float32],
    box: tuple[slice, ...],
    mask: Mask,
    click: npt.NDArray[np.float64],
    type_rule: TypeRule,
    rule: AddRule,
) -> AddedNodule:
    region = (box[0], box[1], box[2])
    sub = grid.crop(region)
    count = int(mask.sum())
    voxel = grid.voxel_volume_mm3
    diameter = 2.0 * (3.0 * count * voxel / (4.0 * math.pi)) ** (1.0 / 3.0)
    if diameter < rule.min_diameter_mm:
        raise NoNoduleHereError(
            f"nothing nodule-like at {_mm(click)}: what is there measures {diameter:.1f} mm, "
            f"smaller than a nodule ({rule.min_diameter_mm:.0f} mm)"
        )
    if diameter > rule.max_diameter_mm:
        raise NoNoduleHereError(
            f"what is at {_mm(click)} measures {diameter:.0f} mm across: larger than a nodule "
            f"({rule.max_diameter_mm:.0f} mm)"
        )
    idx = np.argwhere(mask).astype(np.float64)
    surface = mask & ~ndimage.binary_erosion(mask, border_value=0)
    long_3d = long_axis_mm(np.argwhere(surface).astype(np.float64), sub)
    if long_3d / diameter > rule.max_elongation:
        raise NoNoduleHereError(
            f"nothing nodule-like at {_mm(click)}: the structure there is elongated "
            f"({long_3d:.0f} mm long, {diameter:.0f} mm across: a vessel or a scar)"
        )
    axes = axial_axes(mask, sub)
    assert axes is not None  # a non-empty mask has an axial slice
    typed = nodule_type(mask, hu[region], sub, type_rule)
    centre = sub.index_to_lps(idx.mean(axis=0))
    short = min(axes.short_mm, axes.long_mm)
    return AddedNodule(
        click_lps_mm=(float(click[0]), float(click[1]), float(click[2])),
        centre_lps_mm=(float(centre[0]), float(centre[1]), float(centre[2])),
        long_axis_mm=round(axes.long_mm, 2),
        short_axis_mm=round(short, 2),
        long_axis_3d_mm=round(long_3d, 2),
        volume_mm3=round(count * voxel, 1),
        mean_hu=round(float(hu[region][mask].astype(np.float64).mean()), 1),
        nodule_type=typed.type,
        solid_component_long_axis_mm=(
            None
            if typed.solid_component_long_axis_mm is None
            else round(typed.solid_component_long_axis_mm, 2)
        ),
        mask=_on_source(volume.geometry, sub, mask, click),
    )


def _on_source(
    source: Geometry, sub: Geometry, mask: Mask, click: npt.NDArray[np.float64]
) -> VoxelMask:
    """``mask`` (on ``sub``) on the source grid, nearest neighbour, as a box."""
    n = np.array(sub.shape)
    corners = np.array(
        [[k, j, i] for k in (-1, n[0]) for j in (-1, n[1]) for i in (-1, n[2])], dtype=np.float64
    )
    target = covering_box(sub.index_to_lps(corners), source)
    if target is None:
        raise NoNoduleHereError(f"the nodule at {_mm(click)} lies outside the series")
    on_source = resample(
        mask.astype(np.uint8), sub, source.crop(target), order=0, edge_tolerance=1.0
    ).astype(bool)
    if not on_source.any():
        raise NoNoduleHereError(
            f"the nodule at {_mm(click)} falls between the series' slices: too small to mark"
        )
    tight = ndimage.find_objects(on_source.astype(np.uint8))[0]
    offset = tuple(t.start + s.start for t, s in zip(target, tight, strict=True))
    return VoxelMask(
        grid_shape=source.shape,
        offset_kji=(offset[0], offset[1], offset[2]),
        array=on_source[tight],
    )


def _mm(point: npt.NDArray[np.float64]) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in point) + ") mm"
