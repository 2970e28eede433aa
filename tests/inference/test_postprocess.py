from __future__ import annotations

import math

import numpy as np
import pytest

from inference.body import find_body
from inference.postprocess import find_nodules, long_axis_mm
from tests.inference.phantoms import FFS, HFS, geometry, voxel_lps

CASES = [
    ("HFS 1 mm", (60, 64, 70), (1.0, 1.0, 1.0), HFS),
    ("FFS anisotropic", (40, 90, 96), (1.25, 0.7, 0.7), FFS),
]


@pytest.mark.parametrize(("name", "shape", "spacing", "orientation"), CASES)
def test_spheres_are_measured(name, shape, spacing, orientation) -> None:
    g = geometry(shape, spacing, orientation)
    p = voxel_lps(g)
    mid = g.index_to_lps((np.array(shape) - 1) / 2.0)
    # (centre, radius mm, probability inside): sub-voxel centres on purpose
    balls = [
        (mid + np.array([-14.3, 3.2, 2.6]), 6.0, 0.8),
        (mid + np.array([13.1, -4.7, -3.1]), 9.0, 0.95),
        (mid + np.array([10.4, 12.3, 14.6]), 0.5, 0.99),  # one voxel: below min volume
    ]
    prob = np.zeros(shape, np.float32)
    for centre, radius, value in balls:
        prob[np.linalg.norm(p - centre, axis=-1) <= max(radius, 0.01)] = value
    hu = np.where(prob > 0, 30.0, -850.0).astype(np.float32)
    det = find_nodules(prob, hu, g, threshold=0.5, min_volume_mm3=30.0, midline_x_mm=float(mid[0]))

    assert len(det.findings) == 2
    first, second = det.findings
    assert (first.label, second.label) == (1, 2)
    assert first.probability == pytest.approx(0.95) and second.probability == pytest.approx(0.8)
    voxel = max(spacing)
    for finding, (centre, radius, _) in zip(det.findings, balls[1::-1], strict=True):
        assert np.linalg.norm(np.array(finding.center_lps_mm) - centre) < 0.5
        assert finding.long_axis_mm == pytest.approx(2 * radius, abs=voxel)
        assert finding.volume_mm3 == pytest.approx(4 / 3 * math.pi * radius**3, rel=0.10)
        assert finding.mean_hu == pytest.approx(30.0)
        assert (det.label_map == finding.label).sum() == finding.voxel_count
        (k0, j0, i0), (k1, j1, i1) = finding.bbox_kji  # type: ignore[misc]
        assert (det.label_map[k0:k1, j0:j1, i0:i1] == finding.label).sum() == finding.voxel_count
    assert first.lung_side == "left" and second.lung_side == "right"  # +x is the patient's left
    assert set(np.unique(det.label_map)) == {0, 1, 2}


def test_side_is_unknown_without_a_midline() -> None:
    g = geometry((10, 10, 10), (1.0, 1.0, 1.0))
    prob = np.zeros(g.shape, np.float32)
    prob[3:6, 3:6, 3:6] = 0.9
    (finding,) = find_nodules(prob, prob, g, threshold=0.5, min_volume_mm3=0.0).findings
    assert finding.lung_side is None
    assert finding.voxel_count == 27 and finding.volume_mm3 == pytest.approx(27.0)
    assert finding.center_lps_mm == pytest.approx(tuple(g.index_to_lps([4, 4, 4])))


def test_long_axis_of_degenerate_shapes() -> None:
    g = geometry((30, 30, 30), (2.0, 0.5, 0.5))
    rod = np.array([[5, 5, i] for i in range(20)], dtype=np.float64)  # along i: 19 × 0.5 + 0.5
    assert long_axis_mm(rod, g) == pytest.approx(10.0)
    plane = np.array([[3, j, i] for j in range(12) for i in range(12)], dtype=np.float64)
    assert long_axis_mm(plane, g) == pytest.approx(math.hypot(5.5, 5.5) + 0.5, abs=1e-6)
    assert long_axis_mm(np.array([[1.0, 2.0, 3.0]]), g) == 2.0


def test_body_box_and_midline() -> None:
    g = geometry((20, 40, 50), (2.0, 1.0, 1.0))
    hu = np.full(g.shape, -1000.0, np.float32)
    hu[5:15, 10:30, 10:40] = 40.0
    body = find_body(hu, g, margin_mm=4.0)
    assert body.box == (slice(3, 17), slice(6, 34), slice(6, 44))
    assert body.midline_x_mm == pytest.approx(g.index_to_lps([0, 0, 24.5])[0])
    empty = find_body(np.full(g.shape, -1000.0, np.float32), g)
    assert empty.box is None and empty.midline_x_mm is None
