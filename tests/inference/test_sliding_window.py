from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage

from inference.sliding_window import (
    BlendMode,
    Predictor,
    grow_region,
    importance_map,
    sliding_window_box,
    window_slices,
)


def full_volume(
    image: npt.NDArray[np.float32],
    predictor: Predictor,
    roi_size: Sequence[int],
    overlap: float,
    batch_size: int,
    mode: BlendMode = "gaussian",
    *,
    background_logit: float = 20.0,
    **options: Any,
) -> npt.NDArray[np.float32]:
    """:func:`sliding_window_box` placed in the whole image, background outside its box: what
    MONAI's ``sliding_window_inference`` returns for the same windows."""
    inner, box = sliding_window_box(
        image, predictor, roi_size, overlap, batch_size, mode,
        background_logit=background_logit, **options,
    )  # fmt: skip
    out = np.full((inner.shape[0], *image.shape), -background_logit, dtype=np.float32)
    out[0] = background_logit
    out[(slice(None), *box)] = inner
    return out


_K1 = np.random.default_rng(7).standard_normal((3, 3, 3)).astype(np.float32)


def conv_predictor(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """A fixed, position-independent network: [B, 1, d, h, w] → [B, 2, d, h, w]."""
    out = np.empty((batch.shape[0], 2, *batch.shape[2:]), dtype=np.float32)
    for b, x in enumerate(batch[:, 0]):
        out[b, 0] = ndimage.correlate(x, _K1, mode="constant")
        out[b, 1] = np.tanh(3.0 * x - 1.0) + 0.1 * x * x
    return out


@pytest.mark.train
@pytest.mark.parametrize(
    ("shape", "roi", "overlap", "batch", "mode"),
    [
        ((37, 50, 29), (16, 24, 32), 0.25, 3, "gaussian"),  # 29 < 32: padded and cropped
        ((37, 50, 29), (16, 24, 32), 0.5, 1, "gaussian"),
        ((20, 33, 41), (20, 16, 16), 0.25, 4, "constant"),  # roi == image along one axis
        ((12, 10, 9), (16, 16, 16), 0.25, 2, "gaussian"),  # smaller than the roi everywhere
    ],
)
def test_matches_monai(
    shape: tuple[int, int, int],
    roi: tuple[int, int, int],
    overlap: float,
    batch: int,
    mode: BlendMode,
) -> None:
    import monai.inferers as inferers
    import torch

    image = np.random.default_rng(1).random(shape, dtype=np.float32)

    def torch_predictor(t):
        return torch.from_numpy(conv_predictor(t.numpy()))

    expected = inferers.sliding_window_inference(
        torch.from_numpy(image)[None, None],
        roi,
        batch,
        torch_predictor,
        overlap=overlap,
        mode=mode,
        sigma_scale=0.125,
    )[0].numpy()
    ours = full_volume(image, conv_predictor, roi, overlap, batch, mode)
    assert ours.shape == expected.shape == (2, *shape)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


@pytest.mark.train
def test_importance_map_matches_monai() -> None:
    utils = pytest.importorskip("monai.data.utils")
    for roi in [(16, 24, 32), (7, 8, 9)]:
        expected = utils.compute_importance_map(roi, mode="gaussian", sigma_scale=0.125).numpy()
        np.testing.assert_allclose(importance_map(roi, "gaussian"), expected, rtol=1e-6)


def test_identity_predictor_gives_back_the_image() -> None:
    image = np.random.default_rng(2).random((30, 25, 40), dtype=np.float32)
    out = full_volume(image, lambda b: b.copy(), (16, 16, 16), 0.5, 3, "gaussian")
    np.testing.assert_allclose(out[0], image, atol=1e-6)


def test_windows_cover_the_image_like_monai() -> None:
    slices = window_slices((37, 50, 32), (16, 24, 32), 0.25)
    assert [s[0].start for s in slices[:: len(slices) // 3]] == [0, 12, 21]
    covered = np.zeros((37, 50, 32), bool)
    for s in slices:
        covered[s] = True
    assert covered.all()
    assert len(slices) == 3 * 3 * 1


def test_region_restricts_the_windows() -> None:
    image = np.random.default_rng(3).random((40, 50, 60), dtype=np.float32)
    calls: list[tuple[int, ...]] = []

    def counting(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        calls.append(batch.shape)
        return conv_predictor(batch)

    region = (slice(10, 30), slice(5, 15), slice(20, 50))
    out = full_volume(image, counting, (16, 16, 16), 0.25, 2, region=region, background_logit=9.0)
    grown = grow_region(region, (16, 16, 16), (40, 50, 60))
    assert grown == (slice(10, 30), slice(2, 18), slice(20, 50))
    inner = full_volume(image[grown], conv_predictor, (16, 16, 16), 0.25, 2)
    np.testing.assert_array_equal(out[(slice(None), *grown)], inner)
    outside = np.ones(image.shape, bool)
    outside[grown] = False
    assert np.all(out[0][outside] == 9.0) and np.all(out[1][outside] == -9.0)
    full_windows = len(window_slices((40, 50, 60), (16, 16, 16), 0.25))
    assert sum(c[0] for c in calls) < full_windows
    # what the serving path reads: the same values, only inside the box the windows tile
    box_out, box = sliding_window_box(image, conv_predictor, (16, 16, 16), 0.25, 2, region=region)
    assert box == grown
    np.testing.assert_array_equal(box_out, inner)


def test_grow_region_stays_inside_the_image() -> None:
    assert grow_region((slice(0, 3), slice(58, 60), slice(None)), (16, 16, 16), (40, 60, 8)) == (
        slice(0, 16),
        slice(44, 60),
        slice(0, 8),
    )
    with pytest.raises(ValueError, match="empty region"):
        grow_region((slice(5, 5), slice(None), slice(None)), (4, 4, 4), (10, 10, 10))


def test_bad_predictor_output_is_reported() -> None:
    with pytest.raises(ValueError, match="predictor returned shape"):
        full_volume(np.zeros((8, 8, 8), np.float32), lambda b: b[:, :, :4], (8, 8, 8), 0.25, 1)
