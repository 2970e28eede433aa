from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from inference.errors import InferenceError
from inference.package import ModelPackage
from inference.predict import Predictor, foreground_probability
from inference.preprocess import to_source_grid
from inference.session import SessionCache
from tests.inference.phantoms import FFS, HFS, geometry, spheres
from tests.inference.tiny_model import write_tiny_package

RADIUS = 7.0


@pytest.mark.parametrize("orientation", [HFS, FFS], ids=["HFS", "FFS"])
def test_two_spheres_are_found_where_they_are(package: ModelPackage, orientation) -> None:
    g = geometry((50, 120, 120), (2.0, 0.8, 0.8), orientation)
    mid = g.index_to_lps((np.array(g.shape) - 1) / 2.0)
    centres = [tuple(mid + np.array([-25.3, 4.1, -6.2])), tuple(mid + np.array([24.6, -3.3, 8.9]))]
    volume = spheres(g, centres, RADIUS)

    prediction = Predictor(package, ["CPUExecutionProvider"], "fail").predict(volume)

    assert prediction.model_id == "tiny-nodule" and prediction.model_version == "1.0.0"
    assert prediction.session_info.provider == "CPUExecutionProvider"
    assert len(prediction.findings) == 2
    by_x = sorted(prediction.findings, key=lambda f: f.center_lps_mm[0])
    for finding, centre in zip(by_x, centres, strict=True):
        assert np.linalg.norm(np.subtract(finding.center_lps_mm, centre)) < 1.0
        # sampled on 2 mm slices, a ball's digitised extent is up to one slice longer
        assert finding.long_axis_mm == pytest.approx(2 * RADIUS, abs=2.5)
        assert finding.volume_mm3 == pytest.approx(4 / 3 * math.pi * RADIUS**3, rel=0.2)
        assert finding.probability > 0.99
        assert -200.0 < finding.mean_hu <= 0.0
    assert [f.lung_side for f in by_x] == ["right", "left"]

    mg = prediction.model_geometry
    assert prediction.probability.shape == prediction.labels.shape == mg.shape
    assert prediction.probability.dtype == np.float32
    assert set(np.unique(prediction.labels)) == {0, 1, 2}
    assert prediction.region is not None  # windows ran around the spheres only
    assert set(prediction.timings) == {"preprocess", "infer", "postprocess", "total"}

    labels_on_series = to_source_grid(prediction.labels, mg, g, order=0)
    assert labels_on_series.shape == g.shape
    truth = volume.array > -425.0
    found = labels_on_series > 0
    dice = 2 * (truth & found).sum() / (truth.sum() + found.sum())
    assert dice > 0.85


def test_region_hint_and_empty_volume(package: ModelPackage) -> None:
    g = geometry((30, 80, 80), (2.0, 1.0, 1.0))
    mid = g.index_to_lps((np.array(g.shape) - 1) / 2.0)
    centres = [tuple(mid + np.array([-20.0, 0.0, 0.0])), tuple(mid + np.array([20.0, 0.0, 0.0]))]
    volume = spheres(g, centres, 6.0)
    predictor = Predictor(package, sessions=SessionCache())
    # a hint around the right-hand sphere only
    lo = tuple(np.array(centres[0]) - 12.0)
    hi = tuple(np.array(centres[0]) + 12.0)
    prediction = predictor.predict(volume, region_hint=(lo, hi))
    assert len(prediction.findings) == 1
    assert prediction.findings[0].center_lps_mm[0] < mid[0]

    air = spheres(g, [], 1.0, outside=-1000.0)
    empty = predictor.predict(air)
    assert empty.findings == () and empty.region is None
    assert not empty.probability.any()


def test_without_body_crop_the_whole_grid_is_read(package: ModelPackage) -> None:
    g = geometry((20, 40, 40), (2.0, 1.0, 1.0))
    volume = spheres(g, [tuple(g.index_to_lps([10, 20, 20]))], 5.0)
    prediction = Predictor(package, crop_to_body=False).predict(volume)
    assert prediction.region == tuple(slice(0, n) for n in prediction.model_geometry.shape)
    assert len(prediction.findings) == 1


def test_foreground_probability_is_the_softmax() -> None:
    logits = np.random.default_rng(4).normal(0, 30, (3, 4, 5, 6)).astype(np.float32)
    e = np.exp(logits.astype(np.float64) - logits.max(axis=0))
    for channel in (1, 2):
        expected = e[channel] / e.sum(axis=0)
        np.testing.assert_allclose(foreground_probability(logits, channel), expected, atol=1e-6)
    two = logits[:2]
    e2 = np.exp(two.astype(np.float64) - two.max(axis=0))
    np.testing.assert_allclose(foreground_probability(two, 1), e2[1] / e2.sum(axis=0), atol=1e-6)


def test_a_detector_on_a_coarser_grid_is_brought_back_to_the_model_grid(
    package_dir: Path,
) -> None:
    """``pipeline.detector_spacing_mm``: the network reads a 2 mm grid, the findings are made
    and measured on the 1 mm model grid, where they lie as on the finer detector's."""
    card = ModelPackage.load(package_dir).card
    pipeline = card.pipeline.model_copy(update={"detector_spacing_mm": 2.0})
    card.model_copy(update={"pipeline": pipeline}).to_yaml(package_dir / "model.yaml")
    coarse = ModelPackage.load(package_dir)
    g = geometry((50, 120, 120), (2.0, 0.8, 0.8))
    mid = g.index_to_lps((np.array(g.shape) - 1) / 2.0)
    centres = [tuple(mid + np.array([-25.3, 4.1, -6.2])), tuple(mid + np.array([24.6, -3.3, 8.9]))]
    volume = spheres(g, centres, RADIUS)

    fine = write_tiny_package(package_dir.parent.parent / "fine" / "1.0.0")
    on_model_grid = Predictor(ModelPackage.load(fine), sessions=SessionCache()).predict(volume)
    prediction = Predictor(coarse, sessions=SessionCache()).predict(volume)

    assert prediction.model_geometry == on_model_grid.model_geometry
    assert prediction.probability.shape == prediction.model_geometry.shape
    assert prediction.windows is not None and on_model_grid.windows is not None
    assert 0 < prediction.windows.run < on_model_grid.windows.run  # an eighth of the voxels
    assert len(prediction.findings) == 2
    for got, ref in zip(
        sorted(prediction.findings, key=lambda f: f.center_lps_mm[0]),
        sorted(on_model_grid.findings, key=lambda f: f.center_lps_mm[0]),
        strict=True,
    ):
        assert np.linalg.norm(np.subtract(got.center_lps_mm, ref.center_lps_mm)) < 0.5
        assert got.volume_mm3 == pytest.approx(ref.volume_mm3, rel=0.1)
    assert prediction.probability[prediction.labels > 0].min() >= 0.5
    with pytest.raises(InferenceError, match="detector_spacing_mm"):
        Predictor(coarse, sessions=SessionCache(), device_window="on")
