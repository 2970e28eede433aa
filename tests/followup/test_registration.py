"""Rigid registration of a repositioned prior onto the current study (ICP on surface points)."""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt
import pytest

from preread.domain import Geometry
from preread.followup.registration import RigidTransform, mask_surface_points, register_points

SHIFT = (20.0, -15.0, 30.0)


def rotation_z(deg: float) -> npt.NDArray[np.float64]:
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


def rotation_x(deg: float) -> npt.NDArray[np.float64]:
    a = np.radians(deg)
    return np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]])


# Two lungs as ellipsoids (LPS mm): the right lung at −x, the left at +x, slightly unequal.
LUNGS = (
    (np.array([-70.0, 10.0, 0.0]), np.array([45.0, 60.0, 90.0])),
    (np.array([65.0, 10.0, 5.0]), np.array([40.0, 58.0, 85.0])),
)


def lung_mask(geometry: Geometry, to_anatomy: RigidTransform) -> npt.NDArray[np.bool_]:
    """The lungs on ``geometry``: voxels whose centre, mapped by ``to_anatomy`` into the
    frame the ellipsoids are defined in, lies inside one."""
    # the voxel centres in the anatomy's frame, built axis by axis (k, j, i) by broadcasting
    steps = to_anatomy.rotation_matrix @ geometry.affine[:3, :3]
    k, j, i = (
        np.arange(n, dtype=np.float64)[:, None] * steps[:, a] for a, n in enumerate(geometry.shape)
    )
    start = to_anatomy.apply(geometry.origin)
    inside = np.zeros(geometry.shape, dtype=bool)
    for centre, axes in LUNGS:
        offset = np.asarray(start) - centre
        r2 = sum(
            (
                (offset[c] + k[:, c, None, None] + j[None, :, c, None] + i[None, None, :, c])
                / axes[c]
            )
            ** 2
            for c in range(3)
        )
        inside |= r2 <= 1.0
    return inside


@functools.cache
def prior_lungs() -> npt.NDArray[np.float64]:
    """Surface points of the lungs in the prior study (shared by the registration cases)."""
    geometry = axial((75, 70, 110), (-140.0, -80.0, -110.0))
    return mask_surface_points(
        lung_mask(geometry, RigidTransform.identity()), geometry, max_points=8000
    )


def axial(shape: tuple[int, int, int], origin: tuple[float, float, float]) -> Geometry:
    return Geometry(
        shape=shape,
        origin=origin,
        row_direction=(1.0, 0.0, 0.0),
        column_direction=(0.0, 1.0, 0.0),
        slice_direction=(0.0, 0.0, 1.0),
        spacing=(3.0, 2.5, 2.5),
    )


def test_recovers_a_known_transform_of_the_same_points() -> None:
    rng = np.random.default_rng(1)
    directions = rng.normal(size=(3000, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    moving = directions * np.array([100.0, 70.0, 120.0])  # an ellipsoid's surface
    truth = RigidTransform.from_arrays(rotation_z(4.0) @ rotation_x(2.0), SHIFT)
    found, residual = register_points(moving, truth.apply_points(moving))
    assert np.abs(found.apply_points(moving) - truth.apply_points(moving)).max() < 1e-3
    assert residual < 1e-3
    assert found.rotation_deg == pytest.approx(truth.rotation_deg, abs=1e-3)


@pytest.mark.parametrize(
    ("about_z", "about_x", "missing_slices"),
    [(4.0, 0.0, 0), (-5.0, 3.0, 0), (3.0, -2.0, 10)],
)
def test_registers_lung_masks_of_a_repositioned_patient_within_1_mm(
    about_z: float, about_x: float, missing_slices: int
) -> None:
    """The prior and the current CT sample the same lungs on different grids; in the current
    the patient lies turned a few degrees and shifted (20, −15, 30) mm, and the current scan
    may stop short of the lung bases (the slices missing are 3 mm each)."""
    truth = RigidTransform.from_arrays(rotation_z(about_z) @ rotation_x(about_x), SHIFT)
    current_geometry = axial(
        (75 - missing_slices, 70, 110), (-120.0, -95.0, -80.0 + 3.0 * missing_slices)
    )
    prior = prior_lungs()
    current = mask_surface_points(
        lung_mask(current_geometry, truth.inverse()), current_geometry, max_points=8000
    )
    found, residual = register_points(prior, current)
    error = np.linalg.norm(found.apply_points(prior) - truth.apply_points(prior), axis=1)
    assert error.max() < 1.0
    assert residual < 1.0
    # a nodule centre in the prior lands where it lies in the current
    nodule = (-60.0, 20.0, 40.0)
    assert np.linalg.norm(np.subtract(found.apply(nodule), truth.apply(nodule))) < 1.0


def test_transform_apply_inverse_and_identity() -> None:
    t = RigidTransform.from_arrays(rotation_z(5.0), SHIFT)
    p = (12.0, -3.0, 40.0)
    assert np.allclose(t.inverse().apply(t.apply(p)), p)
    assert RigidTransform.identity().apply(p) == p
    assert t.rotation_deg == pytest.approx(5.0)
    assert np.allclose(t.apply(p), rotation_z(5.0) @ np.array(p) + np.array(SHIFT))


def test_transform_rejects_a_reflection_or_a_scaling() -> None:
    with pytest.raises(ValueError, match="determinant"):
        RigidTransform.from_arrays(np.diag([1.0, 1.0, -1.0]), (0, 0, 0))
    with pytest.raises(ValueError, match="orthonormal"):
        RigidTransform.from_arrays(np.eye(3) * 2, (0, 0, 0))


def test_register_points_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        register_points(np.zeros((10, 2)), np.zeros((10, 3)))
    with pytest.raises(ValueError, match="at least 3"):
        register_points(np.zeros((2, 3)), np.zeros((10, 3)))


def test_surface_points_of_a_box_lie_on_its_boundary_in_lps() -> None:
    geometry = Geometry(
        shape=(6, 7, 8),
        origin=(-10.0, 20.0, 100.0),
        row_direction=(1.0, 0.0, 0.0),
        column_direction=(0.0, 1.0, 0.0),
        slice_direction=(0.0, 0.0, 1.0),
        spacing=(2.0, 1.0, 0.5),
    )
    mask = np.zeros(geometry.shape, dtype=bool)
    mask[1:5, 1:6, 2:7] = True  # 4 × 5 × 5 voxels, 3 × 3 × 3 of them inside
    points = mask_surface_points(mask, geometry)
    assert points.shape == (4 * 5 * 5 - 2 * 3 * 3, 3)
    kji = np.rint(geometry.lps_to_index(points)).astype(int)
    assert mask[tuple(kji.T)].all()
    on_face = np.isin(kji[:, 0], [1, 4]) | np.isin(kji[:, 1], [1, 5]) | np.isin(kji[:, 2], [2, 6])
    assert on_face.all()
    # LPS: x from the column index i (0.5 mm), z from the slice index k (2 mm)
    assert points[:, 0].min() == pytest.approx(-10.0 + 2 * 0.5)
    assert points[:, 2].max() == pytest.approx(100.0 + 4 * 2.0)


def test_surface_points_skip_the_array_edge_and_thin_reproducibly() -> None:
    geometry = Geometry(
        shape=(10, 20, 20),
        origin=(0.0, 0.0, 0.0),
        row_direction=(1.0, 0.0, 0.0),
        column_direction=(0.0, 1.0, 0.0),
        slice_direction=(0.0, 0.0, 1.0),
        spacing=(1.0, 1.0, 1.0),
    )
    mask = np.zeros(geometry.shape, dtype=bool)
    mask[:, 5:15, 5:15] = True  # a column cut by the first and last slice
    points = mask_surface_points(mask, geometry)
    assert len(points) == 10 * (10 * 10 - 8 * 8)  # only the side walls, every slice
    few = mask_surface_points(mask, geometry, max_points=50, seed=3)
    assert few.shape == (50, 3)
    assert np.array_equal(few, mask_surface_points(mask, geometry, max_points=50, seed=3))
    assert mask_surface_points(np.zeros(geometry.shape, bool), geometry).shape == (0, 3)
    with pytest.raises(ValueError, match="shape"):
        mask_surface_points(np.zeros((3, 3, 3), bool), geometry)
