"""Axial long/short axes and the attenuation type rule (inference.measure) on exact masks."""

from __future__ import annotations

import numpy as np
import pytest

from inference.measure import MIN_INTERIOR_VOXELS, TypeRule, axial_axes, interior, nodule_type
from tests.inference.phantoms import geometry, voxel_lps


def _ellipsoid(semi: tuple[float, float, float], spacing: tuple[float, float, float]):
    g = geometry((40, 64, 64), spacing, origin=(0.0, 0.0, 0.0))
    p = voxel_lps(g) - g.index_to_lps(np.array(g.shape) / 2.0 - 0.5)
    inside = ((p / np.asarray(semi)) ** 2).sum(-1) <= 1.0  # semi-axes in (x, y, z) mm
    return inside, g


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (1.25, 0.7, 0.7)])
def test_axial_axes_of_an_ellipsoid(spacing: tuple[float, float, float]) -> None:
    mask, g = _ellipsoid((9.0, 5.0, 6.0), spacing)  # 18 mm along x, 10 mm along y
    axes = axial_axes(mask, g)
    assert axes is not None
    assert axes.long_mm == pytest.approx(18.0, abs=1.0)
    assert axes.short_mm == pytest.approx(10.0, abs=1.2)
    assert abs(g.index_to_lps([axes.slice_k, 0, 0])[2] - g.index_to_lps([19.5, 0, 0])[2]) <= 2


def test_axial_axes_of_nothing_and_one_voxel() -> None:
    g = geometry((3, 5, 5), (1.0, 0.8, 0.8))
    assert axial_axes(np.zeros(g.shape, dtype=bool), g) is None
    one = np.zeros(g.shape, dtype=bool)
    one[1, 2, 2] = True
    axes = axial_axes(one, g)
    assert axes is not None and axes.long_mm == pytest.approx(0.8) and axes.short_mm == 0.8


def _typed(core_fraction: float, rng: np.random.Generator) -> tuple[str, float | None]:
    mask, g = _ellipsoid((8.0, 8.0, 8.0), (1.0, 1.0, 1.0))
    hu = np.full(g.shape, -850.0, dtype=np.float32)
    hu[mask] = -520.0  # ground glass
    if core_fraction > 0:
        r = 8.0 * core_fraction ** (1 / 3)
        core, _ = _ellipsoid((r, r, r), (1.0, 1.0, 1.0))
        hu[core] = 30.0
    hu += np.asarray(rng.normal(0.0, 30.0, hu.shape), dtype=np.float32)
    result = nodule_type(mask, hu, g, TypeRule())
    return result.type, result.solid_component_long_axis_mm


def test_type_rule_by_solid_share() -> None:
    rng = np.random.default_rng(3)
    assert _typed(1.0, rng)[0] == "solid"
    assert _typed(0.0, rng) == ("ground-glass", None)
    kind, solid_axis = _typed(0.2, rng)  # a core of 0.2^(1/3) x 16 mm = 9.4 mm
    assert kind == "part-solid"
    assert solid_axis == pytest.approx(16.0 * 0.2 ** (1 / 3), abs=1.5)


def test_a_rim_keeps_the_partial_volume_edge_out_of_the_share() -> None:
    """A solid nodule whose outer 2 mm the scanner averaged with the lung (the mask holds them,
    as the segmentation's does) reads as part-solid over the whole mask and as solid over its
    interior; a real part-solid nodule stays part-solid either way."""
    rng = np.random.default_rng(5)
    mask, g = _ellipsoid((7.0, 7.0, 7.0), (1.0, 1.0, 1.0))
    core, _ = _ellipsoid((5.0, 5.0, 5.0), (1.0, 1.0, 1.0))
    hu = np.full(g.shape, -850.0, dtype=np.float32)
    hu[mask] = -500.0  # the blurred edge
    hu[core] = 30.0
    hu += np.asarray(rng.normal(0.0, 20.0, hu.shape), dtype=np.float32)
    whole = nodule_type(mask, hu, g, TypeRule())
    assert whole.type == "part-solid" and whole.solid_share == pytest.approx(0.36, abs=0.06)
    rimmed = nodule_type(mask, hu, g, TypeRule(rim_mm=2.0))
    assert rimmed.type == "solid" and rimmed.solid_share > 0.7

    mask, g = _ellipsoid((8.0, 8.0, 8.0), (1.0, 1.0, 1.0))
    core, _ = _ellipsoid((4.5, 4.5, 4.5), (1.0, 1.0, 1.0))
    hu = np.full(g.shape, -850.0, dtype=np.float32)
    hu[mask] = -520.0
    hu[core] = 30.0
    assert nodule_type(mask, hu, g, TypeRule(rim_mm=2.0)).type == "part-solid"


def test_the_interior_narrows_its_rim_for_small_masks() -> None:
    spacing = (1.0, 1.0, 1.0)
    cube = np.zeros((9, 9, 9), dtype=bool)
    cube[1:8, 1:8, 1:8] = True  # 7 mm: the middle 3 voxels along each axis lie deeper than 2 mm
    assert interior(cube, spacing, 0.0) is cube
    deep = interior(cube, spacing, 2.0)
    assert deep.sum() == 27 and deep[3:6, 3:6, 3:6].all()
    small = np.zeros((5, 5, 5), dtype=bool)
    small[1:4, 1:4, 1:4] = True  # 3 mm: one voxel deeper than 1 mm, none deeper than 2
    assert MIN_INTERIOR_VOXELS > 1
    assert (interior(small, spacing, 2.0) == small).all()  # the whole mask
    slab = np.ones((4, 12, 12), dtype=bool)  # cut by its crop: the array's edge is outside
    inner = interior(slab, spacing, 1.0)
    assert not inner[0].any() and not inner[-1].any() and inner[1:3, 2:10, 2:10].all()


def test_type_of_an_empty_mask_is_an_error() -> None:
    g = geometry((3, 5, 5), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="non-empty"):
        nodule_type(np.zeros(g.shape, dtype=bool), np.zeros(g.shape, np.float32), g, TypeRule())
