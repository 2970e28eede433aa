"""Where a phantom's nodules go: inside the lungs, on the pleura, on a fissure, on a vessel.

Counts, sizes and types are drawn so that an evaluation set covers every reporting band:
0 nodules in 15 % of scans, otherwise 1–4; long axis in the bands <6, 6–8, 8–15, >15 mm with
probabilities 0.30, 0.20, 0.30, 0.20 (3–30 mm overall); 60 % solid, 15 % part-solid,
25 % ground-glass; 30 % juxtapleural, 10 % perifissural (touching a fissure; recorded as
``attached_to="pleura"``: a fissure is visceral pleura), 30 % juxtavascular, 30 % free.
Nodules never overlap (their bounding spheres are at least 2 mm apart) and lie wholly inside
the scanned z range.

Calcified nodules come on top (:func:`calcified_nodules`): none in 60 % of scans, else 1–3,
3–10 mm (60 % under 6 mm), 20 % juxtapleural, 20 % juxtavascular; they are placed after the
others.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from preread.domain import NoduleType
from training.anatomy import Anatomy
from training.nodules import Attachment, NoduleShape, fibonacci_sphere, random_shape
from training.parenchyma import Fissure, fissure_normal, fissure_y, on_side
from training.vessels import Tubes

F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

_COUNT_P = (0.15, 0.35, 0.25, 0.15, 0.10)
_BANDS = ((3.0, 6.0), (6.0, 8.0), (8.0, 15.0), (15.0, 30.0))
_BAND_P = (0.30, 0.20, 0.30, 0.20)
_TYPES: tuple[NoduleType, ...] = ("solid", "part-solid", "ground-glass")
_TYPE_P = (0.60, 0.15, 0.25)
_ATTACH = ("pleura", "fissure", "vessel", "none")
_ATTACH_P = (0.30, 0.10, 0.30, 0.30)
_CALC_COUNT_P = (0.60, 0.25, 0.10, 0.05)
_CALC_ATTACH = ("pleura", "vessel", "none")
_CALC_ATTACH_P = (0.20, 0.20, 0.60)
_CHECK = fibonacci_sphere(160)
#: what each placement strategy records as ``attached_to`` (a fissure is visceral pleura)
_RECORDED: dict[str, Attachment] = {"pleura": "pleura", "fissure": "pleura", "vessel": "vessel"}


class Placer:
    """Places nodule shapes one after the other, honouring the anatomy and earlier nodules."""

    def __init__(
        self,
        anat: Anatomy,
        exclusions: Tubes,
        vessels: Tubes,
        z_range: tuple[float, float],
        rng: np.random.Generator,
        fissures: tuple[Fissure, ...] = (),
    ) -> None:
        self.anat, self.exclusions, self.vessels, self.rng = anat, exclusions, vessels, rng
        self.fissures = tuple(f for f in fissures if not f.minor)
        self.z_lo, self.z_hi = z_range
        self.placed: list[NoduleShape] = []

    # -- predicates ----------------------------------------------------------------------------

    def in_lung(self, pts: F64) -> Mask:
        ok = self.anat.placement_ok(pts[:, 0], pts[:, 1], pts[:, 2])
        if ok.any():
            ok[ok] = self.exclusions.sdf(pts[ok]) > 1.0
        return ok

    def _fits(self, s: NoduleShape, radius: float) -> bool:
        c = s.centre
        if c[2] - radius < self.z_lo + 1.0 or c[2] + radius > self.z_hi - 1.0:
            return False
        return all(
            np.linalg.norm(c - o.centre) > radius + o.max_radius() + 2.0 for o in self.placed
        )

    def _check_points(self, s: NoduleShape, push: float) -> F64:
        pts = s.surface(_CHECK)
        out = pts - s.centre
        return np.asarray(pts + push * out / np.linalg.norm(out, axis=1, keepdims=True))

    # -- strategies ----------------------------------------------------------------------------

    def candidates(self, n: int = 512) -> F64:
        a = self.anat
        ac, bc, ycc = (float(v) for v in a.cavity(0.5 * (a.z_apex + a.dome_right)))
        z_lo = max(self.z_lo, a.dome_left - 70.0)
        z_hi = min(self.z_hi, a.z_apex)
        if z_hi <= z_lo:
            return np.zeros((0, 3))
        u = self.rng.uniform
        pts = np.stack([u(a.xc - ac, a.xc + ac, n), u(ycc - bc, ycc + bc, n), u(z_lo, z_hi, n)], 1)
        return np.asarray(pts[self.in_lung(pts)])

    def interior(self, s: NoduleShape) -> NoduleShape | None:
        r = s.max_radius()
        for c in self.candidates()[:60]:
            t = s.moved(c)
            if self._fits(t, r) and self.in_lung(self._check_points(t, 1.5)).all():
                return t
        return None

    def pleural(self, s: NoduleShape) -> NoduleShape | None:
        r = s.max_radius()
        steps = np.arange(0.0, 160.0, 1.0)
        for c0 in self.candidates()[:60]:
            phi = self.rng.uniform(0.0, 2.0 * np.pi)
            d = np.array([np.cos(phi), np.sin(phi), 0.3 * self.rng.standard_normal()])
            d /= np.linalg.norm(d)
            ray = c0 + steps[:, None] * d
            inside = self.anat.in_lung(ray[:, 0], ray[:, 1], ray[:, 2])
            if inside.all():
                continue
            t_b = float(steps[int(np.argmin(inside))]) - 0.5
            local = s.surface(_CHECK) - s.centre
            extent = float((local @ d).max())
            overlap = self.rng.uniform(0.5, 0.5 + 0.25 * extent)
            t = s.moved(c0 + d * (t_b - extent + overlap))
            if not self._fits(t, r) or not self.in_lung(t.centre[None])[0]:
                continue
            pts = t.surface(_CHECK)
            outside = ~self.anat.in_lung(pts[:, 0], pts[:, 1], pts[:, 2])
            if not 0.02 <= outside.mean() <= 0.4:
                continue
            if (self.exclusions.sdf(pts) < 0.5).any():
                continue
            if not self.in_lung(self._check_points(t, 0.0)[~outside]).all():
                continue
            return t
        return None

    def juxtavascular(self, s: NoduleShape) -> NoduleShape | None:
        v = self.vessels
        mid = 0.5 * (v.p0 + v.p1)
        ok = (v.r0 >= 1.2) & (v.r0 <= 4.5) & (mid[:, 2] > self.z_lo) & (mid[:, 2] < self.z_hi)
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            return None
        r = s.max_radius()
        local = s.surface(_CHECK) - s.centre
        for n in self.rng.choice(idx, size=min(60, idx.size), replace=False):
            tt = self.rng.uniform(0.2, 0.8)
            axis = v.p1[n] - v.p0[n]
            axis /= np.linalg.norm(axis)
            e = self.rng.standard_normal(3)
            e -= (e @ axis) * axis
            e /= np.linalg.norm(e)
            rv = v.r0[n] + tt * (v.r1[n] - v.r0[n])
            extent = float((local @ -e).max())
            c = v.p0[n] + tt * (v.p1[n] - v.p0[n]) + e * (rv + extent - self.rng.uniform(0.3, 1.0))
            t = s.moved(c)
            if self._fits(t, r) and self.in_lung(self._check_points(t, 1.0)).all():
                return t
        return None

    def fissural(self, s: NoduleShape) -> NoduleShape | None:
        """Touching an oblique fissure from either side (``attached_to`` stays "pleura")."""
        if not self.fissures:
            return None
        r = s.max_radius()
        local = s.surface(_CHECK) - s.centre
        for c0 in self.candidates()[:60]:
            f = self.fissures[int(self.rng.integers(len(self.fissures)))]
            if not on_side(f, c0[:1])[0]:
                continue
            q = np.array([c0[0], float(fissure_y(f, c0[:1], c0[2:3])[0]), c0[2]])
            n = fissure_normal(f, q[:1])[0] * (1.0 if self.rng.uniform() < 0.5 else -1.0)
            extent = float((local @ -n).max())
            t = s.moved(q + n * (extent - self.rng.uniform(0.3, 1.0)))
            if self._fits(t, r) and self.in_lung(self._check_points(t, 1.0)).all():
                return t
        return None

    def place(self, s: NoduleShape, how: str | None = None) -> NoduleShape | None:
        """Place ``s`` as ``how`` ("pleura", "fissure", "vessel", else free; default: its
        ``attached_to``) says, shrinking it (up to 4 times) until it fits."""
        how = how or s.attached_to
        for _ in range(5):
            if how == "fissure":
                t = self.fissural(s)
            elif how == "pleura":
                t = self.pleural(s)
            elif how == "vessel":
                t = self.juxtavascular(s)
            else:
                t = self.interior(s)
            if t is not None:
                self.placed.append(t)
                return t
            s = s.scaled(0.8)
            if s.long_axis() < 3.0:
                return None
        return None


def random_nodules(placer: Placer, rng: np.random.Generator) -> list[NoduleShape]:
    """Draw 0–4 nodules (see the module docstring) and place them; some may not fit."""
    count = int(rng.choice(len(_COUNT_P), p=_COUNT_P))
    room = placer.z_hi - placer.z_lo - 4.0
    out = []
    for _ in range(count):
        lo, hi = _BANDS[int(rng.choice(len(_BANDS), p=_BAND_P))]
        size = min(rng.uniform(lo, hi), room)
        kind = _TYPES[int(rng.choice(len(_TYPES), p=_TYPE_P))]
        how = _ATTACH[int(rng.choice(len(_ATTACH), p=_ATTACH_P))]
        if size < 3.0:
            continue
        attach = _RECORDED.get(how)
        placed = placer.place(random_shape(rng, size, kind, attach), how)
        if placed is not None:
            out.append(placed)
    return out


def calcified_nodules(placer: Placer, rng: np.random.Generator) -> list[NoduleShape]:
    """Draw 0–3 calcified nodules (see the module docstring) and place them."""
    count = int(rng.choice(len(_CALC_COUNT_P), p=_CALC_COUNT_P))
    out = []
    for _ in range(count):
        size = rng.uniform(3.0, 6.0) if rng.uniform() < 0.6 else rng.uniform(6.0, 10.0)
        how = _CALC_ATTACH[int(rng.choice(len(_CALC_ATTACH), p=_CALC_ATTACH_P))]
        attach = _RECORDED.get(how)
        placed = placer.place(random_shape(rng, size, "solid", attach, calcified=True), how)
        if placed is not None:
            out.append(placed)
    return out
