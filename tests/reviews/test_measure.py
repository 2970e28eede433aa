"""A nodule added by a click, measured from the pixels of a synthetic chest CT whose truth is
exact (training.phantoms: 192 × 192, 40 slices of 0.625 mm, seed 7, head first; the nodules are
spheres placed at the lung points farthest from anything else)."""

from __future__ import annotations

import numpy as np
import pytest

from preread.domain import TruthNodule, Vec3
from preread.reviews import NoNoduleHereError, measure_added
from tests.training.test_phantoms import lung_points
from training.phantoms import NoduleSpec, Phantom, generate_phantom

SEED, MATRIX, SLICES = 7, 192, 40


@pytest.fixture(scope="module")
def empty() -> Phantom:
    return generate_phantom(
        SEED, nodules=[], patient_position="HFS", matrix=MATRIX, max_slices=SLICES
    )


@pytest.fixture(scope="module")
def spots(empty: Phantom) -> list[Vec3]:
    return lung_points(empty, 3)


@pytest.fixture(scope="module")
def nodules(spots: list[Vec3]) -> Phantom:
    specs = [NoduleSpec(spots[0], 10.0, "solid"), NoduleSpec(spots[1], 8.0, "ground-glass")]
    return generate_phantom(
        SEED, nodules=specs, patient_position="HFS", matrix=MATRIX, max_slices=SLICES
    )


@pytest.mark.parametrize("index", [0, 1])
def test_a_click_near_a_nodule_measures_it(nodules: Phantom, index: int) -> None:
    truth: TruthNodule = nodules.nodules[index]
    centre = np.asarray(truth.center_lps_mm)
    click = centre + np.array([1.5, -1.0, 0.5])  # off centre, as a hand clicks
    found = measure_added(nodules.volume, (float(click[0]), float(click[1]), float(click[2])))
    radius = truth.long_axis_mm / 2.0
    assert np.linalg.norm(np.asarray(found.centre_lps_mm) - centre) < radius / 2
    pixel = nodules.volume.geometry.spacing[1]  # 2.2 mm: a diameter is good to about one
    assert abs(found.long_axis_mm - truth.long_axis_mm) <= pixel + 0.5
    assert abs(found.short_axis_mm - truth.long_axis_mm) <= pixel + 0.5
    assert abs(found.long_axis_3d_mm - truth.long_axis_mm) <= pixel + 0.5
    assert found.volume_mm3 == pytest.approx(truth.volume_mm3, rel=0.35)
    assert found.nodule_type == truth.type
    assert found.reader_placed and found.tracking_uid is None
    assert found.click_lps_mm == pytest.approx(tuple(click))
    # the mask lies on the source grid, where the phantom's own label map marks the nodule
    mask = found.mask
    assert mask.grid_shape == nodules.volume.geometry.shape
    inside = nodules.label[mask.box()][mask.array] == truth.label
    assert inside.mean() > 0.7
    assert mask.voxel_count == pytest.approx(int((nodules.label == truth.label).sum()), rel=0.5)


def test_nothing_nodule_like_in_empty_lung_is_refused(empty: Phantom, spots: list[Vec3]) -> None:
    for spot in spots:
        with pytest.raises(NoNoduleHereError, match="nothing nodule-like at"):
            measure_added(empty.volume, spot)


def test_a_click_outside_the_series_is_refused(empty: Phantom) -> None:
    g = empty.volume.geometry
    beyond = g.index_to_lps([g.shape[0] + 5, 10, 10])
    with pytest.raises(NoNoduleHereError, match="outside the series"):
        measure_added(empty.volume, (float(beyond[0]), float(beyond[1]), float(beyond[2])))
