"""Lung parenchyma besides vessels and nodules: emphysema, scars/atelectasis and fissures.

All in DICOM patient coordinates (LPS, mm; PS3.3 C.7.6.2.1.1), drawn only inside the rendered
lung mask, before vessels and nodules (which are composited on top):

* emphysema: low-attenuation spheres (−1000…−950 HU, "min" rule), upper-lung predominant;
* scars / plate atelectasis: thin curved plates (1.5–5 mm thick, 20–60 mm long, 5–20 mm
  wide, −100…+40 HU), 70 % subpleural (parallel to the pleura, 2–10 mm inside it), the rest
  parenchymal bands running to the pleura. In an axial slice they are lines or bands: hard
  negatives that look nothing like a round nodule;
* fissures: the oblique fissure of each lung and the right minor fissure, ~1 mm sheets of
  −600…−300 HU. Drawn per axial slice from their closed-form surface (a graph ``y = Y(x, z)``
  or ``z = Z(x, y)``) with the exact partial-volume fraction of a thin sheet in a voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from training.anatomy import Anatomy
from training.profiles import Profile
from training.raster import AxisGrid, composite

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Blob:
    """An emphysematous space: a sphere of low attenuation."""

    centre: tuple[float, float, float]
    radius: float
    hu: float


@dataclass(frozen=True)
class Plate:
    """A thin curved plate: centre, length axis ``u``, normal ``n`` (unit), half sizes, HU.

    Inside iff ``|q_n - k q_u²| <= half_thickness``, ``|q_u| <= half_length``,
    ``|q_v| <= half_width`` (``q`` the local coordinates, ``k`` the bend), edges rounded.
    """

    centre: tuple[float, float, float]
    u: tuple[float, float, float]
    n: tuple[float, float, float]
    half_length: float
    half_width: float
    half_thickness: float
    bend: float
    hu: float
    subpleural: bool


@dataclass(frozen=True)
class Fissure:
    """Oblique fissure ``y = y0 + s (z_top - z) + c (x - xm) + b (x - xm)²`` on one side of
    ``x_split`` (``side`` -1 right, +1 left), or the minor fissure (``minor``)
    ``z = z0 + c (x - xm) + s (y - ym)`` on the right, anterior to the right oblique fissure."""

    side: int
    minor: bool
    x_split: float
    xm: float
    y0: float
    z0: float
    s: float
    c: float
    b: float
    hu: float
    thickness: float = 1.0


@dataclass(frozen=True)
class Parenchyma:
    emphysema: tuple[Blob, ...]
    scars: tuple[Plate, ...]
    fissures: tuple[Fissure, ...]


def sample_parenchyma(rng: np.random.Generator, anat: Anatomy, profile: Profile) -> Parenchyma:
    fissures = _sample_fissures(rng, anat, profile)
    blobs: list[Blob] = []
    if rng.uniform() < profile.emphysema_p:
        lo, hi = profile.emphysema_count
        n = int(rng.integers(lo, hi + 1))
        pts = _lung_points(rng, anat, 8 * n + 64, upper=True)[:n]
        r_lo, r_hi = profile.emphysema_radius
        radii = np.exp(rng.uniform(np.log(r_lo), np.log(r_hi), len(pts)))
        hus = rng.uniform(-1000.0, -950.0, len(pts))
        blobs = [Blob(_t3(p), float(r), float(h)) for p, r, h in zip(pts, radii, hus, strict=True)]
    scars: list[Plate] = []
    if rng.uniform() < profile.scar_p:
        for _ in range(int(rng.integers(1, 5))):
            plate = _sample_scar(rng, anat)
            if plate is not None:
                scars.append(plate)
    return Parenchyma(tuple(blobs), tuple(scars), fissures)


def _t3(p: F64) -> tuple[float, float, float]:
    return (float(p[0]), float(p[1]), float(p[2]))


def _lung_points(rng: np.random.Generator, anat: Anatomy, n: int, upper: bool = False) -> F64:
    """Random points in the lungs (denser towards the apices when ``upper``)."""
    ac, bc, ycc = (float(v) for v in anat.cavity(0.5 * (anat.z_apex + anat.dome_right)))
    u = rng.uniform(size=n)
    z_lo = anat.dome_left - 60.0
    zf = np.sqrt(u) if upper else u  # more mass at the top
    pts = np.stack(
        [
            rng.uniform(anat.xc - ac, anat.xc + ac, n),
            rng.uniform(ycc - bc, ycc + bc, n),
            z_lo + zf * (anat.z_apex - z_lo),
        ],
        axis=1,
    )
    return np.asarray(pts[anat.in_lung(pts[:, 0], pts[:, 1], pts[:, 2])])


def _sample_scar(rng: np.random.Generator, anat: Anatomy) -> Plate | None:
    steps = np.arange(0.0, 160.0, 1.0)
    for c0 in _lung_points(rng, anat, 64)[:20]:
        phi = rng.uniform(0.0, 2.0 * np.pi)
        d = np.array([np.cos(phi), np.sin(phi), 0.25 * rng.standard_normal()])
        d /= np.linalg.norm(d)
        ray = c0 + steps[:, None] * d
        inside = anat.in_lung(ray[:, 0], ray[:, 1], ray[:, 2])
        if inside.all():
            continue
        wall = c0 + (float(steps[int(np.argmin(inside))]) - 0.5) * d  # last lung point
        length = rng.uniform(20.0, 60.0)
        e = rng.standard_normal(3)
        e -= (e @ d) * d
        e /= np.linalg.norm(e)
        subpleural = rng.uniform() < 0.7
        if subpleural:  # parallel to the pleura: normal towards it, bent like it
            n, u = d, e
            centre = wall - d * rng.uniform(2.0, 10.0)
            bend = rng.uniform(0.0, 0.01)
        else:  # a parenchymal band reaching the pleura
            u, n = d, e
            centre = wall - d * (0.5 * length - 1.0)
            bend = rng.uniform(-0.01, 0.01)
        if not anat.in_lung(centre[0], centre[1], centre[2]):
            continue
        return Plate(
            centre=_t3(centre),
            u=_t3(u),
            n=_t3(n),
            half_length=0.5 * length,
            half_width=0.5 * rng.uniform(5.0, 20.0),
            half_thickness=0.5 * rng.uniform(1.5, 5.0),
            bend=float(bend),
            hu=float(rng.uniform(-100.0, 40.0)),
            subpleural=bool(subpleural),
        )
    return None


def _sample_fissures(
    rng: np.random.Generator, anat: Anatomy, profile: Profile
) -> tuple[Fissure, ...]:
    _, bc, ycc = (float(v) for v in anat.cavity(0.5 * (anat.z_apex + anat.dome_right)))
    out: list[Fissure] = []
    right: Fissure | None = None
    for side, dome in ((-1, anat.dome_right), (1, anat.dome_left)):
        z_top = anat.z_apex - rng.uniform(45.0, 70.0)
        y_post = ycc + bc
        y_ant = ycc - rng.uniform(0.0, 0.4) * bc
        f = Fissure(
            side=side,
            minor=False,
            x_split=anat.xc + 5.0 * anat.sx,
            xm=anat.xc + side * 60.0 * anat.sx,
            y0=y_post,
            z0=z_top,
            s=(y_ant - y_post) / (z_top - dome),
            c=float(rng.uniform(-0.2, 0.2)),
            b=float(rng.uniform(-0.004, 0.004)),
            hu=float(rng.uniform(-600.0, -300.0)),
            thickness=float(rng.uniform(0.8, 1.3)),
        )
        if side < 0:
            right = f
        if rng.uniform() < profile.fissure_p:
            out.append(f)
    if right is not None and rng.uniform() < profile.fissure_p:
        out.append(
            Fissure(
                side=-1,
                minor=True,
                x_split=right.x_split,
                xm=right.xm,
                y0=ycc,
                z0=anat.z_apex - rng.uniform(85.0, 115.0),
                s=float(rng.uniform(-0.12, 0.12)),
                c=float(rng.uniform(-0.12, 0.12)),
                b=0.0,
                hu=float(rng.uniform(-600.0, -300.0)),
                thickness=float(rng.uniform(0.8, 1.3)),
            )
        )
        # the minor fissure only exists anterior to the right oblique one: keep that one too
        if right not in out:
            out.append(right)
    return tuple(out)


# ---- oblique fissure geometry (shared with nodule placement) ---------------------------------


def fissure_y(f: Fissure, x: F64, z: F64) -> F64:
    dx = x - f.xm
    return np.asarray(f.y0 + f.s * (f.z0 - z) + f.c * dx + f.b * dx * dx)


def fissure_normal(f: Fissure, x: F64) -> F64:
    """Unit normals (N, 3) of an oblique fissure at ``x`` (pointing posterior)."""
    yx = f.c + 2.0 * f.b * (x - f.xm)
    n = np.stack([-yx, np.ones_like(yx), np.full_like(yx, f.s)], axis=1)
    return np.asarray(n / np.linalg.norm(n, axis=1, keepdims=True))


def on_side(f: Fissure, x: F64) -> npt.NDArray[np.bool_]:
    return np.asarray((x - f.x_split) * f.side > 0)


# ---- drawing ------------------------------------------------------------------------------


def _sheet_occupancy(d: F32, w: F32 | float, t: float) -> F32:
    """Fraction of a voxel of width ``w`` (along the normal, centre at ``d``) in |·| <= t/2."""
    lo = np.maximum(d - 0.5 * w, -0.5 * t)
    hi = np.minimum(d + 0.5 * w, 0.5 * t)
    return np.asarray(np.clip((hi - lo) / w, 0.0, 1.0), dtype=np.float32)


def draw_fissures_slice(
    img: F32,
    lung: Mask,
    x: F32,
    y: F32,
    z: float,
    spacing: tuple[float, float, float],
    fissures: tuple[Fissure, ...],
) -> None:
    """Draw the fissures into one axial slice (rows ``y``, columns ``x``; lung only)."""
    dz, dy, dx = spacing
    right_oblique = next((f for f in fissures if f.side < 0 and not f.minor), None)
    for f in fissures:
        cols = np.flatnonzero(on_side(f, x.astype(np.float64)))
        if cols.size == 0:
            continue
        i0, i1 = int(cols[0]), int(cols[-1]) + 1
        xs = x[i0:i1].astype(np.float64)
        if f.minor:
            if right_oblique is None:
                continue
            _draw_minor(img[:, i0:i1], lung[:, i0:i1], xs, y, z, (dz, dy, dx), f, right_oblique)
            continue
        yc = fissure_y(f, xs, np.asarray(z))
        yx = f.c + 2.0 * f.b * (xs - f.xm)
        norm = np.sqrt(1.0 + yx * yx + f.s * f.s)
        w = (np.abs(yx) * dx + dy + abs(f.s) * dz) / norm
        reach = float(((0.5 * f.thickness + w) * norm).max())
        j0, j1 = np.searchsorted(y, [float(yc.min()) - reach, float(yc.max()) + reach])
        if j1 <= j0:
            continue
        d = ((y[j0:j1, None] - yc[None, :].astype(np.float32)) / norm[None, :]).astype(np.float32)
        occ = _sheet_occupancy(d, w[None, :].astype(np.float32), f.thickness)
        composite(img[j0:j1, i0:i1], occ, f.hu, "max", lung[j0:j1, i0:i1])


def _draw_minor(
    img: F32,
    lung: Mask,
    xs: F64,
    y: F32,
    z: float,
    spacing: tuple[float, float, float],
    f: Fissure,
    oblique: Fissure,
) -> None:
    dz, dy, dx = spacing
    norm = float(np.sqrt(1.0 + f.c * f.c + f.s * f.s))
    w = (abs(f.c) * dx + abs(f.s) * dy + dz) / norm
    reach = (0.5 * f.thickness + w) * norm
    zx = f.c * (xs[[0, -1]] - f.xm)  # the plane is linear: its extremes are at the corners
    zy = f.s * (np.asarray(y[[0, -1]], dtype=np.float64) - f.y0)
    if not f.z0 + zx.min() + zy.min() - reach <= z <= f.z0 + zx.max() + zy.max() + reach:
        return
    zc = f.z0 + f.c * (xs - f.xm)[None, :] + f.s * (y.astype(np.float64) - f.y0)[:, None]
    d = ((z - zc) / norm).astype(np.float32)
    occ = _sheet_occupancy(d, float(w), f.thickness)
    front = y[:, None] < fissure_y(oblique, xs, np.asarray(z))[None, :]
    composite(img, occ, f.hu, "max", lung & front)


def draw_emphysema(vol: F32, lung: Mask, grid: AxisGrid, blobs: tuple[Blob, ...]) -> None:
    w = np.float32(grid.aa_width)
    for b in blobs:
        c = np.asarray(b.centre)
        r = b.radius + float(w) + 0.5
        box = grid.box(c - r, c + r)
        if box is None:
            continue
        xs, ys, zs = grid.local(box, c)
        sdf = np.sqrt((xs * xs + ys * ys) + zs * zs) - np.float32(b.radius)
        occ = np.clip(0.5 - sdf / w, 0.0, 1.0)
        composite(vol[box], occ, b.hu, "min", lung[box])


def draw_scars(vol: F32, lung: Mask, grid: AxisGrid, plates: tuple[Plate, ...]) -> None:
    w = np.float32(grid.aa_width)
    for p in plates:
        c = np.asarray(p.centre)
        u, n = np.asarray(p.u), np.asarray(p.n)
        v = np.cross(n, u)
        r = (
            float(np.hypot(p.half_length, p.half_width))
            + p.half_thickness
            + p.bend * p.half_length**2
        )
        r += float(w) + 0.5
        box = grid.box(c - r, c + r)
        if box is None:
            continue
        xs, ys, zs = grid.local(box, c)
        qu = (xs * np.float32(u[0]) + ys * np.float32(u[1])) + zs * np.float32(u[2])
        qv = (xs * np.float32(v[0]) + ys * np.float32(v[1])) + zs * np.float32(v[2])
        qn = (xs * np.float32(n[0]) + ys * np.float32(n[1])) + zs * np.float32(n[2])
        qn = qn - np.float32(p.bend) * qu * qu
        eu = np.maximum(np.abs(qu) - np.float32(p.half_length), 0.0)
        ev = np.maximum(np.abs(qv) - np.float32(p.half_width), 0.0)
        en = np.maximum(np.abs(qn), 0.0)
        sdf = np.sqrt(eu * eu + ev * ev + en * en) - np.float32(p.half_thickness)
        occ = np.clip(0.5 - sdf / w, 0.0, 1.0)
        composite(vol[box], occ, p.hu, "max", lung[box])
