"""Analytic chest anatomy of a phantom, in DICOM patient coordinates (LPS, mm; PS3.3 C.7.6.2.1.1).

An :class:`Anatomy` is a handful of numbers (body size, fat and muscle thickness, where the lung
apices, diaphragm domes, heart, spine and ribs are). Its predicates take coordinates that
broadcast against each other, so the same code rasterises an axial slice (``x`` a row vector,
``y`` a column vector, ``z`` a scalar: every expensive term is an outer sum of 1-D arrays) and
tests a batch of points (three equal-length vectors) when nodules and vessels are placed.

Tissue values (HU) are typical non-contrast chest CT values; each phantom jitters them a little.
Tubular structures (great vessels, airways, pulmonary vessels) live in :mod:`training.tubes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from training.profiles import Profile, band

F32 = npt.NDArray[np.float32]
Arr = npt.NDArray[Any]
Coord = Arr | float

AIR_HU = -1000.0


def _smoothstep(t: Coord) -> Arr:
    c = np.clip(t, 0.0, 1.0)
    return np.asarray(c * c * (3.0 - 2.0 * c))


@dataclass(frozen=True)
class Anatomy:
    """One patient's chest, as parameters of analytic shapes (all mm / HU, LPS)."""

    xc: float  # body centre (x, y)
    yc: float
    z_apex: float  # top of the lung apices
    dome_right: float  # top of the right / left diaphragm domes (z)
    dome_left: float
    half_width: float  # body half-width / half-depth at mid chest
    half_depth: float
    fat: float  # subcutaneous fat thickness
    muscle_lateral: float
    muscle_anterior: float
    muscle_posterior: float  # incl. paraspinal muscles
    sx: float  # in-plane scale factors relative to a nominal adult
    sy: float
    heart_centre: tuple[float, float, float]
    heart_matrix: tuple[tuple[float, float, float], ...]  # quadratic form: inside iff dᵀMd <= 1
    mediastinum_half_width: float
    aorta_xy: tuple[float, float]  # descending aorta (vertical tube below the arch)
    aorta_radius: float
    z_arch: float
    vertebra_xy: tuple[float, float]  # vertebral body centre
    vertebra_semi: tuple[float, float]
    vertebra_period: float
    disc_height: float
    rib_z1: float  # posterior end of rib 1
    rib_spacing: float
    rib_drop: float  # how much lower a rib's anterior end lies than its posterior end
    rib_half_height: float
    rib_half_thickness: float
    sternum_top: float
    sternum_bottom: float
    hu_fat: float
    hu_muscle: float
    hu_soft: float
    hu_liver: float
    hu_mediastinal_fat: float
    hu_heart: float
    hu_cortical: float
    hu_cancellous: float
    hu_lung: float
    lung_gradient: float  # HU added from anterior to posterior lung (dependent density)
    lung_texture_sd: float

    # ---- body layers -------------------------------------------------------------------------

    def _t(self, z: Coord) -> Coord:
        """0 at the lung apex, 1 at the top of the right diaphragm dome."""
        return (self.z_apex - z) / (self.z_apex - self.dome_right)

    def body_axes(self, z: Coord) -> tuple[Coord, Coord]:
        """Body half-width and half-depth at ``z`` (narrower at the neck)."""
        t = self._t(z)
        neck = _smoothstep((t + 0.35) / 0.35)
        a = self.half_width * (0.45 + 0.55 * neck) * (1.0 + 0.04 * np.clip(t, 0.0, 1.5))
        b = self.half_depth * (0.72 + 0.28 * neck)
        return a, b

    def cavity(self, z: Coord) -> tuple[Coord, Coord, Coord]:
        """Thoracic cavity (inside the ribs): half-width, half-depth and centre y at ``z``."""
        a, b = self.body_axes(z)
        ac = np.maximum(a - self.fat - self.muscle_lateral, 8.0)
        bc = np.maximum(b - self.fat - 0.5 * (self.muscle_anterior + self.muscle_posterior), 8.0)
        ycc = self.yc + 0.5 * (self.muscle_anterior - self.muscle_posterior)
        return ac, bc, ycc

    @staticmethod
    def _back(v: Coord) -> Arr:
        """y-term of the body outline: an ellipse in front, flattened at the back (table side)."""
        v2 = v * v
        return np.asarray(np.where(v > 0, 0.5 * v2 + 0.5 * v2 * v2, v2))

    def inside_body(self, x: Coord, y: Coord, z: Coord, inset: float = 0.0) -> Arr:
        a, b = self.body_axes(z)
        u = (x - self.xc) / (a - inset)
        v = (y - self.yc) / (b - inset)
        return np.asarray(u * u + self._back(v) <= 1.0)

    def inside_cavity(self, x: Coord, y: Coord, z: Coord) -> Arr:
        ac, bc, ycc = self.cavity(z)
        u = (x - self.xc) / ac
        v = (y - ycc) / bc
        return np.asarray(u * u + v * v <= 1.0)

    # ---- organs ------------------------------------------------------------------------------

    def heart_q(self, x: Coord, y: Coord, z: Coord) -> Arr:
        """Heart quadratic form (<= 1 inside), grouped so a slice needs one 2-D product."""
        m = self.heart_matrix
        dx = x - self.heart_centre[0]
        dy = y - self.heart_centre[1]
        dz = z - self.heart_centre[2]
        fx = m[0][0] * dx * dx + 2.0 * m[0][2] * dx * dz
        fy = m[1][1] * dy * dy + 2.0 * m[1][2] * dy * dz + m[2][2] * dz * dz
        return np.asarray(fx + fy + (2.0 * m[0][1]) * dx * dy)

    def dome(self, x: Coord, y: Coord) -> Arr:
        """z of the diaphragm under (x, y): two paraboloids, the right dome higher."""
        sx2, sy2 = self.sx * self.sx, self.sy * self.sy
        dx = x - self.xc
        off = 45.0 * self.sx
        right = self.dome_right - 0.007 / sx2 * (dx + off) ** 2
        left = self.dome_left - 0.007 / sx2 * (dx - off) ** 2
        ylow = 0.006 / sy2 * (y - (self.yc - 15.0 * self.sy)) ** 2
        return np.asarray(np.where(dx < 0, right, left) - ylow)

    def apex(self, x: Coord, y: Coord) -> Arr:
        """z of the lung apex surface above (x, y)."""
        dx = np.abs(x - self.xc) - 45.0 * self.sx
        dy = y - (self.yc + 5.0 * self.sy)
        return np.asarray(self.z_apex - 0.012 * (dx * dx + dy * dy))

    def in_mediastinum(self, x: Coord, y: Coord, z: Coord) -> Arr:
        """The band between the lungs, narrow in front (heart, spine, aorta carved separately)."""
        _, bc, ycc = self.cavity(z)
        w = self.mediastinum_half_width * (0.55 + 0.45 * _smoothstep((y - ycc + bc) / bc))
        dx = x - (self.xc + 5.0 * self.sx)
        return np.asarray(np.abs(dx) < w)

    def in_vertebral_body(self, x: Coord, y: Coord, margin: float = 0.0) -> Arr:
        u = (x - self.vertebra_xy[0]) / (self.vertebra_semi[0] + margin)
        v = (y - self.vertebra_xy[1]) / (self.vertebra_semi[1] + margin)
        return np.asarray(u * u + v * v <= 1.0)

    def in_descending_aorta(self, x: Coord, y: Coord, z: Coord, margin: float = 0.0) -> Arr:
        dx = x - self.aorta_xy[0]
        dy = y - self.aorta_xy[1]
        r = self.aorta_radius + margin
        return np.asarray((dx * dx + dy * dy <= r * r) & (z <= self.z_arch))

    def in_lung(self, x: Coord, y: Coord, z: Coord) -> Arr:
        """Lung parenchyma predicate (both lungs), before tubes are carved out."""
        ok = self.inside_cavity(x, y, z)
        ok = ok & (z > self.dome(x, y)) & (z < self.apex(x, y))
        ok = ok & ~self.in_mediastinum(x, y, z)
        ok = ok & (self.heart_q(x, y, z) > 1.1)
        ok = ok & ~self.in_vertebral_body(x, y, margin=3.0)
        ok = ok & ~self.in_descending_aorta(x, y, z, margin=2.0)
        return np.asarray(ok)

    def placement_ok(self, x: Arr, y: Arr, z: Arr) -> Arr:
        """Stricter lung predicate for placing nodules: also keeps away from the spine."""
        near_spine = (np.abs(x - self.xc) < 40.0 * self.sx) & (y > self.vertebra_xy[1])
        return np.asarray(self.in_lung(x, y, z) & ~near_spine)

    def lung_parenchyma_hu(self, y: Coord, z: Coord) -> Coord:
        """Mean lung HU at depth ``y`` (denser towards the dependent, posterior lung)."""
        _, bc, ycc = self.cavity(z)
        f = np.clip((y - ycc) / (2.0 * bc) + 0.5, 0.0, 1.0)
        return self.hu_lung + self.lung_gradient * (f - 0.5)


def sample_anatomy(rng: np.random.Generator, fov_mm: float, profile: Profile) -> Anatomy:
    """Draw one patient whose body fits a reconstruction field of view of ``fov_mm``.

    The body is centred within ±15 mm (x) and -20…+25 mm (y) of the scanner isocentre (0, 0);
    the lung apex lies somewhere between z = -120 and +80 mm (table coordinates vary). Body
    width (a fraction of the field of view), depth/width ratio and fat follow ``profile``; a
    body wider than the field of view less 8 mm is narrowed to it, except that the robustness
    profile lets large bodies reach the edge of the image (2 mm).
    """
    u = rng.uniform
    xc, yc = u(-15.0, 15.0), u(-20.0, 25.0)
    edge = 2.0 if profile.name == "robustness" else 8.0
    half_width = min(fov_mm * band(rng, profile.width_bands, None), fov_mm / 2.0 - abs(xc) - edge)
    half_depth = half_width * band(rng, profile.depth_bands, None)
    half_depth = min(half_depth, fov_mm / 2.0 - abs(yc) - edge)
    sx, sy = half_width / 165.0, half_depth / 115.0
    fat = u(*profile.fat) * min(1.0, sx)
    muscle_lateral = u(10.0, 15.0) * sx
    muscle_anterior = u(10.0, 16.0) * sy
    muscle_posterior = u(28.0, 38.0) * sy
    z_apex = u(-120.0, 80.0)
    dome_right = z_apex - u(175.0, 215.0)
    dome_left = dome_right - u(10.0, 25.0)
    # cavity at mid chest (same formulas as Anatomy.cavity with the neck factor = 1)
    bc = half_depth - fat - 0.5 * (muscle_anterior + muscle_posterior)
    ycc = yc + 0.5 * (muscle_anterior - muscle_posterior)
    y_back_cavity = ycc + bc
    vsemi = (u(19.0, 23.0) * sx, u(14.0, 17.0) * sy)
    vertebra = (xc, y_back_cavity - 12.0 * sy - vsemi[1])
    # heart: an ellipsoid whose long axis points left, anterior and down; it rests on the left dome
    semi = np.array([u(58.0, 68.0) * sx, u(44.0, 52.0) * sy, u(45.0, 55.0)])
    yaw, tilt = np.deg2rad(u(20.0, 40.0)), np.deg2rad(u(15.0, 30.0))
    rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    ry = np.array([[np.cos(tilt), 0, np.sin(tilt)], [0, 1, 0], [-np.sin(tilt), 0, np.cos(tilt)]])
    rot = rz @ ry
    mat = rot @ np.diag(1.0 / semi**2) @ rot.T
    heart_centre = (
        float(xc + u(15.0, 25.0) * sx),
        float(ycc - bc + semi[1] + u(2.0, 6.0)),
        float(dome_left + 0.55 * semi[2]),
    )
    jitter = rng.normal
    return Anatomy(
        xc=xc,
        yc=yc,
        z_apex=z_apex,
        dome_right=dome_right,
        dome_left=dome_left,
        half_width=half_width,
        half_depth=half_depth,
        fat=fat,
        muscle_lateral=muscle_lateral,
        muscle_anterior=muscle_anterior,
        muscle_posterior=muscle_posterior,
        sx=sx,
        sy=sy,
        heart_centre=heart_centre,
        heart_matrix=tuple((float(r[0]), float(r[1]), float(r[2])) for r in mat),
        mediastinum_half_width=u(20.0, 26.0) * sx,
        aorta_xy=(xc + u(21.0, 25.0) * sx, vertebra[1] - u(4.0, 10.0) * sy),
        aorta_radius=u(10.0, 13.0) * min(sx, sy) ** 0.5,
        z_arch=z_apex - u(55.0, 70.0),
        vertebra_xy=vertebra,
        vertebra_semi=vsemi,
        vertebra_period=u(22.0, 26.0),
        disc_height=u(4.0, 6.0),
        rib_z1=z_apex + u(0.0, 10.0),
        rib_spacing=u(21.0, 25.0),
        rib_drop=u(70.0, 95.0),
        rib_half_height=u(4.5, 6.0),
        rib_half_thickness=u(3.0, 4.0),
        sternum_top=z_apex - u(25.0, 35.0),
        sternum_bottom=z_apex - u(180.0, 200.0),
        hu_fat=-100.0 + 8.0 * jitter(),
        hu_muscle=45.0 + 5.0 * jitter(),
        hu_soft=40.0 + 5.0 * jitter(),
        hu_liver=58.0 + 5.0 * jitter(),
        hu_mediastinal_fat=-90.0 + 8.0 * jitter(),
        hu_heart=40.0 + 4.0 * jitter(),
        hu_cortical=u(800.0, 1100.0),
        hu_cancellous=u(180.0, 300.0),
        hu_lung=u(-870.0, -835.0),
        lung_gradient=u(20.0, 60.0),
        lung_texture_sd=u(15.0, 25.0),
    )
