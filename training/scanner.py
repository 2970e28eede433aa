"""The scanner of a phantom: geometry, reconstruction kernel, slice profile and image noise.

:func:`sample_scanner` draws the settings from a :class:`~training.profiles.Profile`;
:func:`apply_scanner` turns a noise-free canonical volume into the reconstructed image, slice
by slice (a 512 × 512 × 400 volume never gets a full-size temporary):

1. slice sensitivity profile: ``[s, 1 - 2s, s]`` along z for slices of 2 mm and more;
2. kernel MTF: ``passes`` × ``[w, 1 - 2w, w]`` per in-plane axis (blur or edge enhancement);
3. noise with the kernel's noise power spectrum and standard deviation ``noise_sd``, taken
   from a pool of pre-shaped periodic noise images at a random shift and flip per slice;
4. clipping to what a 12-bit CT image stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from training.profiles import Profile, band

F32 = npt.NDArray[np.float32]
PatientPosition = Literal["HFS", "FFS"]

HU_MIN, HU_MAX = -1024.0, 3071.0  # what the DICOM writer can store (12-bit CT range)


@dataclass(frozen=True)
class Scanner:
    """One scanner + reconstruction (all drawn from the seed)."""

    fov_mm: float  # reconstruction diameter (= 512 × the 512-matrix pixel spacing)
    thickness: float  # = spacing between slices, mm
    n_slices: int
    noise_sd: float  # HU, the standard deviation of the added noise
    position: PatientPosition
    z_offset: float
    kernel: str
    edge_w: float  # in-plane signal filter [w, 1 - 2w, w]
    passes: int
    nps_peak: float | None  # cycles/pixel; None = white noise
    ssp_w: float  # slice-direction filter [s, 1 - 2s, s] (0 = none)


def sample_scanner(rng: np.random.Generator, profile: Profile) -> Scanner:
    ps512 = round(float(rng.uniform(0.55, 0.9)), 4)
    thickness = float(rng.choice(profile.thicknesses, p=profile.thickness_p))
    n = int(np.clip(round(rng.uniform(200.0, 320.0) / thickness), profile.min_slices, 400))
    noise = round(band(rng, profile.noise_bands, profile.noise_p), 2)
    position: PatientPosition = "HFS" if rng.uniform() < 0.7 else "FFS"
    z_offset = float(rng.uniform(-10.0, 10.0))
    k = profile.kernels[int(rng.choice(len(profile.kernels), p=profile.kernel_p))]
    edge_w = round(float(rng.uniform(*k.edge_w)), 4)
    peak = None if k.nps_peak is None else round(float(rng.uniform(*k.nps_peak)), 4)
    ssp = round(float(rng.uniform(*profile.ssp_w)), 4) if thickness >= 2.0 else 0.0
    return Scanner(
        ps512 * 512, thickness, n, noise, position, z_offset, k.name, edge_w, k.passes, peak, ssp
    )


def noise_pool(
    rng: np.random.Generator, count: int, shape: tuple[int, int], peak: float | None
) -> F32:
    """``count`` periodic unit-variance noise images with the NPS of ``peak`` (see Kernel)."""
    white = rng.standard_normal((count, *shape), dtype=np.float32)
    if peak is None:
        return white
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    f = np.sqrt(fy * fy + fx * fx)
    amp = np.sqrt(f * np.exp(-(f * f) / (2.0 * peak * peak))).astype(np.float32)
    out = np.empty_like(white)
    for n in range(count):
        out[n] = np.fft.irfft2(np.fft.rfft2(white[n]) * amp, s=shape)
    out *= np.float32(1.0 / max(float(out.std()), 1e-12))
    return out


def apply_scanner(vol: F32, sc: Scanner, rng: np.random.Generator) -> None:
    """Slice profile, kernel and noise, in place on the canonical volume (see module doc)."""
    nk, nj, ni = vol.shape
    count = min(nk, max(8, (1 << 22) // (nj * ni)))
    pool = noise_pool(rng, count, (nj, ni), sc.nps_peak)
    pool *= np.float32(sc.noise_sd)
    picks = rng.integers(0, count, nk)
    shifts = rng.integers(0, [nj, ni], (nk, 2))
    flips = rng.integers(0, 2, (nk, 2)).astype(bool)
    tmp = np.empty((nj, ni), dtype=np.float32)
    w, c = np.float32(sc.edge_w), np.float32(1.0 - 2.0 * sc.edge_w)
    s_w, s_c = np.float32(sc.ssp_w), np.float32(1.0 - 2.0 * sc.ssp_w)
    prev = vol[0].copy()
    for k in range(nk):
        s = vol[k]
        if sc.ssp_w > 0.0 and nk > 1:  # uses the unfiltered neighbours (prev, next)
            cur = s.copy()
            nxt = vol[k + 1] if k + 1 < nk else cur
            s *= s_c
            s += s_w * (prev + nxt)
            prev = cur
        for _ in range(sc.passes):
            _blur_axis(s, tmp, w, c, axis=1)
            _blur_axis(tmp, s, w, c, axis=0)
        noise = pool[picks[k]]
        if flips[k, 0]:
            noise = noise[::-1]
        if flips[k, 1]:
            noise = noise[:, ::-1]
        s += np.roll(noise, (int(shifts[k, 0]), int(shifts[k, 1])), axis=(0, 1))
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
