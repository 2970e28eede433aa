"""Synthetic chest-CT phantoms with exact ground truth, for training and evaluating nodule models.

:func:`generate_phantom` draws one patient and one scanner from a seed and returns the CT
volume (HU, float32), a nodule label map and the nodules' analytic truth. Everything is built
analytically in DICOM patient coordinates (LPS, mm; PS3.3 C.7.6.2.1.1) and sampled at the voxel
centres of the scanner grid, so the anatomy is the same whatever the grid, the matrix or the
patient position:

* anatomy (:mod:`training.anatomy`): body with subcutaneous fat and muscle, thoracic cavity,
  mediastinal fat, heart, descending aorta, liver under the right dome, spine (vertebral bodies,
  discs, posterior elements), twelve pairs of ribs, sternum, two lungs (≈ −850 HU, denser
  posteriorly, with spatially correlated texture);
* tubes (:mod:`training.vessels`): great vessels, trachea and bronchi (air with a soft-tissue
  wall), and pulmonary vessel trees from the hila (radius ≈ 6 → 0.9 mm, +40 HU);
* nodules (:mod:`training.nodules`, :mod:`training.placement`);
* scanner: Gaussian noise (sd 10–40 HU after blurring) and a slight in-plane blur
  (kernel [0.18, 0.64, 0.18] per axis, which also correlates the noise).

Scanner geometry per seed: 512 × 512 matrix with pixel spacing 0.55–0.9 mm (a smaller
``matrix`` keeps the field of view, so its pixels are larger), slice thickness = spacing
between slices ∈ {0.625, 0.75, 0.8, 1, 1.25, 1.5, 2, 2.5} mm, 100–400 slices covering
200–320 mm centred on the lungs, patient position HFS (70 %) or FFS. Axial slices: HFS uses
ImageOrientationPatient [1,0,0,0,1,0] and FFS [-1,0,0,0,1,0]; slice ``k`` runs along the normal
(row × column direction): towards the head for HFS, towards the feet for FFS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from preread.domain import Geometry, TruthNodule, Volume
from training.anatomy import AIR_HU, Anatomy, sample_anatomy
from training.anatomy_slices import (
    RibMaps,
    body_bbox,
    lung_texture_tile,
    render_slice,
    rib_maps,
    texture_slice,
)
from training.nodules import NoduleShape, NoduleSpec, spec_shape
from training.placement import Placer, random_nodules
from training.raster import AxisGrid, draw_tubes
from training.vessels import Tubes, airways, great_vessels, landmarks, pulmonary_trees

__all__ = [
    "GENERATOR_VERSION",
    "NoduleSpec",
    "PatientPosition",
    "Phantom",
    "generate_phantom",
    "lung_mask",
]

GENERATOR_VERSION = "1.0.0"

PatientPosition = Literal["HFS", "FFS"]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

HU_MIN, HU_MAX = -1024.0, 3071.0  # what the DICOM writer can store (12-bit CT range)
_THICKNESSES = (0.625, 0.75, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5)
_BLUR_W = 0.18
_BLUR_VAR = (2.0 * _BLUR_W**2 + (1.0 - 2.0 * _BLUR_W) ** 2) ** 2  # noise variance kept by the blur


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic chest CT on its native scanner grid, with ground truth.

    ``volume``: HU (float32), clipped to [-1024, 3071]. ``label``: uint8, 0 background and
    ``n`` where the voxel centre lies inside nodule ``n`` (= ``TruthNodule.label``, 1..N).
    ``nodules``: their analytic centre, long axis (maximal 3-D diameter) and analytic volume.
    ``noise_sd_hu``: the standard deviation of the image noise (after the scanner blur).
    """

    volume: Volume
    label: npt.NDArray[np.uint8]
    nodules: tuple[TruthNodule, ...]
    seed: int
    patient_position: PatientPosition
    noise_sd_hu: float


@dataclass(frozen=True)
class _Scanner:
    fov_mm: float  # reconstruction diameter (= 512 × the 512-matrix pixel spacing)
    thickness: float
    n_slices: int
    noise_sd: float
    position: PatientPosition
    z_offset: float


def _sample_scanner(rng: np.random.Generator) -> _Scanner:
    ps512 = round(float(rng.uniform(0.55, 0.9)), 4)
    thickness = float(rng.choice(_THICKNESSES))
    n = int(np.clip(round(rng.uniform(200.0, 320.0) / thickness), 100, 400))
    noise = round(float(rng.uniform(10.0, 40.0)), 2)
    position: PatientPosition = "HFS" if rng.uniform() < 0.7 else "FFS"
    return _Scanner(ps512 * 512, thickness, n, noise, position, float(rng.uniform(-10.0, 10.0)))


def _grids(
    sc: _Scanner, anat: Anatomy, matrix: int, max_slices: int | None, position: PatientPosition
) -> tuple[AxisGrid, Geometry]:
    """The canonical (ascending x, y, z) grid and the native DICOM geometry of the same voxels."""
    ps = round(sc.fov_mm / matrix, 6)
    n = sc.n_slices if max_slices is None else max(1, min(sc.n_slices, max_slices))
    x0 = round(-(matrix - 1) / 2.0 * ps, 4)
    z_mid = 0.5 * (anat.z_apex + anat.dome_left - 60.0) + sc.z_offset
    z0 = round(z_mid - (n - 1) / 2.0 * sc.thickness, 3)
    axis: F64 = x0 + ps * np.arange(matrix, dtype=np.float64)
    z: F64 = z0 + sc.thickness * np.arange(n, dtype=np.float64)
    grid = AxisGrid(x=axis, y=axis.copy(), z=z)
    spacing = (sc.thickness, ps, ps)
    if position == "HFS":
        geom = Geometry((n, matrix, matrix), (x0, x0, z0), (1, 0, 0), (0, 1, 0), (0, 0, 1), spacing)
    else:
        origin = (float(axis[-1]), x0, float(grid.z[-1]))
        geom = Geometry((n, matrix, matrix), origin, (-1, 0, 0), (0, 1, 0), (0, 0, -1), spacing)
    return grid, geom


def _patient(seed: int) -> tuple[_Scanner, Anatomy, list[np.random.Generator]]:
    """Scanner and anatomy of ``seed``, and the generators for tubes, nodules, texture, noise."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    sc = _sample_scanner(rngs[0])
    return sc, sample_anatomy(rngs[1], sc.fov_mm), rngs[2:]


def lung_mask(phantom: Phantom) -> npt.NDArray[np.bool_]:
    """Voxels of ``phantom`` whose centre lies in its analytic lungs (same shape as the volume).

    The lungs as drawn before airways, great vessels and pulmonary vessels: useful for
    statistics of the parenchyma or for sampling training patches inside the lungs. Costs about
    2 s per 100 slices of 512 × 512.
    """
    _, anat, _ = _patient(phantom.seed)
    g = phantom.volume.geometry
    nk, nj, ni = g.shape
    a = g.affine
    rows = np.arange(nj, dtype=np.float64)[:, None, None] * a[:3, 1]  # (nj, 1, 3)
    cols = np.arange(ni, dtype=np.float64)[None, :, None] * a[:3, 2]  # (1, ni, 3)
    out = np.zeros(g.shape, dtype=bool)
    for k in range(nk):
        o = a[:3, 3] + k * a[:3, 0]
        x, y, z = (o[c] + rows[..., c] + cols[..., c] for c in range(3))  # broadcast (nj, ni)
        out[k] = anat.in_lung(x, y, z)
    return out


def generate_phantom(
    seed: int,
    *,
    matrix: int = 512,
    max_slices: int | None = None,
    nodules: list[NoduleSpec] | tuple[NoduleSpec, ...] | None = None,
    patient_position: PatientPosition | None = None,
) -> Phantom:
    """Generate phantom ``seed`` (fully determined by the arguments).

    Parameters
    ----------
    seed: non-negative integer; the patient, scanner and nodules follow from it.
    matrix: rows = columns; the field of view stays that of the 512 matrix.
    max_slices: cap the slice count (same thickness, shorter z extent, centred on the lungs).
    nodules: place exactly these spheres instead of the random nodules (``[]`` for none).
    patient_position: override the drawn HFS/FFS (the anatomy in patient space is unchanged).
    """
    if matrix < 8:
        raise ValueError(f"matrix must be >= 8, got {matrix}")
    sc, anat, (r_tube, r_nod, r_tex, r_noise) = _patient(seed)
    position = patient_position or sc.position
    grid, geom = _grids(sc, anat, matrix, max_slices, position)

    lm = landmarks(anat, r_tube)
    vessels_big = great_vessels(anat, lm)
    air = airways(anat, lm, r_tube, _lung_outside(anat, vessels_big))
    exclusions = vessels_big + air.wall
    trees = pulmonary_trees(anat, lm, r_tube, _lung_outside(anat, exclusions))

    placer = Placer(anat, exclusions, trees, (float(grid.z[0]), float(grid.z[-1])), r_nod)
    shapes: list[NoduleShape]
    if nodules is None:
        shapes = random_nodules(placer, r_nod)
    else:
        shapes = [spec_shape(r_nod, s) for s in nodules]

    vol, lung = _anatomy_volume(anat, grid, lung_texture_tile(r_tex, grid.spacing))
    draw_tubes(vol, grid, vessels_big, anat.hu_heart, "max", carve=lung)
    draw_tubes(vol, grid, air.wall, 10.0, "max", carve=lung, carve_margin=0.5)
    draw_tubes(vol, grid, air.lumen, AIR_HU, "min")
    draw_tubes(vol, grid, trees, 40.0, "max", clip_to=lung)
    label = np.zeros(grid.shape, dtype=np.uint8)
    for n, s in enumerate(shapes, start=1):
        s.draw(vol, label, grid, n)
    _scanner_noise(vol, sc.noise_sd, r_noise)
    if position == "FFS":
        _flip_ki(vol)
        _flip_ki(label)
    return Phantom(
        volume=Volume(vol, geom),
        label=label,
        nodules=tuple(s.truth(n) for n, s in enumerate(shapes, start=1)),
        seed=seed,
        patient_position=position,
        noise_sd_hu=sc.noise_sd,
    )


def _lung_outside(anat: Anatomy, tubes: Tubes) -> Callable[[F64], npt.NDArray[np.bool_]]:
    """Point predicate: in the lungs and more than 1 mm away from ``tubes``."""

    def inside(pts: F64) -> npt.NDArray[np.bool_]:
        ok = anat.in_lung(pts[:, 0], pts[:, 1], pts[:, 2])
        if ok.any():
            ok[ok] = tubes.sdf(pts[ok]) > 1.0
        return ok

    return inside


def _anatomy_volume(anat: Anatomy, grid: AxisGrid, tile: F32) -> tuple[F32, npt.NDArray[np.bool_]]:
    """Render every axial slice of the analytic anatomy (body bounding box only)."""
    vol = np.empty(grid.shape, dtype=np.float32)
    lung = np.zeros(grid.shape, dtype=bool)
    x, y = grid.x.astype(np.float32), grid.y.astype(np.float32)
    ribs = rib_maps(anat, x, y)
    for k, z in enumerate(grid.z):
        vol[k].fill(AIR_HU)
        j0, j1, i0, i1 = body_bbox(anat, float(z), x, y)
        if j1 <= j0 or i1 <= i0:
            continue
        sub = RibMaps(ribs.theta[j0:j1, i0:i1], ribs.drop[j0:j1, i0:i1])
        tex = texture_slice(tile, k, j0, j1, i0, i1)
        img, lmask = render_slice(anat, float(z), x[i0:i1], y[j0:j1], sub, tex)
        vol[k, j0:j1, i0:i1] = img
        lung[k, j0:j1, i0:i1] = lmask
    return vol, lung


def _scanner_noise(vol: F32, sd: float, rng: np.random.Generator) -> None:
    """Add white Gaussian noise, blur in-plane (3-tap per axis) and clip, slice by slice.

    The noise comes from a pool of normal deviates read at a random offset per slice (cheap,
    and indistinguishable from fresh noise for a detector); it is scaled so that its standard
    deviation after the blur is ``sd``.
    """
    nk, nj, ni = vol.shape
    npix = nj * ni
    pool = rng.standard_normal(max(4 * npix, min(nk * npix, 1 << 22)), dtype=np.float32)
    pool *= np.float32(sd / np.sqrt(_BLUR_VAR))
    offsets = rng.integers(0, pool.size - npix + 1, nk)
    tmp = np.empty((nj, ni), dtype=np.float32)
    w, c = np.float32(_BLUR_W), np.float32(1.0 - 2.0 * _BLUR_W)
    for k in range(nk):
        s = vol[k]
        s += pool[offsets[k] : offsets[k] + npix].reshape(nj, ni)
        _blur_axis(s, tmp, w, c, axis=1)
        _blur_axis(tmp, s, w, c, axis=0)
        np.clip(s, HU_MIN, HU_MAX, out=s)


def _blur_axis(src: F32, dst: F32, w: np.float32, c: np.float32, axis: int) -> None:
    """dst = [w, c, w] * src along ``axis`` (edge values repeated)."""
    np.multiply(src, c, out=dst)
    a = np.moveaxis(src, axis, 0)
    b = np.moveaxis(dst, axis, 0)
    b[1:] += w * a[:-1]
    b[:-1] += w * a[1:]
    b[0] += w * a[0]
    b[-1] += w * a[-1]


def _flip_ki(arr: npt.NDArray[np.generic]) -> None:
    """Reverse the slice and column axes in place (canonical order -> FFS order)."""
    n = arr.shape[0]
    for k in range((n + 1) // 2):
        top = arr[k, :, ::-1].copy()
        arr[k] = arr[n - 1 - k, :, ::-1]
        arr[n - 1 - k] = top
