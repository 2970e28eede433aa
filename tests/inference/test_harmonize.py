"""Noise harmonisation (inference.harmonize): the noise measured on soft tissue, a scan within
the limit passed through untouched, a noisier one smoothed by the narrowest Gaussian that
brings it down to the limit, and the card's ``pipeline.harmonize`` applied by the predictor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import ndimage

from inference.harmonize import SIGMAS_MM, harmonize, noise_hu
from inference.package import ModelPackage
from inference.predict import Predictor
from inference.session import SessionCache
from preread.domain import Geometry
from tests.inference.tiny_model import write_tiny_staged_package
from training.phantoms import generate_phantom

SHAPE = (64, 48, 48)


def _grid() -> Geometry:
    return Geometry(
        shape=SHAPE,
        origin=(0.0, 0.0, 0.0),
        row_direction=(1.0, 0.0, 0.0),
        column_direction=(0.0, 1.0, 0.0),
        slice_direction=(0.0, 0.0, 1.0),
        spacing=(1.0, 1.0, 1.0),
    )


def _body(noise_sd: float, seed: int = 0, blotch_mm: float = 0.0) -> np.ndarray:
    """Air around a block of 40 HU tissue, plus noise (white, or blurred to ``blotch_mm`` and
    scaled back to ``noise_sd``: an iterative reconstruction's blotches)."""
    rng = np.random.default_rng(seed)
    hu = np.full(SHAPE, -1000.0, dtype=np.float32)
    hu[:, 6:-6, 6:-6] = 40.0
    noise = rng.normal(0.0, 1.0, SHAPE)
    if blotch_mm:
        noise = ndimage.gaussian_filter(noise, blotch_mm)
    noise *= noise_sd / noise.std()
    return (hu + noise).astype(np.float32)


@pytest.mark.parametrize("blotch_mm", [0.0, 1.0])
def test_the_noise_is_the_standard_deviation_on_soft_tissue(blotch_mm: float) -> None:
    measured = noise_hu(_body(30.0, blotch_mm=blotch_mm), _grid())
    assert measured is not None
    # within a 5-voxel box the mean takes a share of the noise away, more of blotchy noise
    low = 0.9 if not blotch_mm else 0.6
    assert low * 30.0 <= measured <= 30.0


def test_a_scan_within_the_limit_is_passed_through_untouched() -> None:
    hu = _body(20.0)
    out = harmonize(hu, _grid(), max_noise_hu=30.0)
    assert out.hu is hu
    assert out.sigma_mm is None and out.noise_after_hu is None
    assert out.noise_hu is not None and out.noise_hu <= 20.0


def test_a_scan_without_soft_tissue_is_not_measured_nor_changed() -> None:
    hu = np.full(SHAPE, -1000.0, dtype=np.float32)
    assert noise_hu(hu, _grid()) is None
    assert harmonize(hu, _grid(), max_noise_hu=30.0).hu is hu


def test_a_noisier_scan_is_smoothed_by_the_narrowest_gaussian_that_is_enough() -> None:
    hu, grid = _body(90.0), _grid()
    out = harmonize(hu, grid, max_noise_hu=30.0)
    assert out.sigma_mm is not None and out.noise_hu is not None and out.noise_after_hu is not None
    assert out.noise_hu > 80.0
    assert out.noise_after_hu <= 30.0
    after = noise_hu(out.hu, grid)
    assert after is not None and after <= 30.0
    narrower = [s for s in SIGMAS_MM if s < out.sigma_mm]
    assert narrower, "90 HU of white noise needs more than the narrowest Gaussian"
    too_little = noise_hu(ndimage.gaussian_filter(hu, narrower[-1]).astype(np.float32), grid)
    assert too_little is not None and too_little > 30.0
    # the tissue's level is kept: smoothing takes noise away, not attenuation
    inner = out.hu[8:-8, 12:-12, 12:-12]
    assert abs(float(inner.mean()) - 40.0) < 2.0


def test_the_shape_must_match_the_geometry() -> None:
    with pytest.raises(ValueError, match="differs from the geometry"):
        harmonize(np.zeros((4, 4, 4), dtype=np.float32), _grid(), max_noise_hu=30.0)


def _with_harmonize(folder: Path, max_noise_hu: float) -> ModelPackage:
    card = yaml.safe_load((folder / "model.yaml").read_text())
    card["pipeline"]["harmonize"] = {"max_noise_hu": max_noise_hu}
    (folder / "model.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return ModelPackage.load(folder)


def test_the_predictor_harmonizes_a_noisy_scan_and_leaves_a_quiet_one(tmp_path: Path) -> None:
    phantom = generate_phantom(31, matrix=96, max_slices=60)
    plain = ModelPackage.load(write_tiny_staged_package(tmp_path / "a" / "lung-nodule" / "2.0.0"))
    quiet = _with_harmonize(
        write_tiny_staged_package(tmp_path / "b" / "lung-nodule" / "2.0.0"), 500.0
    )
    strict = _with_harmonize(
        write_tiny_staged_package(tmp_path / "c" / "lung-nodule" / "2.0.0"), 1.0
    )
    sessions = SessionCache()
    base = Predictor(plain, sessions=sessions).predict(phantom.volume)
    same = Predictor(quiet, sessions=sessions).predict(phantom.volume)
    smoothed = Predictor(strict, sessions=sessions).predict(phantom.volume)
    assert base.noise is None
    assert same.noise is not None and same.noise[1] is None
    assert same.findings == base.findings
    np.testing.assert_array_equal(same.probability, base.probability)
    assert smoothed.noise is not None and smoothed.noise[1] == SIGMAS_MM[-1]
    assert not np.array_equal(smoothed.probability, base.probability)
