"""The classical lung mask (:mod:`inference.lungs`) on a small phantom on the 1 mm model grid, and
sliding-window inference that skips windows without lung."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage

from inference.card import InputSpec, IntensityWindow
from inference.lungs import LungMask, lung_mask
from inference.preprocess import to_model_grid
from inference.resample import resample
from inference.sliding_window import WindowStats, plan_windows
from preread.domain import Geometry, Volume
from tests.inference.phantoms import geometry
from tests.inference.test_sliding_window import conv_predictor, full_volume
from training.phantoms import NoduleSpec, Phantom, generate_phantom
from training.phantoms import lung_mask as analytic_lung_mask

SEED, MATRIX, SLICES = 5, 128, 72
SPEC = InputSpec(
    spacing_mm=(1.0, 1.0, 1.0),
    intensity=IntensityWindow(window_min_hu=-1000.0, window_max_hu=400.0),
)


@dataclass(frozen=True)
class Case:
    hu: npt.NDArray[np.float32]
    geometry: Geometry
    lungs: LungMask
    truth: npt.NDArray[np.bool_]  # analytic lungs on the model grid
    nodule: npt.NDArray[np.bool_]
    grown: npt.NDArray[np.bool_]  # the lungs dilated by 3 mm (a distance transform: the reference)
    centre: tuple[float, float, float]


def _pleura_x(base: Phantom, y: float, z: float, x_from: float) -> float:
    """x (LPS) where the analytic right lung begins along +x at (y, z), to 0.1 mm."""
    line = Geometry((1, 1, 200), (x_from, y, z), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0.1))
    probe = dataclasses.replace(base, volume=Volume(np.zeros(line.shape, np.float32), line))
    inside = analytic_lung_mask(probe)[0, 0]
    assert inside.any() and not inside[0]
    return x_from + 0.1 * float(np.argmax(inside))


@pytest.fixture(scope="module")
def case() -> Case:
    base = generate_phantom(
        SEED, matrix=MATRIX, max_slices=SLICES, nodules=[], patient_position="HFS"
    )
    g = base.volume.geometry
    k = g.shape[0] // 2
    row = analytic_lung_mask(base)[k]
    j = int(np.argmax(row.sum(axis=1)))  # the row with the most lung
    p = g.index_to_lps([k, j, int(np.argmax(row[j])) - 3])
    x = _pleura_x(base, float(p[1]), float(p[2]), float(p[0]))
    centre = (x + 4.0, float(p[1]), float(p[2]))  # 4 mm inside the right lung's pleura
    spec = NoduleSpec(centre, 12.0, "solid", attached_to="pleura")
    ph = generate_phantom(
        SEED, matrix=MATRIX, max_slices=SLICES, nodules=[spec], patient_position="HFS"
    )
    model = to_model_grid(ph.volume, SPEC)
    truth = analytic_lung_mask(ph).astype(np.float32)
    truth_m = resample(truth, g, model.geometry, order=1) >= 0.5
    nodule = resample(ph.label, g, model.geometry, order=0) == 1
    lungs = lung_mask(model.hu, model.geometry)
    grown = ndimage.distance_transform_edt(~lungs.mask, sampling=model.geometry.spacing) <= 3.0
    return Case(model.hu, model.geometry, lungs, truth_m, nodule, grown, centre)


def test_mask_matches_the_analytic_lungs(case: Case) -> None:
    m, t = case.lungs.mask, case.truth
    dice = 2.0 * np.count_nonzero(m & t) / (np.count_nonzero(m) + np.count_nonzero(t))
    assert dice > 0.93
    assert case.lungs.volume_ml == pytest.approx(np.count_nonzero(m) / 1000.0)
    assert case.lungs.box is not None
    outside = np.ones(m.shape, bool)
    outside[case.lungs.box] = False
    assert m.any() and not (m & outside).any()


def test_juxtapleural_nodule_is_inside(case: Case) -> None:
    nodule = case.nodule
    assert np.count_nonzero(nodule) > 500  # a 12 mm ball: ~900 voxels of 1 mm³
    assert np.count_nonzero(nodule & ~case.truth) > 20  # it does poke out of the lung
    # the closing fills the notch up to the pleural line; beyond it, and where the image
    # blurs the nodule with the rib next to it (> 200 HU), the mask stops
    assert np.count_nonzero(nodule & case.lungs.mask) >= 0.8 * np.count_nonzero(nodule)
    soft = nodule & (case.hu <= 200.0)
    inside = soft & case.truth
    assert np.count_nonzero(inside & case.lungs.mask) >= 0.9 * np.count_nonzero(inside)
    assert np.count_nonzero(soft & case.grown) >= 0.98 * np.count_nonzero(soft)
    assert case.lungs.contains_lps(case.centre)


def test_bone_and_chest_wall_stay_outside(case: Case) -> None:
    m = case.lungs.mask
    near = ndimage.binary_dilation(case.truth | case.nodule, iterations=3)
    bone = (case.hu > 300.0) & ~near
    assert np.count_nonzero(bone) > 10_000
    assert not (m & bone).any()
    # what the mask adds beyond the lungs and the nodule (hilum, partial volume) is small
    extra = m & ~near
    assert np.count_nonzero(extra) < 0.02 * np.count_nonzero(m)


def test_trachea_and_main_bronchi_are_excluded(case: Case) -> None:
    air = case.hu < -900.0
    per_slice = np.zeros_like(air)
    for k in range(air.shape[0]):  # air enclosed by the body, slice by slice
        lab, _ = ndimage.label(air[k])
        edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
        per_slice[k] = air[k] & ~np.isin(lab, edge[edge > 0])
    near_lung = ndimage.binary_dilation(case.truth, iterations=3)
    airway = per_slice & ~near_lung  # the lumen of the trachea and main bronchi
    assert np.count_nonzero(airway) > 2000
    split = [k for k in range(airway.shape[0]) if ndimage.label(airway[k])[1] >= 2]
    assert split  # the main bronchi are in the scan
    trachea = airway.copy()
    trachea[: max(split) + 6] = False  # 5 mm and more above the carina
    assert np.count_nonzero(trachea) > 1000
    assert not (trachea & case.lungs.mask).any()
    # the main bronchi go too, but for their last few mm into the hilum
    assert np.count_nonzero(airway & case.lungs.mask) < 0.12 * np.count_nonzero(airway)


def test_point_queries_and_dilation(case: Case) -> None:
    lungs = case.lungs
    assert lungs.box is not None
    inside = np.argwhere(lungs.mask)[0]
    assert lungs.contains_index(inside)
    edge = inside - np.array([0, 0, 1])  # the first lung voxel along its row: one to the right
    assert not lungs.contains_index(edge)
    assert lungs.contains_index(edge, margin_mm=1.0)
    assert not lungs.contains_index((-5, 0, 0)) and not lungs.contains_index((-5, 0, 0), 2.0)
    grown = case.grown
    assert grown[tuple(edge)] and np.count_nonzero(grown) > np.count_nonzero(lungs.mask)
    ring = np.argwhere(grown & ~lungs.mask)
    assert len(ring) > 1000
    for p in ring[:: len(ring) // 50]:
        assert lungs.contains_index(p, margin_mm=3.0) and not lungs.contains_index(p)


def test_near_is_the_dilated_mask_voxel_for_voxel(case: Case) -> None:
    """The candidate filter's point query answers as the 3 mm dilation (a distance transform of
    the lungs' box) does, on every voxel of a slab through both lungs and off the grid."""
    lungs = case.lungs
    k = lungs.mask.shape[0] // 2
    slab = np.argwhere(np.ones(lungs.mask[k - 2 : k + 2].shape, dtype=bool))
    slab[:, 0] += k - 2
    assert np.array_equal(lungs.near(slab, 3.0), case.grown[tuple(slab.T)])
    assert lungs.near(slab, 3.0).sum() > lungs.near(slab, 0.0).sum() > 1000
    off = np.array([[-1, 0, 0], [k, -4, -4], [k, *lungs.mask.shape[1:]]])
    assert not lungs.near(off, 3.0).any()
    first = np.argwhere(lungs.mask[k])[0]
    assert lungs.near(np.array([[k, first[0], first[1] - 3]]), 3.0).all()


def test_no_lung_gives_an_empty_mask() -> None:
    g = geometry((40, 64, 64), (1.0, 1.0, 1.0))
    air = np.full(g.shape, -1000.0, dtype=np.float32)
    body = air.copy()
    k, j, i = np.ogrid[:40, :64, :64]
    body[np.broadcast_to((j - 32) ** 2 + (i - 32) ** 2 < 25**2, g.shape)] = 40.0  # a cylinder
    gut = body.copy()
    gut[(j - 32) ** 2 + (i - 32) ** 2 + (k - 20) ** 2 < 4**2] = -1000.0  # 0.3 ml of gas
    for hu in (air, body, gut, np.full(g.shape, 1000.0, dtype=np.float32)):
        lungs = lung_mask(hu, g)
        assert lungs.box is None and lungs.volume_ml == 0.0 and not lungs.mask.any()
        assert not lungs.contains_index((20, 32, 32), margin_mm=5.0)
        assert not lungs.near(np.argwhere(np.ones((4, 4, 4), dtype=bool)) + 18, 5.0).any()
    with pytest.raises(ValueError, match="shape"):
        lung_mask(air[:-1], g)


def test_skipped_windows_are_background_and_the_rest_unchanged() -> None:
    image = np.random.default_rng(4).random((40, 50, 60), dtype=np.float32)
    mask = np.zeros(image.shape, bool)
    mask[5:9, 30:34, 40:45] = True
    roi = (16, 16, 16)
    calls: list[int] = []

    def counting(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        calls.append(batch.shape[0])
        return conv_predictor(batch)

    full = full_volume(image, conv_predictor, roi, 0.25, 2, background_logit=7.0)
    stats = WindowStats()
    out = full_volume(
        image, counting, roi, 0.25, 2, background_logit=7.0, window_mask=mask, stats=stats
    )
    plan = plan_windows(image.shape, roi, 0.25, window_mask=mask)
    assert stats.run == plan.n_run == sum(calls) and stats.skipped == plan.n_skipped
    assert 0 < stats.run < len(plan.slices) // 4
    np.testing.assert_array_equal(out[:, mask], full[:, mask])  # bit for bit
    covered = np.zeros(image.shape, bool)
    for sl, run in zip(plan.slices, plan.run, strict=True):
        covered[sl] |= run
    assert (~covered).any()
    assert np.all(out[0][~covered] == 7.0) and np.all(out[1][~covered] == -7.0)
    assert not np.array_equal(out[:, covered], full[:, covered])  # partial blends differ


def test_window_mask_with_region_and_empty_mask() -> None:
    image = np.random.default_rng(5).random((30, 40, 50), dtype=np.float32)
    region = (slice(0, 30), slice(5, 35), slice(10, 45))
    mask = np.zeros(image.shape, bool)
    mask[20, 20, 20] = True
    mask[2, 2, 2] = True  # outside the region: ignored
    out = full_volume(image, conv_predictor, (16, 16, 16), 0.25, 3, region=region)
    masked = full_volume(
        image, conv_predictor, (16, 16, 16), 0.25, 3, region=region, window_mask=mask
    )
    assert masked[:, 20, 20, 20].tolist() == out[:, 20, 20, 20].tolist()
    assert masked[0, 2, 2, 2] == 20.0
    empty = np.zeros(image.shape, bool)
    with pytest.raises(ValueError, match="num_channels"):
        full_volume(image, conv_predictor, (16, 16, 16), 0.25, 3, window_mask=empty)
    stats = WindowStats()
    bg = full_volume(
        image,
        conv_predictor,
        (16, 16, 16),
        0.25,
        3,
        window_mask=empty,
        num_channels=3,
        stats=stats,
    )
    assert bg.shape == (3, *image.shape) and stats.run == 0 and stats.skipped > 0
    assert np.all(bg[0] == 20.0) and np.all(bg[1:] == -20.0)
