"""The detector's candidates (:func:`inference.candidates.find_candidates`): components, their
centres, the split of components larger than a nodule, and the point filter of the splits."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from inference.candidates import find_candidates

SHAPE = (40, 48, 56)


def _probability() -> npt.NDArray[np.float32]:
    """Two balls (r 3 and 2 voxels) and a rod of two fused balls (r 4) along i."""
    k, j, i = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    p = np.zeros(SHAPE, dtype=np.float32)
    p[(k - 10) ** 2 + (j - 12) ** 2 + (i - 14) ** 2 <= 9] = 0.9
    p[(k - 30) ** 2 + (j - 36) ** 2 + (i - 40) ** 2 <= 4] = 0.6
    for ci in (20, 27):
        p[(k - 22) ** 2 + (j - 30) ** 2 + (i - ci) ** 2 <= 16] = 0.8
    return p


def test_components_centres_and_labels_as_over_the_whole_volume() -> None:
    p = _probability()
    found = find_candidates(p, threshold=0.5, min_voxels=5)
    whole, n = ndimage.label(p >= 0.5, structure=np.ones((3, 3, 3), dtype=bool))
    assert n == 3 and np.array_equal(found.components, whole)  # same numbering, zero elsewhere
    centres = sorted(tuple(round(x, 3) for x in c.centre_kji) for c in found.candidates)
    assert centres[0] == (10.0, 12.0, 14.0) and centres[2] == (30.0, 36.0, 40.0)
    assert all(c.radius_vox is None for c in found.candidates)
    assert found.candidates[0].box == ndimage.find_objects(whole)[0]


def test_a_component_larger_than_a_nodule_is_split_and_filtered() -> None:
    p = _probability()
    split = find_candidates(p, threshold=0.5, min_voxels=5, max_voxels=300)
    rod = [c for c in split.candidates if c.radius_vox is not None]
    assert sorted(round(c.centre_kji[2]) for c in rod) == [20, 27]  # its two deepest points

    def left_half(points: npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
        return np.asarray(points[:, 2] < 24, dtype=bool)

    kept = find_candidates(p, threshold=0.5, min_voxels=5, max_voxels=300, within=left_half)
    assert [round(c.centre_kji[2]) for c in kept.candidates if c.radius_vox is not None] == [20]


def test_nothing_above_the_threshold() -> None:
    found = find_candidates(_probability(), threshold=0.95)
    assert found.candidates == () and not found.components.any()
    assert found.components.shape == SHAPE
