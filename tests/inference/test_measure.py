"""Axial long/short axes and the attenuation type rule (inference.measure) on exact masks."""

from __future__ import annotations

import numpy as np
import pytest

from inference.measure import TypeRule, axial_axes, nodule_type
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


def test_type_of_an_empty_mask_is_an_error() -> None:
    g = geometry((3, 5, 5), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="non-empty"):
        nodule_type(np.zeros(g.shape, dtype=bool), np.zeros(g.shape, np.float32), g, TypeRule())
