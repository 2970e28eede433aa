"""Lung nodules of a phantom: shape, size, type, placement, drawing and exact ground truth.

A nodule is a star-shaped solid around its centre ``c``: a point ``p`` is inside when
``ρ(q) <= L(q/ρ)`` where ``q = diag(1/s) Rᵀ (p - c)`` (an ellipsoid with semi-axes ``s`` and
rotation ``R``), ``ρ = |q|`` and ``L(u) = 1 + Σ aₗ exp((u·vₗ - 1) / 0.25)`` adds smooth lobes.
Because the surface is known in closed form:

* ``center_lps_mm`` is the analytic centre of mass, ``c + R diag(s) · ¾ ∮ u L(u)⁴ dΩ / ∮ L(u)³ dΩ``
  (``c`` itself for ellipsoids; lobes move it by up to ~10 % of the radius);
* ``volume_mm3`` is the analytic volume ``det(diag s) · ⅓ ∮ L(u)³ dΩ``, integrated numerically
  over 4,000 quasi-uniform directions (relative error < 1e-3; exact for ellipsoids), not a voxel
  count, so it does not depend on the scanner grid;
* ``long_axis_mm`` is the largest distance between two points of the surface (its 3-D maximal
  diameter), from 1,500 surface samples (relative error < 0.5%).

The label of a voxel is "its centre is inside the surface"; the image has a partial-volume ramp
one voxel wide (see :mod:`training.raster`). Types and their HU: solid 5…55; ground-glass
−650…−350; part-solid a ground-glass halo (−650…−400) around a solid core (0…50) of 35–65 % of
its size.

Calcified nodules (benign, not to be reported) are ``solid`` with ``calcified=True``: fully
calcified (250…1000 HU) or centrally calcified (a dense core of 300…1000 HU, 40–70 % of the
size, in a soft-tissue rim of 20…50 HU). They are drawn into the image but never into the label
map (:meth:`NoduleShape.draw`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.spatial.distance import pdist

from preread.domain import NoduleType, TruthNodule, Vec3
from training.raster import AxisGrid, composite

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
Attachment = Literal["pleura", "vessel"] | None

_LOBE_WIDTH = 0.25


@dataclass(frozen=True)
class NoduleSpec:
    """A nodule to place exactly: a sphere of ``diameter_mm`` centred at ``center_lps_mm``.

    Passed to :func:`training.phantoms.generate_phantom` (``nodules=[...]``) to replace the
    randomly drawn nodules, e.g. to test geometry. Its position is not checked against the lungs.
    """

    center_lps_mm: Vec3
    diameter_mm: float
    type: NoduleType = "solid"
    attached_to: Attachment = None
    calcified: bool = False  # fully calcified (then the type is solid)
    #: part-solid only: the solid core's diameter / ``diameter_mm`` (None: drawn, 0.35–0.65)
    core_scale: float | None = None


def fibonacci_sphere(n: int) -> F64:
    """``n`` quasi-uniform unit vectors (a Fibonacci lattice on the sphere), shape (n, 3)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


_QUAD = fibonacci_sphere(4000)
_SURF = fibonacci_sphere(1500)


@dataclass(frozen=True)
class NoduleShape:
    """One nodule in patient space (LPS mm) with its HU values."""

    centre: F64  # (3,)
    rotation: F64  # (3, 3), columns = principal axes
    semi: F64  # (3,) semi-axes before lobulation, mm
    lobe_dirs: F64  # (L, 3) unit vectors in the local frame
    lobe_amps: F64  # (L,)
    type: NoduleType
    attached_to: Attachment
    hu: float  # solid / ground-glass value (the halo for part-solid)
    core_hu: float = 0.0  # part-solid only
    core_scale: float = 0.0  # part-solid / central calcification: core = the shape scaled
    calcified: bool = False

    def lobulation(self, u: F64) -> F64:
        out = np.ones(u.shape[:-1])
        for v, a in zip(self.lobe_dirs, self.lobe_amps, strict=True):
            out += a * np.exp(((u @ v) - 1.0) / _LOBE_WIDTH)
        return out

    def surface(self, dirs: F64 = _SURF) -> F64:
        """Surface points (N, 3) in LPS along the local unit directions ``dirs``."""
        local = dirs * self.lobulation(dirs)[:, None] * self.semi
        return np.asarray(self.centre + local @ self.rotation.T)

    def volume(self) -> float:
        lob = self.lobulation(_QUAD)
        return float(np.prod(self.semi) * 4.0 * math.pi / 3.0 * np.mean(lob**3))

    def centre_of_mass(self) -> F64:
        if self.lobe_amps.size == 0:  # an ellipsoid: exactly its centre
            return np.asarray(self.centre, dtype=np.float64).copy()
        lob = self.lobulation(_QUAD)
        local = 0.75 * (_QUAD * (lob**4)[:, None]).mean(0) / np.mean(lob**3)
        return np.asarray(self.centre + self.rotation @ (self.semi * local))

    def long_axis(self) -> float:
        return float(pdist(self.surface()).max())

    def max_radius(self) -> float:
        return float(np.linalg.norm(self.surface() - self.centre, axis=1).max())

    def moved(self, centre: F64) -> NoduleShape:
        return replace(self, centre=np.asarray(centre, dtype=np.float64))

    def scaled(self, f: float) -> NoduleShape:
        return replace(self, semi=self.semi * f)

    def truth(self, label: int) -> TruthNodule:
        c = self.centre_of_mass()
        return TruthNodule(
            label=label,
            center_lps_mm=(float(c[0]), float(c[1]), float(c[2])),
            long_axis_mm=round(self.long_axis(), 3),
            volume_mm3=round(self.volume(), 3),
            type=self.type,
            attached_to=self.attached_to,
            calcified=self.calcified,
        )

    def sdf(self, grid: AxisGrid, box: tuple[slice, slice, slice], scale: float = 1.0) -> F32:
        """Radial signed distance (mm, negative inside) over ``box`` of the canonical grid."""
        xs, ys, zs = grid.local(box, self.centre)
        m = (self.rotation / (self.semi * scale)[None, :]).astype(np.float32)  # p -> q
        q = [(xs * m[0, a] + ys * m[1, a]) + zs * m[2, a] for a in range(3)]
        rho = np.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2])
        inv = 1.0 / np.maximum(rho, np.float32(1e-6))
        u = [qa * inv for qa in q]
        lob = np.ones_like(rho)
        for v, a in zip(self.lobe_dirs, self.lobe_amps, strict=True):
            dot = u[0] * np.float32(v[0]) + u[1] * np.float32(v[1]) + u[2] * np.float32(v[2])
            lob += np.float32(a) * np.exp((dot - 1.0) / np.float32(_LOBE_WIDTH))
        s = (self.semi * scale).astype(np.float32)
        radial_mm = np.sqrt((u[0] * s[0]) ** 2 + (u[1] * s[1]) ** 2 + (u[2] * s[2]) ** 2)
        sdf = (rho - lob) * radial_mm
        # a voxel centre exactly at the centre has no direction: it is the deepest point
        return np.asarray(np.where(rho < 1e-6, -float(s.min()), sdf), dtype=np.float32)

    def draw(self, vol: F32, label: U8, grid: AxisGrid, value: int) -> None:
        """Composite the nodule into ``vol`` and set ``label`` to ``value`` inside its surface
        (a calcified nodule is drawn but leaves ``label`` alone)."""
        w = grid.aa_width
        r = self.max_radius() + w + 0.5
        box = grid.box(self.centre - r, self.centre + r)
        if box is None:
            return
        sdf = self.sdf(grid, box)
        occ = np.clip(0.5 - sdf / np.float32(w), 0.0, 1.0)
        composite(vol[box], occ, self.hu, "max")
        if self.core_scale > 0.0:
            core = self.sdf(grid, box, self.core_scale)
            composite(vol[box], np.clip(0.5 - core / np.float32(w), 0.0, 1.0), self.core_hu, "max")
        if not self.calcified:
            lab = label[box]
            lab[sdf <= 0.0] = value


def random_rotation(rng: np.random.Generator) -> F64:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))[None, :]
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return np.asarray(q)


def type_hu(rng: np.random.Generator, kind: NoduleType) -> tuple[float, float, float]:
    """(hu, core_hu, core_scale) for a nodule type."""
    if kind == "solid":
        return rng.uniform(5.0, 55.0), 0.0, 0.0
    if kind == "ground-glass":
        return rng.uniform(-650.0, -350.0), 0.0, 0.0
    return rng.uniform(-650.0, -400.0), rng.uniform(0.0, 50.0), rng.uniform(0.35, 0.65)


def calcified_hu(rng: np.random.Generator, central: bool) -> tuple[float, float, float]:
    """(hu, core_hu, core_scale) of a fully or centrally calcified nodule."""
    if central:
        return rng.uniform(20.0, 50.0), rng.uniform(300.0, 1000.0), rng.uniform(0.4, 0.7)
    return rng.uniform(250.0, 1000.0), 0.0, 0.0


def random_shape(
    rng: np.random.Generator,
    long_axis_mm: float,
    kind: NoduleType,
    attached: Attachment,
    calcified: bool = False,
) -> NoduleShape:
    """A slightly ellipsoidal, possibly lobulated nodule whose long axis is ``long_axis_mm``."""
    semi = np.array([1.0, rng.uniform(0.75, 1.0), rng.uniform(0.7, 1.0)])
    n_lobes = int(rng.integers(0, 4)) if long_axis_mm >= 8.0 else int(rng.integers(0, 2))
    amp_hi = 0.2 if long_axis_mm >= 8.0 else 0.1
    dirs = rng.standard_normal((n_lobes, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    if calcified:
        hu, core_hu, core_scale = calcified_hu(rng, central=rng.uniform() < 0.4)
    else:
        hu, core_hu, core_scale = type_hu(rng, kind)
    shape = NoduleShape(
        centre=np.zeros(3),
        rotation=random_rotation(rng),
        semi=semi,
        lobe_dirs=dirs,
        lobe_amps=rng.uniform(0.05, amp_hi, n_lobes),
        type=kind,
        attached_to=attached,
        hu=hu,
        core_hu=core_hu,
        core_scale=core_scale,
        calcified=calcified,
    )
    return shape.scaled(long_axis_mm / shape.long_axis())


def spec_shape(rng: np.random.Generator, spec: NoduleSpec) -> NoduleShape:
    """The sphere described by a :class:`NoduleSpec`."""
    if spec.calcified:
        hu, core_hu, core_scale = calcified_hu(rng, central=False)
    else:
        hu, core_hu, core_scale = type_hu(rng, spec.type)  # drawn always: same draws after
        if spec.type == "part-solid" and spec.core_scale is not None:
            core_scale = spec.core_scale
    return NoduleShape(
        centre=np.asarray(spec.center_lps_mm, dtype=np.float64),
        rotation=np.eye(3),
        semi=np.full(3, spec.diameter_mm / 2.0),
        lobe_dirs=np.zeros((0, 3)),
        lobe_amps=np.zeros(0),
        type="solid" if spec.calcified else spec.type,
        attached_to=spec.attached_to,
        hu=hu,
        core_hu=core_hu,
        core_scale=core_scale,
        calcified=spec.calcified,
    )
