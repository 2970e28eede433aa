"""Noise harmonisation: bring a noisier scan's image noise down to what the model was trained on.

A detector and a classifier trained on scans with image noise up to some level make false
candidates of noise blobs on noisier scans (low-dose protocols, sharp kernels, thin slices of
a large patient). :func:`harmonize` measures the noise of a scan on the model grid
(:func:`noise_hu`) and, only when it is above the card's ``max_noise_hu``, smooths the scan with
the narrowest Gaussian (of :data:`SIGMAS_MM`) that brings the measured noise down to it. A scan
within the training range is passed through untouched, so the model's figures there do not
move.

The noise is the median, over soft-tissue voxels (HU of a 7 mm mean within
[:data:`TISSUE_MIN_HU`, :data:`TISSUE_MAX_HU`], 3 voxels inside that region's edge), of the
standard deviation within 5 × 5 × 5 voxels: muscle, fat and organs are nearly flat at that scale,
so what varies there is noise, whatever its texture (a sharp kernel's fine grain or an
iterative reconstruction's blotches). It is taken on a few slabs of slices spread over the
scan (:data:`SLABS` × :data:`SLAB_SLICES`), which is as steady as the whole volume and a
fraction of its cost.

Measured (lung-nodule 2.8.0, docs/model-lung-nodule.md): it takes some of a very sharp kernel's
fine-grained noise away, but leaves an iterative reconstruction's blotches rounder, and the
detector makes more candidates of them; no shipped card uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from preread.domain import Geometry

F32 = npt.NDArray[np.float32]
TISSUE_MIN_HU = -150.0
TISSUE_MAX_HU = 150.0
#: voxels of tissue needed for a measurement (fewer: an all-air or tiny scan, left alone)
MIN_TISSUE_VOXELS = 2_000
SLABS = 5
SLAB_SLICES = 16
#: the Gaussians tried, narrowest first (mm, the same along every axis)
SIGMAS_MM: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.2, 1.5)
_LOCAL = 5
_MEAN_MM = 7.0
_EROSION = 3
_MARGIN = 6  # slices of context around a measured slab (a Gaussian of 1.5 mm reaches 6)


@dataclass(frozen=True)
class Harmonized:
    """What :func:`harmonize` did: the measured noise before and after, and the Gaussian used
    (``sigma_mm`` None: the scan was within the limit, or could not be measured)."""

    hu: F32
    noise_hu: float | None
    sigma_mm: float | None
    noise_after_hu: float | None


def _slabs(hu: F32) -> list[tuple[F32, slice]]:
    """Slabs of slices spread over the scan, each with :data:`_MARGIN` slices of context on
    both sides where the scan has them, and the slices of it that are measured."""
    depth = hu.shape[0]
    if depth <= SLAB_SLICES + 2 * _MARGIN:
        return [(_body_crop(hu), slice(0, depth))]
    last = depth - SLAB_SLICES - 2 * _MARGIN
    count = SLABS if depth >= (SLAB_SLICES + 2 * _MARGIN) * SLABS else 1
    starts = sorted({_MARGIN + round(last * (n + 0.5) / count) for n in range(count)})
    out = []
    for s in starts:
        lo, hi = max(0, s - _MARGIN), min(depth, s + SLAB_SLICES + _MARGIN)
        out.append((_body_crop(hu[lo:hi]), slice(s - lo, s - lo + SLAB_SLICES)))
    return out


def _body_crop(slab: F32) -> F32:
    """``slab`` cut in-plane to what is not air (> −500 HU), with room for every filter
    around it: the air beyond adds nothing to the measurement but time."""
    box = ndimage.find_objects((slab > np.float32(-500.0)).view(np.uint8))
    if not box or box[0] is None:
        return slab
    _, j, i = box[0]
    grow = 3 * _MARGIN
    return slab[
        :,
        max(0, j.start - grow) : j.stop + grow,
        max(0, i.start - grow) : i.stop + grow,
    ]


def _tissue(slab: F32, spacing: tuple[float, float, float]) -> npt.NDArray[np.bool_]:
    size = [max(1, round(_MEAN_MM / s)) for s in spacing]
    mean = ndimage.uniform_filter(slab, size=size, mode="nearest")
    inside = (mean > TISSUE_MIN_HU) & (mean < TISSUE_MAX_HU)
    eroded: npt.NDArray[np.bool_] = ndimage.binary_erosion(inside, iterations=_EROSION)
    return eroded


def _local_sd(slab: F32) -> F32:
    m = ndimage.uniform_filter(slab, _LOCAL, mode="nearest")
    m2 = ndimage.uniform_filter(np.square(slab), _LOCAL, mode="nearest")
    m2 -= np.square(m)
    np.maximum(m2, 0.0, out=m2)
    sd: F32 = np.sqrt(m2)
    return sd


def _measure(slabs: list[tuple[F32, slice]], tissue: list[npt.NDArray[np.bool_]]) -> float | None:
    values = []
    for (slab, inner), t in zip(slabs, tissue, strict=True):
        box = ndimage.find_objects(t[inner].view(np.uint8))
        if not box or box[0] is None:
            continue
        # the tissue's box within the measured slices, with the local window's reach around it
        _, j, i = box[0]
        reach = _LOCAL // 2
        jj = slice(max(0, j.start - reach), j.stop + reach)
        ii = slice(max(0, i.start - reach), i.stop + reach)
        sd = _local_sd(np.ascontiguousarray(slab[:, jj, ii], dtype=np.float32))
        values.append(sd[inner][t[inner][:, jj, ii]])
    if sum(v.size for v in values) < MIN_TISSUE_VOXELS:
        return None
    return float(np.median(np.concatenate(values)))


def noise_hu(hu: F32, geometry: Geometry) -> float | None:
    """The image noise of ``hu`` (HU on ``geometry``), as the module docstring describes; None
    when the scan has too little soft tissue to tell."""
    slabs = _slabs(hu)
    return _measure(slabs, [_tissue(s, geometry.spacing) for s, _ in slabs])


def _sigma_vox(sigma_mm: float, spacing: tuple[float, float, float]) -> tuple[float, ...]:
    return tuple(sigma_mm / s for s in spacing)


def harmonize(hu: F32, geometry: Geometry, max_noise_hu: float) -> Harmonized:
    """``hu`` smoothed just enough that its noise is at most ``max_noise_hu`` (unchanged when it
    already is, or when it cannot be measured); the widest of :data:`SIGMAS_MM` when none is
    enough."""
    if hu.shape != geometry.shape:
        raise ValueError(f"hu shape {hu.shape} differs from the geometry's {geometry.shape}")
    slabs = _slabs(hu)
    tissue = [_tissue(s, geometry.spacing) for s, _ in slabs]
    before = _measure(slabs, tissue)
    if before is None or before <= max_noise_hu:
        return Harmonized(hu=hu, noise_hu=before, sigma_mm=None, noise_after_hu=None)
    sigma_mm = SIGMAS_MM[-1]
    after: float | None = before
    for sigma_mm in SIGMAS_MM:
        sigma = _sigma_vox(sigma_mm, geometry.spacing)
        smoothed = [(ndimage.gaussian_filter(s, sigma, mode="nearest"), i) for s, i in slabs]
        after = _measure(smoothed, tissue)
        if after is None or after <= max_noise_hu:
            break
    out = ndimage.gaussian_filter(hu, _sigma_vox(sigma_mm, geometry.spacing), mode="nearest")
    return Harmonized(
        hu=np.asarray(out, dtype=np.float32),
        noise_hu=before,
        sigma_mm=sigma_mm,
        noise_after_hu=after,
    )
