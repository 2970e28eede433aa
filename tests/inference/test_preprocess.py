from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pytest

from inference.card import InputSpec, IntensityWindow
from inference.errors import PreprocessError
from inference.grid import canonical_geometry, model_grid_geometry
from inference.preprocess import (
    labels_to_model_grid,
    labels_to_source_grid,
    to_model_grid,
    to_source_grid,
)
from inference.resample import resample
from preread.domain import Geometry, Volume
from tests.inference.phantoms import (
    CORONAL,
    FFS,
    HFS,
    PRONE,
    SAGITTAL,
    geometry,
    spheres,
    voxel_lps,
)

WIDE = IntensityWindow(window_min_hu=-3000.0, window_max_hu=3000.0)
ORIENTATIONS = {"HFS": HFS, "FFS": FFS, "prone": PRONE, "coronal": CORONAL, "sagittal": SAGITTAL}


def _spec(spacing: tuple[float, float, float]) -> InputSpec:
    return InputSpec(spacing_mm=spacing, intensity=WIDE)


def _ramp(g: Geometry) -> Volume:
    """HU linear in LPS: linear interpolation reproduces it exactly anywhere in the grid."""
    p = voxel_lps(g)
    return Volume((0.5 * p[..., 0] - 0.25 * p[..., 1] + 0.75 * p[..., 2]).astype(np.float32), g)


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_canonical_grid_runs_towards_left_posterior_superior(name: str) -> None:
    g = geometry((7, 9, 11), (2.0, 0.7, 0.8), ORIENTATIONS[name])
    c = canonical_geometry(g)
    assert c.row_direction == (1.0, 0.0, 0.0)
    assert c.column_direction == (0.0, 1.0, 0.0)
    assert c.slice_direction == (0.0, 0.0, 1.0)
    # the canonical grid covers exactly the same voxel centres
    corners = np.array([[k, j, i] for k in (0, 6) for j in (0, 8) for i in (0, 10)])
    src = {tuple(np.round(p, 6)) for p in g.index_to_lps(corners)}
    ck, cj, ci = (n - 1 for n in c.shape)
    canon = np.array([[k, j, i] for k in (0, ck) for j in (0, cj) for i in (0, ci)])
    assert {tuple(np.round(p, 6)) for p in c.index_to_lps(canon)} == src


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_bright_voxel_keeps_its_lps_position(name: str) -> None:
    g = geometry((12, 14, 16), (1.0, 1.0, 1.0), ORIENTATIONS[name])
    arr = np.full(g.shape, -1000.0, dtype=np.float32)
    arr[3, 10, 5] = 1000.0
    model = to_model_grid(Volume(arr, g), _spec((1.0, 1.0, 1.0)))
    assert model.hu.size == arr.size
    (peak,) = np.argwhere(model.hu == model.hu.max())
    np.testing.assert_allclose(model.geometry.index_to_lps(peak), g.index_to_lps([3, 10, 5]))


@pytest.mark.parametrize("name", ["HFS", "FFS", "sagittal"])
def test_resampled_grid_is_exact_in_lps(name: str) -> None:
    g = geometry((20, 30, 25), (2.5, 0.7, 0.8), ORIENTATIONS[name])
    model = to_model_grid(_ramp(g), _spec((1.0, 1.2, 0.9)))
    mg = model.geometry
    assert mg.spacing == (1.0, 1.2, 0.9)
    canon = canonical_geometry(g)
    assert mg.origin == canon.origin
    expected_shape = tuple(
        math.floor((n - 1) * s / t) + 1
        for n, s, t in zip(canon.shape, canon.spacing, mg.spacing, strict=True)
    )
    assert mg.shape == expected_shape
    np.testing.assert_allclose(model.hu, _ramp(mg).array, atol=2e-3)
    assert model.array.dtype == np.float32
    np.testing.assert_allclose(model.array, (model.hu + 3000.0) / 6000.0, atol=1e-6)


def test_window_clips_to_unit_interval() -> None:
    g = geometry((2, 2, 2), (1.0, 1.0, 1.0))
    arr = np.array([-2000, -1000, -300, 400, 401, 3000, 0, 0], np.float32).reshape(2, 2, 2)
    spec = InputSpec(
        spacing_mm=(1.0, 1.0, 1.0),
        intensity=IntensityWindow(window_min_hu=-1000.0, window_max_hu=400.0),
    )
    out = to_model_grid(Volume(arr, g), spec).array.ravel()
    np.testing.assert_allclose(out[:6], [0.0, 0.0, 0.5, 1.0, 1.0, 1.0], atol=1e-6)


def test_oblique_series_is_refused() -> None:
    tilt = math.radians(5.0)
    g = Geometry(
        (4, 4, 4),
        (0.0, 0.0, 0.0),
        (1.0, 0.0, 0.0),
        (0.0, math.cos(tilt), -math.sin(tilt)),
        (0.0, math.sin(tilt), math.cos(tilt)),
        (1.0, 1.0, 1.0),
    )
    with pytest.raises(PreprocessError, match="oblique"):
        to_model_grid(Volume(np.zeros((4, 4, 4), np.float32), g), _spec((1.0, 1.0, 1.0)))
    # within the tolerance (rounding in the DICOM header) is fine
    tiny = 2e-4
    g2 = Geometry(
        (4, 4, 4),
        (0.0, 0.0, 0.0),
        (1.0, tiny, 0.0),
        (-tiny, 1.0, 0.0),
        (0.0, 0.0, 1.0),
        (1.0, 1.0, 1.0),
    )
    assert to_model_grid(
        Volume(np.zeros((4, 4, 4), np.float32), g2), _spec((1.0, 1.0, 1.0))
    ).hu.shape == (4, 4, 4)


def test_a_grid_larger_than_the_limit_is_refused_before_it_is_made() -> None:
    """A 4-slice series whose header spacing spans metres would be a grid of billions of
    voxels at 1 mm: refused with the sizes and the setting named, nothing allocated."""
    g = Geometry(
        (4, 8, 8), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0),
        (900.0, 300.0, 300.0),
    )  # fmt: skip
    volume = Volume(np.zeros(g.shape, np.float32), g)
    with pytest.raises(PreprocessError, match="PREREAD_MAX_MODEL_GRID_VOXELS") as info:
        to_model_grid(volume, _spec((1.0, 1.0, 1.0)))
    assert "2701 x 2101 x 2101 voxels" in str(info.value)
    small = Geometry(g.shape, g.origin, g.row_direction, g.column_direction,
                     g.slice_direction, (2.0, 2.0, 2.0))  # fmt: skip
    assert to_model_grid(Volume(volume.array, small), _spec((1.0, 1.0, 1.0))).hu.shape == (
        7, 15, 15,
    )  # fmt: skip
    with pytest.raises(PreprocessError, match="more than the 1000 voxels"):
        to_model_grid(Volume(volume.array, small), _spec((1.0, 1.0, 1.0)), max_voxels=1000)


@pytest.mark.parametrize("name", ["HFS", "FFS", "coronal"])
def test_probability_and_labels_come_back_to_the_source_grid(name: str) -> None:
    g = geometry((16, 40, 36), (2.0, 0.75, 0.75), ORIENTATIONS[name])
    ramp = _ramp(g)
    model = to_model_grid(ramp, _spec((1.0, 1.0, 1.0)))
    back = to_source_grid(model.hu, model.geometry, g, order=1)
    assert back.shape == g.shape and back.dtype == np.float32
    # every source voxel inside the model grid's extent is reproduced exactly
    idx = model.geometry.lps_to_index(voxel_lps(g))
    inside = np.all((idx >= -1e-6) & (idx <= np.array(model.geometry.shape) - 1 + 1e-6), axis=-1)
    assert inside.mean() > 0.8
    np.testing.assert_allclose(back[inside], ramp.array[inside], atol=2e-3)

    labels = np.zeros(model.geometry.shape, np.uint16)
    labels[5:9, 10:20, 4:8] = 7
    labels_back = to_source_grid(labels, model.geometry, g, order=0)
    assert labels_back.dtype == np.uint16
    assert set(np.unique(labels_back)) == {0, 7}
    lps = voxel_lps(g)[labels_back == 7]
    box = model.geometry.index_to_lps(np.array([[4.5, 9.5, 3.5], [8.5, 19.5, 7.5]]))
    lo, hi = box.min(axis=0), box.max(axis=0)
    assert np.all((lps >= lo - 1e-6) & (lps <= hi + 1e-6))


@pytest.mark.parametrize("name", ["HFS", "FFS", "coronal"])
def test_labels_to_source_grid_box_by_box_equals_the_whole_grid(name: str) -> None:
    g = geometry((23, 41, 37), (2.5, 0.7, 0.8), ORIENTATIONS[name])
    model = model_grid_geometry(g, (1.0, 1.0, 1.0))
    labels = np.zeros(model.shape, np.uint16)
    labels[0:3, 0:4, 0:5] = 1  # touches the first voxel of every axis
    labels[-2:, -3:, -4:] = 2  # and the last (the series goes on up to a voxel beyond)
    labels[10:14, 8:20, 12:15] = 3
    labels[11, 19, 14] = 5  # a single voxel inside another's box; label 4 absent
    rng = np.random.default_rng(3)
    labels[rng.random(model.shape) > 0.995] = 6  # scattered: a box over the whole grid
    whole = to_source_grid(labels, model, g, order=0)
    boxed = labels_to_source_grid(labels, model, g)
    assert boxed.dtype == np.uint16
    np.testing.assert_array_equal(boxed, whole)
    small = labels_to_source_grid(labels, model, g, dtype=np.uint8)
    assert small.dtype == np.uint8
    np.testing.assert_array_equal(small, whole)
    assert set(np.unique(whole)) >= {1, 2, 3}
    with pytest.raises(PreprocessError, match="does not fit"):
        labels_to_source_grid(np.full(model.shape, 300, np.uint16), model, g, dtype=np.uint8)
    with pytest.raises(PreprocessError, match="does not match the model grid"):
        labels_to_source_grid(labels[1:], model, g)


@pytest.mark.parametrize("method", ["linear", "nearest"])
def test_labels_to_model_grid_keeps_volume_and_position(
    method: Literal["linear", "nearest"],
) -> None:
    g = geometry((30, 64, 64), (2.0, 0.7, 0.7), FFS)
    centre = np.asarray(g.index_to_lps([15.2, 30.4, 33.1]))
    vol = spheres(g, [tuple(centre)], 8.0, inside=1.0, outside=0.0)
    labels = vol.array.astype(np.int16) * 3
    mg = model_grid_geometry(g, (1.0, 1.0, 1.0))
    out = labels_to_model_grid(labels, g, mg, method)
    assert out.dtype == np.int16 and set(np.unique(out)) == {0, 3}
    source_volume = (labels == 3).sum() * g.voxel_volume_mm3
    model_volume = (out == 3).sum() * mg.voxel_volume_mm3
    assert model_volume == pytest.approx(source_volume, rel=0.05)
    found = mg.index_to_lps(np.argwhere(out == 3).mean(axis=0))
    np.testing.assert_allclose(found, centre, atol=0.5)


def test_general_resample_matches_the_separable_path() -> None:
    g = geometry((10, 12, 14), (1.5, 1.0, 1.1), HFS)
    ramp = _ramp(g)
    target = model_grid_geometry(g, (1.0, 0.9, 1.0))
    rotated = Geometry(
        target.shape,
        target.origin,
        (1.0, 0.0, 0.0),
        (0.0, math.cos(0.02), math.sin(0.02)),
        (0.0, -math.sin(0.02), math.cos(0.02)),
        target.spacing,
    )
    out = resample(ramp.array, g, rotated, order=1, fill=np.nan)
    expected = _ramp(rotated).array
    ok = ~np.isnan(out)
    assert ok.mean() > 0.7
    np.testing.assert_allclose(out[ok], expected[ok], atol=2e-3)
