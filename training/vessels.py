"""Tubular structures of the chest: great vessels, airways and the pulmonary vessel trees.

Every tube is a tapered capsule (a segment from ``p0`` to ``p1`` whose radius goes linearly
from ``r0`` to ``r1``), in DICOM patient coordinates (LPS, mm; PS3.3 C.7.6.2.1.1). Pulmonary
vessels are the hard negatives for a nodule detector: in an axial slice a vessel running along
z is a bright disc, just like a small solid nodule, and only its continuation in the next slices
tells them apart. Trees grow breadth-first from the hila, one vectorised step per generation,
and stay inside the lungs (:meth:`training.anatomy.Anatomy.in_lung`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from training.anatomy import Anatomy

F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Tubes:
    """N tapered capsules: ``p0``/``p1`` (N, 3) LPS mm, radii ``r0``/``r1`` (N,) mm."""

    p0: F64
    p1: F64
    r0: F64
    r1: F64

    def __len__(self) -> int:
        return int(self.r0.shape[0])

    @staticmethod
    def of(segments: list[tuple[tuple[float, ...], tuple[float, ...], float, float]]) -> Tubes:
        if not segments:
            z3, z1 = np.zeros((0, 3)), np.zeros(0)
            return Tubes(z3, z3.copy(), z1, z1.copy())
        p0, p1, r0, r1 = zip(*segments, strict=True)
        return Tubes(
            np.array(p0, float), np.array(p1, float), np.array(r0, float), np.array(r1, float)
        )

    def __add__(self, other: Tubes) -> Tubes:
        return Tubes(
            np.concatenate([self.p0, other.p0]),
            np.concatenate([self.p1, other.p1]),
            np.concatenate([self.r0, other.r0]),
            np.concatenate([self.r1, other.r1]),
        )

    def thickened(self, by: float) -> Tubes:
        return Tubes(self.p0, self.p1, self.r0 + by, self.r1 + by)

    def sdf(self, points: F64) -> F64:
        """Signed distance (mm, negative inside) from (M, 3) points to the union of the tubes."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if len(self) == 0:
            return np.full(pts.shape[0], np.inf)
        out = np.full(pts.shape[0], np.inf)
        d = self.p1 - self.p0
        l2 = np.maximum((d * d).sum(1), 1e-12)
        for s in range(0, pts.shape[0], 512):  # bound the (M, N, 3) temporaries
            ap = pts[s : s + 512, None, :] - self.p0[None]
            t = np.clip((ap * d[None]).sum(2) / l2[None], 0.0, 1.0)
            dist = np.linalg.norm(ap - t[..., None] * d[None], axis=2)
            out[s : s + 512] = (dist - (self.r0 + t * (self.r1 - self.r0))).min(1)
        return out


@dataclass(frozen=True)
class Airways:
    """Airway lumens (air) and their walls (the lumen thickened by the wall thickness)."""

    lumen: Tubes
    wall: Tubes


@dataclass(frozen=True)
class Landmarks:
    """Points the tubes hang on."""

    carina: tuple[float, float, float]
    hilum_right: tuple[float, float, float]
    hilum_left: tuple[float, float, float]


def landmarks(anat: Anatomy, rng: np.random.Generator) -> Landmarks:
    _, bc, ycc = (float(v) for v in anat.cavity(anat.z_arch))
    z_car = anat.z_arch - rng.uniform(15.0, 25.0)
    y_tr = anat.vertebra_xy[1] - anat.vertebra_semi[1] - 20.0 * anat.sy
    return Landmarks(
        carina=(anat.xc + 2.0, y_tr, z_car),
        hilum_right=(anat.xc - 52.0 * anat.sx, ycc + 0.05 * bc, z_car - 24.0),
        hilum_left=(anat.xc + 55.0 * anat.sx, ycc + 0.1 * bc, z_car - 30.0),
    )


def great_vessels(anat: Anatomy, lm: Landmarks) -> Tubes:
    """Ascending aorta, arch, pulmonary trunk and arteries, SVC and arch branches (40 HU)."""
    xc, sx = anat.xc, anat.sx
    _, bc, ycc = (float(v) for v in anat.cavity(anat.z_arch))
    hx, hy, hz = anat.heart_centre
    za, zc = anat.z_arch, lm.carina[2]
    asc_top = (xc + 2.0, ycc - 0.35 * bc, za)
    arch_mid = (xc + 12.0 * sx, ycc - 0.05 * bc, za + 14.0)
    desc_top = (anat.aorta_xy[0], anat.aorta_xy[1], za)
    bif = (xc + 8.0 * sx, ycc - 0.2 * bc, zc - 12.0)
    ra = anat.aorta_radius
    return Tubes.of(
        [
            ((xc + 5.0 * sx, hy - 10.0, hz + 35.0), asc_top, 1.25 * ra, 1.2 * ra),
            (asc_top, arch_mid, 1.2 * ra, ra),
            (arch_mid, desc_top, ra, ra),
            ((hx - 5.0, ycc - 0.5 * bc, hz + 30.0), bif, 1.15 * ra, 1.1 * ra),
            (bif, lm.hilum_right, 0.85 * ra, 0.8 * ra),
            (bif, lm.hilum_left, 0.85 * ra, 0.8 * ra),
            (
                (xc - 24.0 * sx, ycc - 0.3 * bc, anat.z_apex + 60.0),
                (xc - 22.0 * sx, ycc - 0.25 * bc, hz + 35.0),
                0.8 * ra,
                0.85 * ra,
            ),
            (arch_mid, (xc - 12.0 * sx, ycc - 0.25 * bc, anat.z_apex + 60.0), 0.5 * ra, 0.45 * ra),
            (arch_mid, (xc + 18.0 * sx, ycc - 0.1 * bc, anat.z_apex + 60.0), 0.4 * ra, 0.4 * ra),
        ]
    )


def airways(
    anat: Anatomy, lm: Landmarks, rng: np.random.Generator, in_lung: Callable[[F64], Mask]
) -> Airways:
    """Trachea, main bronchi and three generations of lobar/segmental bronchi."""
    r_tr = rng.uniform(7.5, 9.5) * min(anat.sx, anat.sy) ** 0.5
    car = lm.carina
    top = (car[0] - 2.0, car[1] - 4.0, anat.z_apex + 120.0)
    segs: list[tuple[tuple[float, ...], tuple[float, ...], float, float]] = [
        (top, car, r_tr, r_tr),
        (car, lm.hilum_right, 0.75 * r_tr, 0.7 * r_tr),
        (car, lm.hilum_left, 0.68 * r_tr, 0.62 * r_tr),
    ]
    lumen = Tubes.of(segs)
    roots = [
        (lm.hilum_right, (-0.3, 0.1, -1.0)),
        (lm.hilum_right, (-0.4, 0.0, 1.0)),
        (lm.hilum_right, (-1.0, -0.4, -0.3)),
        (lm.hilum_left, (0.4, 0.1, -1.0)),
        (lm.hilum_left, (0.4, 0.0, 1.0)),
        (lm.hilum_left, (1.0, -0.4, -0.2)),
    ]
    lumen = lumen + grow_trees(rng, roots, 0.5 * r_tr, 1.8, 40, in_lung)
    wall = Tubes(lumen.p0, lumen.p1, lumen.r0 * 1.15 + 0.6, lumen.r1 * 1.15 + 0.6)
    return Airways(lumen=lumen, wall=wall)


def pulmonary_trees(
    anat: Anatomy, lm: Landmarks, rng: np.random.Generator, in_lung: Callable[[F64], Mask]
) -> Tubes:
    """Five arterial and five venous (segmental) trees per lung, radius 3.5–5.5 mm at the root
    tapering to 0.6–1.0 mm.

    Each root is joined to its hilum by a stem (drawn only where it is inside the lung). The
    style varies per patient: segment length × 0.8–1.3, branching angles, tortuosity (random
    turn of each generation, 0–0.3) and curvature (long segments bent by up to 15 % of their
    length, as two halves).
    """
    stems: list[tuple[tuple[float, ...], tuple[float, ...], float, float]] = []
    roots: list[tuple[tuple[float, float, float], tuple[float, float, float]]] = []
    r_root = rng.uniform(3.5, 5.5)
    r_min = rng.uniform(0.6, 1.0)
    style = TreeStyle(
        length_scale=float(rng.uniform(0.8, 1.3)),
        angles=(
            (rng.uniform(5.0, 15.0), rng.uniform(25.0, 35.0)),
            (rng.uniform(30.0, 40.0), rng.uniform(55.0, 75.0)),
        ),
        tortuosity=float(rng.uniform(0.0, 0.3)),
    )
    kappa = float(rng.uniform(0.0, 0.15))
    for hil, s in ((lm.hilum_right, -1.0), (lm.hilum_left, 1.0)):
        vein = (hil[0] + s * 5.0, hil[1] - 15.0 * anat.sy, hil[2] - 30.0)
        dirs = [
            (hil, (0.2 * s, 0.2, 1.0)),
            (hil, (s, 0.0, 0.5)),
            (hil, (s, 0.2, -0.5)),
            (hil, (0.3 * s, 0.8, -1.0)),
            (hil, (0.5 * s, -0.8, -0.6)),
            (vein, (0.6 * s, -0.3, 0.8)),
            (vein, (s, -0.2, 0.0)),
            (vein, (0.7 * s, 0.5, -0.7)),
            (vein, (0.4 * s, -0.6, -0.8)),
            (vein, (0.3 * s, 0.9, -0.3)),
        ]
        for origin, direction in dirs:
            entry = _enter_lung(rng, np.array(origin), np.array(direction), in_lung)
            if entry is None:
                continue
            start, d = entry
            stems.append((origin, tuple(start), r_root * 1.1, r_root))
            roots.append((_vec3(start), _vec3(d)))
    trees = grow_trees(rng, roots, r_root, r_min, 220, in_lung, style)
    return Tubes.of(stems) + bend(rng, trees, kappa, min_length=10.0)


def _enter_lung(
    rng: np.random.Generator, origin: F64, direction: F64, in_lung: Callable[[F64], Mask]
) -> tuple[F64, F64] | None:
    """First point 3 mm into the lung from ``origin`` along ``direction`` (or deflected)."""
    steps = np.arange(2.0, 70.0, 2.0)[:, None]
    d = _normalise(direction[None])[0]
    for attempt in range(10):
        if attempt:
            d = _rotate(rng, _normalise(direction[None]), np.array([0.3 * attempt]))[0]
        inside = in_lung(origin + steps * d)
        if inside.any():
            return origin + (steps[int(np.argmax(inside)), 0] + 3.0) * d, d
    return None


@dataclass(frozen=True)
class TreeStyle:
    """How a tree branches: segment length factor, the two children's angle ranges (degrees;
    the second child turns the other way) and the tortuosity (random turn per generation)."""

    length_scale: float = 1.0
    angles: tuple[tuple[float, float], tuple[float, float]] = ((10.0, 30.0), (35.0, 65.0))
    tortuosity: float = 0.0


def bend(rng: np.random.Generator, tubes: Tubes, kappa: float, min_length: float) -> Tubes:
    """Split each segment longer than ``min_length`` in two halves whose joint is moved
    sideways by up to ``kappa`` × its length (curved vessels; radius continuous)."""
    d = tubes.p1 - tubes.p0
    length = np.linalg.norm(d, axis=1)
    long = length > min_length
    if kappa <= 0.0 or not long.any():
        return tubes
    side = _perpendicular(rng, _normalise(d[long]))
    mid = 0.5 * (tubes.p0[long] + tubes.p1[long])
    mid += side * (rng.uniform(0.0, kappa, long.sum()) * length[long])[:, None]
    r_mid = 0.5 * (tubes.r0[long] + tubes.r1[long])
    keep = Tubes(tubes.p0[~long], tubes.p1[~long], tubes.r0[~long], tubes.r1[~long])
    first = Tubes(tubes.p0[long], mid, tubes.r0[long], r_mid)
    second = Tubes(mid, tubes.p1[long], r_mid, tubes.r1[long])
    return keep + first + second


def grow_trees(
    rng: np.random.Generator,
    roots: list[tuple[tuple[float, float, float], tuple[float, float, float]]],
    r_root: float,
    r_min: float,
    max_per_tree: int,
    in_lung: Callable[[F64], Mask],
    style: TreeStyle = TreeStyle(),
) -> Tubes:
    """Grow bifurcating trees (Murray's law radii r³ = r₁³ + r₂³), one generation per step."""
    p = np.array([r[0] for r in roots], dtype=np.float64)
    d = _normalise(np.array([r[1] for r in roots], dtype=np.float64))
    d = _normalise(d + 0.15 * rng.standard_normal(d.shape))
    r = np.full(len(roots), r_root) * rng.uniform(0.85, 1.15, len(roots))
    tree = np.arange(len(roots))
    origin = p.copy()
    counts = np.zeros(len(roots), dtype=int)
    segs_p0, segs_p1, segs_r0, segs_r1 = [], [], [], []
    while p.shape[0]:
        length = (3.0 * r + 5.0) * rng.uniform(0.8, 1.25, r.shape) * style.length_scale
        accepted = np.zeros(r.shape, dtype=bool)
        end = p.copy()
        d0 = d.copy()
        for attempt in range(8):  # deflect further from the intended direction each time
            todo = np.flatnonzero(~accepted)
            if todo.size == 0:
                break
            if attempt:
                spread = np.deg2rad(rng.uniform(0.0, 15.0 + 12.0 * attempt, todo.size))
                d[todo] = _rotate(rng, d0[todo], spread)
                length[todo] *= 0.9
            e = p[todo] + d[todo] * length[todo, None]
            q = p[todo] + d[todo] * (0.6 * length[todo, None])
            ok = in_lung(e) & in_lung(q)
            accepted[todo[ok]] = True
            end[todo[ok]] = e[ok]
        keep = accepted & (counts[tree] < max_per_tree)
        np.add.at(counts, tree[keep], 1)
        p, end, d, r, tree, origin = p[keep], end[keep], d[keep], r[keep], tree[keep], origin[keep]
        r_end = 0.93 * r
        segs_p0.append(p)
        segs_p1.append(end)
        segs_r0.append(r)
        segs_r1.append(r_end)
        f = rng.uniform(0.3, 0.5, r.shape)
        radii = [r_end * (1.0 - f) ** (1.0 / 3.0), r_end * f ** (1.0 / 3.0)]
        (a0, a1), (b0, b1) = style.angles
        angles = [rng.uniform(a0, a1, r.shape), -rng.uniform(b0, b1, r.shape)]
        axis = _perpendicular(rng, d)
        outward = _normalise(end - origin + 1e-9)
        nxt_p, nxt_d, nxt_r, nxt_t, nxt_o = [], [], [], [], []
        for rad, ang in zip(radii, angles, strict=True):
            a = np.deg2rad(ang)[:, None]
            nd = np.cos(a) * d + np.sin(a) * axis + 0.25 * outward
            if style.tortuosity > 0.0:
                nd = nd + style.tortuosity * rng.standard_normal(nd.shape)
            nd = _normalise(nd)
            alive = rad >= r_min
            nxt_p.append(end[alive])
            nxt_d.append(nd[alive])
            nxt_r.append(rad[alive])
            nxt_t.append(tree[alive])
            nxt_o.append(origin[alive])
        p, d, r = np.concatenate(nxt_p), np.concatenate(nxt_d), np.concatenate(nxt_r)
        tree, origin = np.concatenate(nxt_t), np.concatenate(nxt_o)
    if not segs_p0:
        return Tubes.of([])
    return Tubes(
        np.concatenate(segs_p0),
        np.concatenate(segs_p1),
        np.concatenate(segs_r0),
        np.concatenate(segs_r1),
    )


def _vec3(v: F64) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))


def _normalise(v: F64) -> F64:
    return np.asarray(v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12))


def _perpendicular(rng: np.random.Generator, d: F64) -> F64:
    """Random unit vectors perpendicular to the rows of ``d``."""
    v = rng.standard_normal(d.shape)
    v -= (v * d).sum(-1, keepdims=True) * d
    return _normalise(v)


def _rotate(rng: np.random.Generator, d: F64, angle: F64) -> F64:
    axis = _perpendicular(rng, d)
    a = angle[:, None]
    return _normalise(np.cos(a) * d + np.sin(a) * axis)
