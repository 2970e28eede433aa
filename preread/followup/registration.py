"""Rigid registration of a prior study onto the current one, from point sets in LPS mm.

Two CTs of the same patient taken months apart share no frame of reference: the patient lies
elsewhere on the table (shifts of centimetres) and a little turned (a few degrees). To say
where a prior nodule lies in the current study, the prior's patient coordinates are mapped
into the current's by a rigid transform estimated from anatomy both studies show, in
practice the surface of the lung mask (:func:`mask_surface_points`).

:func:`register_points` aligns the centroids, then refines with the iterative closest point
algorithm (ICP): each moving point is paired with its nearest fixed point (k-d tree), the
farthest pairs are dropped (the parts one study shows and the other does not: a different
scan range, an effusion, a collapsed lobe) and the rotation and translation that best lay
the remaining points onto the fixed surface are solved by least squares (point-to-plane ICP,
Chen & Medioni 1992). The rotation starts from identity: repositioning turns the patient by
a few degrees, well within ICP's reach, while principal axes would add nothing but
ambiguity (a chest is nearly symmetric, so its axes flip sign and swap between near-equal
extents). Lungs also change shape with inspiration, so the fit is approximate; its residual
(the median distance from a moved point to the fixed surface) says how well it went.

Pure functions of arrays: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.spatial import cKDTree

from preread.domain import Geometry, Vec3

__all__ = ["RigidTransform", "mask_surface_points", "register_points"]

Matrix3 = tuple[Vec3, Vec3, Vec3]

_ORTHONORMAL_TOL = 1e-6


def _vec3(a: npt.ArrayLike) -> Vec3:
    v = np.asarray(a, dtype=np.float64).reshape(3)
    return (float(v[0]), float(v[1]), float(v[2]))


@dataclass(frozen=True)
class RigidTransform:
    """The rigid map ``x ↦ R·x + t`` between two patient coordinate systems (LPS, mm).

    As :func:`register_points` returns it, it maps the *moving* study's coordinates (the
    prior's) to the *fixed* study's (the current's). ``rotation`` holds the rows of ``R``, a
    proper rotation (orthonormal, determinant +1; ValueError otherwise).
    """

    rotation: Matrix3
    translation: Vec3

    def __post_init__(self) -> None:
        r = np.asarray(self.rotation, dtype=np.float64)
        if r.shape != (3, 3) or not np.all(np.isfinite(r)):
            raise ValueError(f"rotation must be a finite 3×3 matrix, got {self.rotation!r}")
        if not np.allclose(r @ r.T, np.eye(3), atol=_ORTHONORMAL_TOL) or np.linalg.det(r) < 0:
            raise ValueError("rotation must be orthonormal with determinant +1")
        t = np.asarray(self.translation, dtype=np.float64)
        if t.shape != (3,) or not np.all(np.isfinite(t)):
            raise ValueError(f"translation must be 3 finite numbers, got {self.translation!r}")
        object.__setattr__(self, "rotation", (_vec3(r[0]), _vec3(r[1]), _vec3(r[2])))
        object.__setattr__(self, "translation", _vec3(t))

    @classmethod
    def identity(cls) -> RigidTransform:
        """The transform that changes nothing (two studies in one frame of reference)."""
        return cls(((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)), (0.0, 0.0, 0.0))

    @classmethod
    def from_arrays(cls, rotation: npt.ArrayLike, translation: npt.ArrayLike) -> RigidTransform:
        """From a 3×3 rotation matrix and a translation vector (any array-like)."""
        r = np.asarray(rotation, dtype=np.float64)
        if r.shape != (3, 3):
            raise ValueError(f"rotation must be 3×3, got shape {r.shape}")
        return cls((_vec3(r[0]), _vec3(r[1]), _vec3(r[2])), _vec3(translation))

    @property
    def rotation_matrix(self) -> npt.NDArray[np.float64]:
        """``R`` as a (3, 3) array."""
        return np.asarray(self.rotation, dtype=np.float64)

    @property
    def rotation_deg(self) -> float:
        """The angle of the rotation in degrees (0–180), about whichever axis: a plausibility
        check, as repositioning turns a patient by a few degrees at most."""
        cos = (float(np.trace(self.rotation_matrix)) - 1.0) / 2.0
        return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))

    def apply(self, point: Sequence[float]) -> Vec3:
        """One point mapped: ``R·point + t``."""
        return _vec3(self.apply_points(np.asarray(point, dtype=np.float64).reshape(1, 3))[0])

    def apply_points(self, points: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(N, 3) points mapped row by row."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        return np.asarray(p @ self.rotation_matrix.T + np.asarray(self.translation))

    def inverse(self) -> RigidTransform:
        """The transform the other way: ``x ↦ Rᵀ·(x − t)``."""
        r = self.rotation_matrix
        return RigidTransform.from_arrays(r.T, -(r.T @ np.asarray(self.translation)))


def _points(a: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    p = np.asarray(a, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"{name} points must have shape (N, 3), got {p.shape}")
    if len(p) < 3:
        raise ValueError(f"{name} needs at least 3 points, got {len(p)}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} points must be finite")
    return p


def _normals(
    points: npt.NDArray[np.float64], tree: cKDTree, neighbours: int
) -> npt.NDArray[np.float64]:
    """Unit surface normals (sign arbitrary) of sampled surface ``points`` (``tree`` is their
    k-d tree): per point, the direction of least spread of its ``neighbours`` nearest points
    (local PCA)."""
    k = min(neighbours, len(points))
    _, idx = tree.query(points, k=k)
    near = points[idx.reshape(len(points), k)]
    near = near - near.mean(axis=1, keepdims=True)
    _, vectors = np.linalg.eigh(np.einsum("nki,nkj->nij", near, near))
    return np.asarray(vectors[:, :, 0])  # eigh sorts ascending: the least eigenvalue's vector


def _rotation(omega: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The rotation by the rotation vector ``omega`` (axis × angle in radians), Rodrigues."""
    angle = float(np.linalg.norm(omega))
    if angle < 1e-15:
        return np.eye(3)
    x, y, z = omega / angle
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.asarray(np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k))


def _plane_step(
    p: npt.NDArray[np.float64], q: npt.NDArray[np.float64], n: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The rotation ``R`` and translation ``t`` that bring the points ``p`` closest to the
    planes through ``q`` with normals ``n``: Σ((R·pᵢ + t − qᵢ)·nᵢ)² linearised in the angle
    (small at every step) and solved by least squares, about the centroid of ``p`` to keep
    the rotation and the translation apart. Directions the surface leaves free (a sphere's
    rotation) get no motion (the least-norm solution)."""
    c = p.mean(axis=0)
    a = np.hstack([np.cross(p - c, n), n])
    b = np.einsum("ni,ni->n", q - p, n)
    x, *_ = np.linalg.lstsq(a, b, rcond=None)
    r = _rotation(x[:3])
    return r, c - r @ c + x[3:]


def register_points(
    moving: npt.ArrayLike,
    fixed: npt.ArrayLike,
    *,
    max_iterations: int = 50,
    inlier_quantile: float = 0.9,
    tolerance_mm: float = 1e-3,
    neighbours: int = 20,
) -> tuple[RigidTransform, float]:
    """The rigid transform that lays the ``moving`` points (N, 3) onto the ``fixed`` ones
    (M, 3), LPS mm, and the residual in mm.

    Both point sets sample a surface. Centroid alignment, then at most ``max_iterations``
    ICP steps (see the module docstring) in the point-to-plane form: a moving point is drawn
    onto the tangent plane at its nearest fixed point (normal from that point's
    ``neighbours`` nearest fixed points), not onto the point itself, so the two samplings
    may slide along the surface. Point-to-point ICP snaps one voxel lattice onto the other
    (the rows of surface voxels on each slice) and misses a tilt of a few degrees between
    the scan planes; point-to-plane does not. Each step fits only the pairs up to the
    ``inlier_quantile`` of the pair distances, and the iteration stops once a step moves no
    point by more than ``tolerance_mm``.

    The residual is the median distance from each moved point to the fixed surface (the
    tangent plane at its nearest fixed point), over all points: about 0 for an exact fit
    whatever the sampling, a few mm where the anatomy changed or the fit failed.

    Register the prior's points (moving) onto the current's (fixed) to get the transform from
    the prior's patient coordinates to the current's.
    """
    m = _points(moving, "moving")
    f = _points(fixed, "fixed")
    if max_iterations < 0:
        raise ValueError(f"max_iterations must not be negative, got {max_iterations}")
    if not 0.0 < inlier_quantile <= 1.0:
        raise ValueError(f"inlier_quantile must be in (0, 1], got {inlier_quantile}")
    if neighbours < 3:
        raise ValueError(f"neighbours must be at least 3, got {neighbours}")
    tree = cKDTree(f)
    normals = _normals(f, tree, neighbours)
    rotation = np.eye(3)
    translation = f.mean(axis=0) - m.mean(axis=0)
    for _ in range(max_iterations):
        moved = m @ rotation.T + translation
        distance, nearest = tree.query(moved)
        keep = distance <= np.quantile(distance, inlier_quantile)
        if int(np.count_nonzero(keep)) < 6:
            keep[:] = True
        step_r, step_t = _plane_step(moved[keep], f[nearest[keep]], normals[nearest[keep]])
        rotation = step_r @ rotation
        translation = step_r @ translation + step_t
        shift = moved @ step_r.T + step_t - moved
        if float(np.max(np.linalg.norm(shift, axis=1))) < tolerance_mm:
            break
    moved = m @ rotation.T + translation
    _, nearest = tree.query(moved)
    off_plane = np.abs(np.einsum("ni,ni->n", moved - f[nearest], normals[nearest]))
    return RigidTransform.from_arrays(rotation, translation), float(np.median(off_plane))


_FACES = ndimage.generate_binary_structure(3, 1)


def mask_surface_points(
    mask: npt.ArrayLike, geometry: Geometry, *, max_points: int = 20000, seed: int = 0
) -> npt.NDArray[np.float64]:
    """LPS mm centres (N, 3) of the surface voxels of ``mask`` (k, j, i) on ``geometry``.

    A surface voxel is one of the mask with a face neighbour outside it. Faces on the edge of
    the array do not count: where the scan range cuts an organ, the cut is the field of view,
    not anatomy, and differs from study to study. More than ``max_points`` surface voxels are
    thinned to ``max_points`` at random, reproducibly for a given ``seed``, keeping the array
    order. An empty mask gives an empty (0, 3) array.
    """
    m = np.asarray(mask, dtype=bool)
    if m.shape != tuple(geometry.shape):
        raise ValueError(f"mask shape {m.shape} != geometry shape {geometry.shape}")
    if max_points < 1:
        raise ValueError(f"max_points must be positive, got {max_points}")
    interior = ndimage.binary_erosion(m, structure=_FACES, border_value=1)
    kji = np.argwhere(m & ~interior)
    if len(kji) > max_points:
        pick = np.random.default_rng(seed).choice(len(kji), size=max_points, replace=False)
        kji = kji[np.sort(pick)]
    return geometry.index_to_lps(kji.reshape(-1, 3))
