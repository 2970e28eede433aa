"""What a series looked like to the model: its acquisition group and input statistics, measured
on the volume that was read (pure; a few milliseconds on a subsampled grid).

* the **group** — manufacturer, scanner model, reconstruction kernel and a slice-thickness band —
  is what monitoring compares like with like by (a new scanner is a new group);
* **noise** — the standard deviation of soft tissue (−100…100 HU), estimated from the
  differences of voxels 5 mm apart along a row (σ = 1.4826 · MAD / √2: soft tissue changes
  little over 5 mm, and reconstructed noise — correlated over a few pixels by smooth and
  iterative kernels — is no longer correlated there), robust to edges;
* the **lung histogram** — the fraction of lung voxels (below −400 HU, inside the body: not
  connected to the volume's edge) in eight bands from −1000 to −400 HU, and the lungs' share of
  the body: an emphysematous population, a contrast change or a new reconstruction moves them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from scipy import ndimage

from preread.domain import Volume

__all__ = ["LUNG_BANDS_HU", "Acquisition", "acquisition_of", "thickness_band"]

LUNG_BANDS_HU: tuple[float, ...] = (-1000, -950, -900, -850, -800, -700, -600, -500, -400)
"""The lung histogram's band edges (HU): eight bands."""
_SOFT_TISSUE_HU = (-100.0, 100.0)
_MAD_TO_SD = 1.4826
NOISE_LAG_MM = 5.0


@dataclass(frozen=True)
class Acquisition:
    manufacturer: str
    scanner_model: str
    kernel: str
    slice_thickness_mm: float
    thickness_band: str
    noise_hu: float | None
    """None: too little soft tissue to tell."""
    lung_fraction: float
    """Lung voxels / body voxels."""
    lung_histogram: tuple[float, ...]
    """Fractions of the lung voxels in each band of :data:`LUNG_BANDS_HU` (sum 1; all 0 when no
    lung)."""

    @property
    def group(self) -> str:
        """The acquisition group: manufacturer / model / kernel / thickness band."""
        return " / ".join(
            (self.manufacturer or "?", self.scanner_model or "?", self.kernel or "?",
             self.thickness_band)
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["lung_histogram"] = list(self.lung_histogram)
        out["group"] = self.group
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Acquisition:
        fields = {k: v for k, v in doc.items() if k != "group"}
        fields["lung_histogram"] = tuple(float(x) for x in fields.get("lung_histogram", ()))
        return cls(**fields)


def thickness_band(mm: float) -> str:
    """≤ 1.25 mm thin, ≤ 2.5 mm medium, ≤ 5 mm thick, else very thick."""
    if mm <= 1.25:
        return "<=1.25 mm"
    if mm <= 2.5:
        return "1.25-2.5 mm"
    if mm <= 5.0:
        return "2.5-5 mm"
    return ">5 mm"


def acquisition_of(first: Dataset, volume: Volume) -> Acquisition:
    """The series' group (from its first instance's header) and its input statistics (from
    the HU volume that was read)."""
    spacing = volume.geometry.spacing
    thickness = _float(first.get("SliceThickness")) or float(spacing[0])
    kernel = first.get("ConvolutionKernel", "")
    if not isinstance(kernel, str):  # multi-valued
        kernel = "\\".join(str(k) for k in kernel)
    lag = max(2, round(NOISE_LAG_MM / float(spacing[2])))
    return Acquisition(
        manufacturer=_text(first.get("Manufacturer")),
        scanner_model=_text(first.get("ManufacturerModelName")),
        kernel=_text(kernel),
        slice_thickness_mm=round(thickness, 3),
        thickness_band=thickness_band(thickness),
        noise_hu=_noise(volume.array[::4], lag),  # every 4th slice, full resolution
        **_lungs(volume.array[:, ::2, ::2]),  # every slice, every other row and column
    )


def _noise(hu: npt.NDArray[np.float32], lag: int) -> float | None:
    lo, hi = _SOFT_TISSUE_HU
    a, b = hu[:, :, :-lag], hu[:, :, lag:]
    both = (a > lo) & (a < hi) & (b > lo) & (b < hi)
    diffs = (a - b)[both]
    if diffs.size < 1000:
        return None
    mad = float(np.median(np.abs(diffs - np.median(diffs))))
    return round(_MAD_TO_SD * mad / math.sqrt(2.0), 2)


def _lungs(hu: npt.NDArray[np.float32]) -> dict[str, Any]:
    air = hu < -400.0
    labels, n = ndimage.label(air)
    edge = np.unique(
        np.concatenate(
            [labels[:, 0, :].ravel(), labels[:, -1, :].ravel(), labels[:, :, 0].ravel(),
             labels[:, :, -1].ravel()]
        )
    )  # fmt: skip
    touches_edge = np.zeros(n + 1, dtype=bool)  # by label: a table lookup, ~5x np.isin's speed
    touches_edge[edge[edge > 0]] = True
    outside = touches_edge[labels]
    lung = air & ~outside
    body = ~outside
    n_lung = int(lung.sum())
    counts, _ = np.histogram(np.clip(hu[lung], -1000.0, -400.0), bins=LUNG_BANDS_HU)
    histogram = tuple(round(float(c) / n_lung, 4) for c in counts) if n_lung else (0.0,) * 8
    return {
        "lung_fraction": round(n_lung / max(int(body.sum()), 1), 4),
        "lung_histogram": histogram,
    }


def _float(value: object) -> float | None:
    try:
        return float(value) if value not in (None, "") else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()[:64]
