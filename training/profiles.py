"""Domain-randomisation profiles of the phantom generator: the ranges every random draw uses.

``train`` is what models are trained and tuned on; ``robustness`` lies *outside* it on the
scanner and patient axes that matter most (slice thickness, noise level, reconstruction
kernel, body size, emphysema), so a robustness set is never seen by training or by a threshold
choice. ``wide`` is ``train`` widened on the scanner axes and emphysema up to, never into, the
robustness ranges (thicker slices up to 3.5 mm, noise up to 64 HU, an iterative-like and an
extra-sharp kernel just beside the robustness ones): hard negatives for a false-positive
classifier from acquisitions the training scanners do not make. The table of the profiles is
in :mod:`training.phantoms`.

A *band* list ``((lo, hi), ...)`` with probabilities draws a band, then a uniform value in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

ProfileName = Literal["train", "wide", "robustness"]
Band = tuple[float, float]


@dataclass(frozen=True)
class Kernel:
    """A reconstruction-kernel look: signal filter and noise power spectrum (NPS).

    The signal is filtered in-plane ``passes`` times per axis with ``[w, 1 - 2w, w]``
    (``w > 0`` blurs, ``w < 0`` enhances edges, with overshoot). The noise is white noise
    shaped by ``NPS(f) ∝ f·exp(-f² / 2f_p²)`` (``f`` radial, cycles/pixel; the peak ``f_p`` is
    drawn from ``nps_peak``): low ``f_p`` is blotchy, smooth-kernel noise, high ``f_p`` fine,
    sharp-kernel noise; ``nps_peak = None`` keeps the noise white.
    """

    name: str
    edge_w: Band
    passes: int
    nps_peak: Band | None


@dataclass(frozen=True)
class Profile:
    name: ProfileName
    # scanner
    thicknesses: tuple[float, ...]
    thickness_p: tuple[float, ...]
    min_slices: int
    noise_bands: tuple[Band, ...]
    noise_p: tuple[float, ...]
    kernels: tuple[Kernel, ...]
    kernel_p: tuple[float, ...]
    ssp_w: Band  # slice-direction blur [w, 1 - 2w, w] for slices >= 2 mm
    # patient
    width_bands: tuple[Band, ...]  # body half-width / field of view
    depth_bands: tuple[Band, ...]  # body half-depth / half-width
    fat: Band  # subcutaneous fat, mm
    emphysema_p: float
    emphysema_count: tuple[int, int]
    emphysema_radius: Band
    scar_p: float
    fissure_p: float  # per fissure


def band(rng: np.random.Generator, bands: tuple[Band, ...], p: tuple[float, ...] | None) -> float:
    """A uniform value in a band drawn with probabilities ``p`` (equal if None)."""
    lo, hi = bands[int(rng.choice(len(bands), p=p))]
    return float(rng.uniform(lo, hi))


SMOOTH = Kernel("smooth", (0.12, 0.25), 1, (0.10, 0.20))
SHARP = Kernel("sharp", (-0.12, 0.0), 1, (0.25, 0.40))
WHITE = Kernel("white", (0.10, 0.20), 1, None)
VERY_SHARP = Kernel("very-sharp", (-0.20, -0.13), 1, (0.42, 0.50))
ITERATIVE = Kernel("iterative", (0.26, 0.32), 2, (0.04, 0.09))
# beside the robustness kernels, not in their ranges (``wide``)
SOFT_ITERATIVE = Kernel("soft-iterative", (0.20, 0.255), 2, (0.092, 0.11))
EXTRA_SHARP = Kernel("extra-sharp", (-0.128, -0.10), 1, (0.37, 0.415))

TRAIN = Profile(
    name="train",
    thicknesses=(0.625, 0.75, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0),
    thickness_p=(0.12, 0.08, 0.06, 0.2, 0.14, 0.1, 0.1, 0.1, 0.1),
    min_slices=100,
    noise_bands=((10.0, 40.0), (40.0, 60.0)),
    noise_p=(0.75, 0.25),
    kernels=(WHITE, SMOOTH, SHARP),
    kernel_p=(0.2, 0.4, 0.4),
    ssp_w=(0.05, 0.15),
    width_bands=((0.34, 0.45),),
    depth_bands=((0.60, 0.80),),
    fat=(4.0, 32.0),
    emphysema_p=0.4,
    emphysema_count=(5, 40),
    emphysema_radius=(1.5, 8.0),
    scar_p=0.5,
    fissure_p=0.8,
)

WIDE = Profile(
    name="wide",
    thicknesses=(0.625, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 3.5),
    thickness_p=(0.1, 0.15, 0.1, 0.1, 0.1, 0.15, 0.15, 0.15),
    min_slices=57,
    noise_bands=((10.0, 40.0), (40.0, 60.0), (60.0, 64.0)),
    noise_p=(0.35, 0.35, 0.3),
    kernels=(WHITE, SMOOTH, SHARP, SOFT_ITERATIVE, EXTRA_SHARP),
    kernel_p=(0.1, 0.2, 0.2, 0.3, 0.2),
    ssp_w=(0.05, 0.15),
    width_bands=TRAIN.width_bands,
    depth_bands=TRAIN.depth_bands,
    fat=TRAIN.fat,
    emphysema_p=0.6,
    emphysema_count=(5, 59),
    emphysema_radius=(1.5, 8.0),
    scar_p=0.5,
    fissure_p=0.8,
)

ROBUSTNESS = Profile(
    name="robustness",
    thicknesses=(3.75, 4.0, 5.0),
    thickness_p=(0.3, 0.3, 0.4),
    min_slices=40,
    noise_bands=((65.0, 90.0),),
    noise_p=(1.0,),
    kernels=(VERY_SHARP, ITERATIVE),
    kernel_p=(0.5, 0.5),
    ssp_w=(0.16, 0.25),
    width_bands=((0.29, 0.33), (0.46, 0.49)),
    depth_bands=((0.53, 0.58), (0.83, 0.92)),
    fat=(2.0, 45.0),
    emphysema_p=1.0,
    emphysema_count=(60, 150),
    emphysema_radius=(3.0, 15.0),
    scar_p=0.7,
    fissure_p=0.8,
)

PROFILES: dict[ProfileName, Profile] = {"train": TRAIN, "wide": WIDE, "robustness": ROBUSTNESS}


def get_profile(name: ProfileName) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {name!r}") from None
