"""Findings made from a phantom's true nodules, for the encoder tests: each at its nodule's
centre, size and label, on the phantom's own label map."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from preread.domain import Finding, TruthNodule


def truth_findings(
    nodules: Iterable[TruthNodule],
    labels: npt.NDArray[np.integer[Any]],
    *,
    probability: Callable[[int], float] = lambda label: 0.875 - 0.1 * label,
    mean_hu: float = -35.5,
    extra: Mapping[int, Mapping[str, Any]] | None = None,
) -> tuple[Finding, ...]:
    """One finding per nodule (its voxels: ``labels == nodule.label``; x > 0 is the patient's
    left); ``extra[label]``: further fields of that finding (type, axes, Lung-RADS sizes)."""
    return tuple(
        Finding(
            label=n.label,
            center_lps_mm=n.center_lps_mm,
            long_axis_mm=n.long_axis_mm,
            volume_mm3=n.volume_mm3,
            probability=probability(n.label),
            mean_hu=mean_hu,
            voxel_count=int((labels == n.label).sum()),
            lung_side="left" if n.center_lps_mm[0] > 0 else "right",
            **(extra or {}).get(n.label, {}),
        )
        for n in nodules
    )
