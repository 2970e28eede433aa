"""How much a nodule grew between two studies: volume change, doubling time, diameter change.

The volume doubling time (VDT) assumes exponential growth between the two studies:
``VDT = Δt·ln 2 / ln(V2/V1)`` days, negative when the nodule shrank. Volumetry on CT has a
reproducibility of roughly ±25 % for small nodules (interscan variation, segmentation), so a
smaller change is measurement noise and gives no VDT: the doubling time of noise is
meaningless and, for a few percent over a short interval, absurdly short or long. The bands
are the thresholds of volumetric follow-up of solid nodules (NELSON, BTS 2015): under 400 days
fast growth, 400–600 days indeterminate, over 600 days slow growth.

Pure functions of numbers: no I/O, no domain objects besides the :data:`VdtBand` literal.
"""

from __future__ import annotations

import math

from preread.domain import VdtBand

__all__ = [
    "MIN_VOLUME_CHANGE",
    "diameter_change_mm",
    "vdt_band",
    "volume_change_pct",
    "volume_doubling_time",
]

#: The smallest relative volume change |V2 − V1| / V1 for which a VDT is given.
MIN_VOLUME_CHANGE = 0.25

# A change of exactly 25 % written in decimal (100 → 125 mm³, 0.1 → 0.125) may land a hair
# under 0.25 in binary floating point; it still counts as 25 %.
_REL_TOL = 1e-9


def volume_doubling_time(v1_mm3: float, v2_mm3: float, days: float) -> float | None:
    """Volume doubling time in days from volume ``v1_mm3`` to ``v2_mm3`` over ``days``.

    ``Δt·ln 2 / ln(V2/V1)``, negative when the nodule shrank. None when the volume changed by
    less than :data:`MIN_VOLUME_CHANGE` of ``v1_mm3`` (within measurement noise), when
    ``days`` is not positive (same-day or misdated prior), or when a volume is not a positive
    finite number.
    """
    if not (math.isfinite(v1_mm3) and math.isfinite(v2_mm3) and math.isfinite(days)):
        return None
    if days <= 0 or v1_mm3 <= 0 or v2_mm3 <= 0:
        return None
    if abs(v2_mm3 - v1_mm3) < MIN_VOLUME_CHANGE * v1_mm3 * (1.0 - _REL_TOL):
        return None
    return days * math.log(2.0) / math.log(v2_mm3 / v1_mm3)


def vdt_band(vdt_days: float | None) -> VdtBand | None:
    """The band of a volume doubling time: ``"<400"`` (0 < VDT < 400), ``"400-600"``
    (400 ≤ VDT ≤ 600) or ``">600"`` (VDT > 600). None for no VDT and for a shrinking nodule
    (negative VDT), which has no doubling time to band."""
    if vdt_days is None or math.isnan(vdt_days) or vdt_days <= 0:
        return None
    if vdt_days < 400:
        return "<400"
    if vdt_days <= 600:
        return "400-600"
    return ">600"


def volume_change_pct(v1_mm3: float, v2_mm3: float) -> float:
    """Volume change from ``v1_mm3`` to ``v2_mm3`` in percent of ``v1_mm3``, one decimal
    (+100.0: doubled, −50.0: halved). ``v1_mm3`` must be positive (ValueError otherwise)."""
    if not v1_mm3 > 0:
        raise ValueError(f"prior volume must be positive, got {v1_mm3}")
    return round(100.0 * (v2_mm3 - v1_mm3) / v1_mm3, 1)


def diameter_change_mm(prior_mm: float | None, current_mm: float | None) -> float | None:
    """Current minus prior diameter in mm, one decimal (the precision Lung-RADS sizes are
    given in); None when either diameter is unknown."""
    if prior_mm is None or current_mm is None:
        return None
    return round(current_mm - prior_mm, 1)
