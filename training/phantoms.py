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
* parenchyma (:mod:`training.parenchyma`): fissures (oblique in each lung, right minor),
  emphysema (low-attenuation spheres) and scars / plate atelectasis (thin soft-tissue plates,
  mostly subpleural: hard negatives);
* tubes (:mod:`training.vessels`): great vessels, trachea and bronchi (air with a soft-tissue
  wall), and pulmonary vessel trees from the hila (radius ≈ 3.5–5.5 → 0.6–1 mm, +40 HU, with
  per-patient branching, tortuosity and curvature);
* nodules (:mod:`training.nodules`, :mod:`training.placement`), including calcified ones;
* scanner (:mod:`training.scanner`): slice sensitivity profile, kernel (signal blur or edge
  enhancement, and the noise power spectrum), noise.

**Calcified nodules** (``TruthNodule.calcified``) are in the image and in ``Phantom.nodules``
but never in the label map (they are not to be reported, so a model must not learn to segment
them). The non-calcified nodules have labels 1..N (= their values in ``label``); the calcified
ones come after them, N+1..N+M, values that do not occur in ``label``.

**Profiles** (``profile=``; :mod:`training.profiles`). ``train`` is for training, tuning and
threshold choice; ``robustness`` lies outside it on every axis marked *, for a set that no
training or threshold choice ever sees:

==========================  =====================================  ==============================
setting                     ``train``                              ``robustness``
==========================  =====================================  ==============================
pixel spacing (512 matrix)  0.55–0.9 mm                            0.55–0.9 mm
slice thickness* (mm)       0.625, 0.75, 0.8, 1, 1.25, 1.5, 2,     3.75, 4, 5
                            2.5 (90 %); 3 (10 %)
slices, coverage            100–400, 200–320 mm                    40–400, 200–320 mm
noise sd*                   10–40 HU (75 %), 40–60 HU (25 %)       65–90 HU
kernel* (signal w, NPS      white (0.10…0.20, white noise),        very sharp (−0.20…−0.13,
peak in cycles/px)          smooth (0.12…0.25, 0.10–0.20),         0.42–0.50), iterative-like
                            sharp (−0.12…0, 0.25–0.40)             (2 × 0.26…0.32, 0.04–0.09)
slice profile (≥ 2 mm)      [s, 1−2s, s], s 0.05–0.15              s 0.16–0.25
body width / FOV*           0.34–0.45                              0.29–0.33 or 0.46–0.49
body depth / width*         0.60–0.80                              0.53–0.58 or 0.83–0.92
subcutaneous fat            4–32 mm                                2–45 mm
emphysema*                  40 %: 5–40 spaces of 1.5–8 mm radius   always: 60–150 of 3–15 mm
scars / plate atelectasis   50 %: 1–4                              70 %: 1–4
fissures                    each 80 %, ~1 mm, −600…−300 HU         same
nodules                     see :mod:`training.placement`          same
==========================  =====================================  ==============================

``wide`` (mining phantoms of a false-positive classifier, never a detector's or a threshold's
data) is ``train`` widened up to, never into, the robustness ranges: slices 0.625–3.5 mm (3, 3.5
mm: 30 %; at least 57 slices), noise 10–40 / 40–60 / 60–64 HU (35 / 35 / 30 %), two more
kernels — soft-iterative (2 × 0.20…0.255, NPS peak 0.092–0.11) and extra-sharp (−0.128…−0.10,
0.37–0.415) — and emphysema in 60 % (5–59 spaces of 1.5–8 mm); the patient's build as ``train``.

The kernel filters the signal in-plane with ``[w, 1 − 2w, w]`` per axis (``w < 0`` enhances
edges) and shapes the noise with ``NPS(f) ∝ f·exp(−f²/2f_p²)``; ``noise_sd_hu`` is the standard
deviation of the added noise. Geometry per seed: a 512 × 512 matrix (a smaller ``matrix``
keeps the field of view, so its pixels are larger), slice thickness = spacing between slices,
patient position HFS (70 %) or FFS. Axial slices: HFS uses ImageOrientationPatient
[1,0,0,0,1,0] and FFS [-1,0,0,0,1,0]; slice ``k`` runs along the normal (row × column
direction): towards the head for HFS, towards the feet for FFS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
from training.parenchyma import (
    Fissure,
    Parenchyma,
    draw_emphysema,
    draw_fissures_slice,
    draw_scars,
    sample_parenchyma,
)
from training.placement import Placer, calcified_nodules, random_nodules
from training.profiles import ProfileName, get_profile
from training.raster import AxisGrid, draw_tubes
from training.scanner import HU_MAX, HU_MIN, PatientPosition, Scanner, apply_scanner, sample_scanner
from training.vessels import Airways, Tubes, airways, great_vessels, landmarks, pulmonary_trees

__all__ = [
    "GENERATOR_VERSION",
    "HU_MAX",
    "HU_MIN",
    "NoduleSpec",
    "PatientPosition",
    "Phantom",
    "ProfileName",
    "generate_phantom",
    "lung_mask",
    "nodule_placer",
]

GENERATOR_VERSION = "2.0.0"

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic chest CT on its native scanner grid, with ground truth.

    ``volume``: HU (float32), clipped to [-1024, 3071]. ``label``: uint8, 0 background and
    ``n`` where the voxel centre lies inside nodule ``n`` (= ``TruthNodule.label``, 1..N; the
    calcified nodules N+1..N+M are not in it). ``nodules``: their analytic centre, long axis
    (maximal 3-D diameter) and analytic volume. ``noise_sd_hu``: the standard deviation of the
    image noise. ``profile``, ``scanner`` and ``parenchyma``: what was drawn.
    """

    volume: Volume
    label: npt.NDArray[np.uint8]
    nodules: tuple[TruthNodule, ...]
    seed: int
    patient_position: PatientPosition
    noise_sd_hu: float
    profile: ProfileName = "train"
    scanner: Scanner | None = None
    parenchyma: Parenchyma | None = None


def _grids(
    sc: Scanner, anat: Anatomy, matrix: int, max_slices: int | None, position: PatientPosition
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


def _patient(
    seed: int, profile: ProfileName
) -> tuple[Scanner, Anatomy, Parenchyma, list[np.random.Generator]]:
    """Scanner, anatomy and parenchyma of ``seed``, and the generators for tubes, nodules,
    texture, noise."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    prof = get_profile(profile)
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(7)]
    sc = sample_scanner(rngs[0], prof)
    anat = sample_anatomy(rngs[1], sc.fov_mm, prof)
    return sc, anat, sample_parenchyma(rngs[6], anat, prof), rngs[2:6]


def lung_mask(phantom: Phantom) -> npt.NDArray[np.bool_]:
    """Voxels of ``phantom`` whose centre lies in its analytic lungs (same shape as the volume).

    The lungs as drawn before airways, great vessels and pulmonary vessels: useful for
    statistics of the parenchyma or for sampling training patches inside the lungs. Costs about
    2 s per 100 slices of 512 × 512.
    """
    _, anat, _, _ = _patient(phantom.seed, phantom.profile)
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
    profile: ProfileName = "train",
) -> Phantom:
    """Generate phantom ``seed`` (fully determined by the arguments).

    Parameters
    ----------
    seed: non-negative integer; the patient, scanner and nodules follow from it.
    matrix: rows = columns; the field of view stays that of the 512 matrix.
    max_slices: cap the slice count (same thickness, shorter z extent, centred on the lungs).
    nodules: place exactly these spheres instead of the random nodules (``[]`` for none).
    patient_position: override the drawn HFS/FFS (the anatomy in patient space is unchanged).
    profile: "train" (default) or "robustness" (scanner and patient settings outside the
        training ranges; see the module docstring). Same seed, different profile: a different
        patient.
    """
    if matrix < 8:
        raise ValueError(f"matrix must be >= 8, got {matrix}")
    sc, anat, par, (r_tube, r_nod, r_tex, r_noise) = _patient(seed, profile)
    position = patient_position or sc.position
    grid, geom = _grids(sc, anat, matrix, max_slices, position)
    vessels_big, air, trees = _tubes(anat, r_tube)
    exclusions = vessels_big + air.wall
    z_range = (float(grid.z[0]), float(grid.z[-1]))
    placer = Placer(anat, exclusions, trees, z_range, r_nod, par.fissures)
    shapes: list[NoduleShape]
    if nodules is None:
        shapes = random_nodules(placer, r_nod)
        shapes += calcified_nodules(placer, r_nod)
    else:
        specs = sorted(nodules, key=lambda s: s.calcified)  # stable: calcified ones last
        shapes = [spec_shape(r_nod, s) for s in specs]

    tile = lung_texture_tile(r_tex, grid.spacing)
    vol, lung = _anatomy_volume(anat, grid, tile, par.fissures)
    draw_tubes(vol, grid, vessels_big, anat.hu_heart, "max", carve=lung)
    draw_tubes(vol, grid, air.wall, 10.0, "max", carve=lung, carve_margin=0.5)
    draw_emphysema(vol, lung, grid, par.emphysema)
    draw_scars(vol, lung, grid, par.scars)
    draw_tubes(vol, grid, air.lumen, AIR_HU, "min")
    draw_tubes(vol, grid, trees, 40.0, "max", clip_to=lung)
    label = np.zeros(grid.shape, dtype=np.uint8)
    for n, s in enumerate(shapes, start=1):
        s.draw(vol, label, grid, n)
    apply_scanner(vol, sc, r_noise)
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
        profile=profile,
        scanner=sc,
        parenchyma=par,
    )


def _tubes(anat: Anatomy, r_tube: np.random.Generator) -> tuple[Tubes, Airways, Tubes]:
    """Great vessels, airways and pulmonary vessel trees of a patient (``r_tube`` draws)."""
    lm = landmarks(anat, r_tube)
    vessels_big = great_vessels(anat, lm)
    air = airways(anat, lm, r_tube, _lung_outside(anat, vessels_big))
    trees = pulmonary_trees(anat, lm, r_tube, _lung_outside(anat, vessels_big + air.wall))
    return vessels_big, air, trees


def nodule_placer(
    seed: int,
    rng: np.random.Generator,
    *,
    matrix: int = 512,
    max_slices: int | None = None,
    profile: ProfileName = "train",
) -> Placer:
    """A :class:`~training.placement.Placer` on the anatomy of phantom ``seed`` (as
    :func:`generate_phantom` builds it for the same arguments), drawing with ``rng``: to place
    further random nodules in that patient (:func:`training.placement.random_nodules`) without
    rendering the scan. Nodules it places lie inside the scanned z range of that grid."""
    sc, anat, par, (r_tube, _, _, _) = _patient(seed, profile)
    grid, _ = _grids(sc, anat, matrix, max_slices, sc.position)
    vessels_big, air, trees = _tubes(anat, r_tube)
    z_range = (float(grid.z[0]), float(grid.z[-1]))
    return Placer(anat, vessels_big + air.wall, trees, z_range, rng, par.fissures)


def _lung_outside(anat: Anatomy, tubes: Tubes) -> Callable[[F64], npt.NDArray[np.bool_]]:
    """Point predicate: in the lungs and more than 1 mm away from ``tubes``."""

    def inside(pts: F64) -> npt.NDArray[np.bool_]:
        ok = anat.in_lung(pts[:, 0], pts[:, 1], pts[:, 2])
        if ok.any():
            ok[ok] = tubes.sdf(pts[ok]) > 1.0
        return ok

    return inside


def _anatomy_volume(
    anat: Anatomy, grid: AxisGrid, tile: F32, fissures: tuple[Fissure, ...]
) -> tuple[F32, npt.NDArray[np.bool_]]:
    """Render every axial slice of the analytic anatomy and the fissures (body bounding box)."""
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
        draw_fissures_slice(img, lmask, x[i0:i1], y[j0:j1], float(z), grid.spacing, fissures)
        vol[k, j0:j1, i0:i1] = img
        lung[k, j0:j1, i0:i1] = lmask
    return vol, lung


def _flip_ki(arr: npt.NDArray[np.generic]) -> None:
    """Reverse the slice and column axes in place (canonical order -> FFS order)."""
    n = arr.shape[0]
    for k in range((n + 1) // 2):
        top = arr[k, :, ::-1].copy()
        arr[k] = arr[n - 1 - k, :, ::-1]
        arr[n - 1 - k] = top
