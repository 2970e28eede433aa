"""Rasterise an :class:`~training.anatomy.Anatomy` one axial slice at a time.

Slices are axial planes (constant z in LPS, PS3.3 C.7.6.2.1.1). Every structure is evaluated at
voxel centres on the slice's body bounding box, with 1-D coordinate vectors broadcast into 2-D,
so one slice costs a few dozen vectorised operations on a cache-sized array. Angles around the
thoracic cavity (used by the ribs) do not depend on z and are computed once per phantom
(:func:`rib_maps`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from training.anatomy import AIR_HU, Anatomy

F32 = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]

_RIB_START = 0.13 * math.pi  # |angle| from the posterior midline where the ribs begin
_RIB_END = 0.82 * math.pi  # where ribs 1-7 end anteriorly (costal cartilage is not modelled)
_N_RIBS = 12


@dataclass(frozen=True)
class RibMaps:
    """Per-phantom in-plane maps (rows = y, columns = x) used to draw the ribs."""

    theta: F32  # |angle| around the cavity centre, 0 = posterior midline, π = anterior
    drop: F32  # how far below its posterior end a rib runs at that angle (mm)


def rib_maps(anat: Anatomy, x: F32, y: F32) -> RibMaps:
    _, _, ycc = anat.cavity(anat.z_apex)
    theta = np.abs(np.arctan2((x - anat.xc)[None, :], (y - ycc)[:, None])).astype(np.float32)
    frac = np.clip((theta - _RIB_START) / (0.8 * math.pi - _RIB_START), 0.0, None)
    drop = (anat.rib_drop * frac**1.2).astype(np.float32)
    return RibMaps(theta=theta, drop=drop)


def body_bbox(anat: Anatomy, z: float, x: F32, y: F32) -> tuple[int, int, int, int]:
    """Row and column index ranges (j0, j1, i0, i1) holding the body at ``z``."""
    a, b = anat.body_axes(z)
    a, b = float(a), float(b)
    i0 = int(np.searchsorted(x, anat.xc - a - 1.0))
    i1 = int(np.searchsorted(x, anat.xc + a + 1.0))
    j0 = int(np.searchsorted(y, anat.yc - b - 1.0))
    j1 = int(np.searchsorted(y, anat.yc + b + 1.0))
    return j0, j1, i0, i1


def render_slice(
    anat: Anatomy, z: float, x: F32, y: F32, ribs: RibMaps, texture: F32 | None
) -> tuple[F32, Mask]:
    """HU image and lung mask of the axial slice at ``z`` over the grid ``y`` (rows) × ``x``.

    ``ribs`` and ``texture`` (unit-variance lung texture, or None) have the same shape.
    """
    xr, yc_ = x[None, :], y[:, None]
    img = np.full((y.size, x.size), AIR_HU, dtype=np.float32)
    a, b = (float(v) for v in anat.body_axes(z))
    dx = x - np.float32(anat.xc)
    for inset, hu in ((0.0, anat.hu_fat), (anat.fat, anat.hu_muscle)):
        u2 = (dx / np.float32(a - inset)) ** 2
        v = (y - np.float32(anat.yc)) / np.float32(b - inset)
        img[u2[None, :] + anat._back(v)[:, None] <= 1.0] = hu

    ac_, bc_, ycc_ = anat.cavity(z)
    ac, bc, ycc = float(ac_), float(bc_), float(ycc_)
    dyc = y - np.float32(ycc)
    rc = (dx * dx / np.float32(ac * ac))[None, :] + (dyc * dyc / np.float32(bc * bc))[:, None]
    cav = rc <= 1.0
    img[cav] = anat.hu_soft
    dome = anat.dome(xr, yc_)
    img[cav & (z <= dome) & (dx < 0)[None, :]] = anat.hu_liver
    med = anat.in_mediastinum(xr, yc_, z)
    img[cav & med] = anat.hu_mediastinal_fat
    hq = anat.heart_q(xr, yc_, z)
    img[cav & (hq <= 1.0)] = anat.hu_heart
    if z <= anat.z_arch:
        img[anat.in_descending_aorta(xr, yc_, z)] = anat.hu_heart

    lung = cav & (z > dome) & (z < anat.apex(xr, yc_)) & ~med & (hq > 1.1)
    lung &= ~anat.in_vertebral_body(xr, yc_, margin=3.0)
    if z <= anat.z_arch:
        lung &= ~anat.in_descending_aorta(xr, yc_, z, margin=2.0)
    par = np.asarray(anat.lung_parenchyma_hu(y, z), dtype=np.float32)[:, None]
    if texture is not None:
        par = par + texture * np.float32(anat.lung_texture_sd)
    np.copyto(img, np.broadcast_to(par, img.shape), where=lung)

    bone = _draw_ribs(img, anat, z, dx, dyc, ac, bc, rc, ribs)
    bone |= _draw_sternum(img, anat, z, dx, dyc, bc)
    bone |= _draw_spine(img, anat, z, x, y)
    lung &= ~bone
    return img, lung


def _draw_ribs(
    img: F32,
    anat: Anatomy,
    z: float,
    dx: F32,
    dyc: F32,
    ac: float,
    bc: float,
    rc: npt.NDArray[Any],
    ribs: RibMaps,
) -> Mask:
    # first-order distance outside the cavity ellipse: (rc - 1) / |grad rc|
    g2 = (dx * dx / np.float32(ac**4))[None, :] + (dyc * dyc / np.float32(bc**4))[:, None]
    dist = (rc - 1.0) / (2.0 * np.sqrt(g2) + 1e-6)
    tr, h = anat.rib_half_thickness, anat.rib_half_height
    radial = ((dist - (tr + 0.5)) / tr) ** 2
    m = np.clip(np.rint((anat.rib_z1 - ribs.drop - z) / anat.rib_spacing), 0, _N_RIBS - 1)
    dz = (z - anat.rib_z1) + ribs.drop + m * anat.rib_spacing
    e = radial + (dz / h) ** 2
    end = np.where(m < 7, _RIB_END, _RIB_END - 0.1 * math.pi * (m - 6))
    rib = (e <= 1.0) & (ribs.theta >= _RIB_START) & (ribs.theta <= end)
    img[rib] = anat.hu_cancellous
    img[rib & (e > 0.45)] = anat.hu_cortical
    return np.asarray(rib)


def _draw_sternum(img: F32, anat: Anatomy, z: float, dx: F32, dyc: F32, bc: float) -> Mask:
    if not anat.sternum_bottom <= z <= anat.sternum_top:
        return np.zeros(img.shape, dtype=bool)
    half = (24.0 if z > anat.sternum_top - 45.0 else 14.0) * anat.sx
    u = (dx / np.float32(half)) ** 2
    v = ((dyc + np.float32(bc + 7.0)) / np.float32(6.0)) ** 2
    e = u[None, :] + v[:, None]
    st = e <= 1.0
    img[st] = anat.hu_cancellous
    img[st & (e > 0.5)] = anat.hu_cortical
    return np.asarray(st)


def _draw_spine(img: F32, anat: Anatomy, z: float, x: F32, y: F32) -> Mask:
    """Vertebral body (or disc), canal, neural arch, spinous and transverse processes."""
    vx, vy = anat.vertebra_xy
    sw, sd = anat.vertebra_semi
    canal_y = vy + sd + 8.0 * anat.sy
    spinous = max(anat.muscle_posterior - 16.0, 5.0)
    i0, i1 = np.searchsorted(x, [vx - 40.0 * anat.sx, vx + 40.0 * anat.sx])
    j0, j1 = np.searchsorted(y, [vy - sd - 2.0, canal_y + 12.0 + spinous])
    out = np.zeros(img.shape, dtype=bool)
    if i1 <= i0 or j1 <= j0:
        return out
    sub = img[j0:j1, i0:i1]
    bx = (x[i0:i1] - np.float32(vx))[None, :]
    by = (y[j0:j1] - np.float32(vy))[:, None]
    e = (bx / np.float32(sw)) ** 2 + (by / np.float32(sd)) ** 2
    body = e <= 1.0
    phase = (z - anat.rib_z1) % anat.vertebra_period  # where in its vertebra (+ disc) z lies
    disc = phase < anat.disc_height
    if disc:
        sub[body] = 90.0
    else:
        sub[body] = anat.hu_cancellous
        sub[body & (e > 0.8)] = anat.hu_cortical
    cy = by - np.float32(canal_y - vy)
    r2 = bx * bx + cy * cy
    arch = (r2 >= 49.0) & (r2 <= 144.0) & (cy >= -3.0)
    spin = (np.abs(bx) < 4.0) & (cy >= 10.0) & (cy <= 10.0 + spinous)
    trans = (np.abs(cy - 1.0) < 4.5) & (np.abs(bx) > 9.0) & (np.abs(bx) < 32.0 * anat.sx)
    # posterior elements are separate per vertebra: the arch leaves room for the foramina and
    # the transverse processes are short in z
    arch_z = anat.disc_height + 1.0 <= phase <= anat.vertebra_period - 3.0
    trans_z = anat.disc_height + 3.0 <= phase <= anat.disc_height + 3.0 + 0.4 * anat.vertebra_period
    post = ((arch | spin) & arch_z) | (trans & trans_z)
    sub[post] = 0.7 * anat.hu_cortical
    sub[r2 < 49.0] = 20.0
    out[j0:j1, i0:i1] = body | post
    return out


def lung_texture_tile(rng: np.random.Generator, spacing_kji: tuple[float, float, float]) -> F32:
    """Periodic, spatially correlated unit-variance noise (two scales, ~0.8 and ~2.5 mm).

    It is tiled over the volume, so it costs one small FFT per phantom instead of a full-volume
    filter. Shape (32, 64, 64) voxels; correlation lengths are in mm, whatever the spacing.
    """
    shape = (32, 64, 64)
    freqs = np.meshgrid(*(np.fft.fftfreq(n) for n in shape), indexing="ij")
    out = np.zeros(shape, dtype=np.float64)
    for sigma_mm, weight in ((0.8, 0.6), (2.5, 0.4)):
        white = rng.standard_normal(shape)
        f2 = sum((f * (sigma_mm / s)) ** 2 for f, s in zip(freqs, spacing_kji, strict=True))
        field = np.real(np.fft.ifftn(np.fft.fftn(white) * np.exp(-2.0 * np.pi**2 * f2)))
        out += weight * field / (field.std() + 1e-12)
    return np.asarray(out / out.std(), dtype=np.float32)


def texture_slice(tile: F32, k: int, j0: int, j1: int, i0: int, i1: int) -> F32:
    """The tile's slice ``k`` repeated over rows j0:j1 and columns i0:i1 of the full grid."""
    t = tile[k % tile.shape[0]]
    reps = (-(-j1 // t.shape[0]), -(-i1 // t.shape[1]))
    return np.tile(t, reps)[j0:j1, i0:i1]
