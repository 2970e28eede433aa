"""The statistical-process-control rule that raises a monitoring alert (pure).

For one metric's per-study values, oldest first (e.g. the noise of each study a model version
read for a tenant): the **baseline** is the ``baseline`` values before the last ``window``; the
recent mean is compared with the baseline mean (an x̄ chart with a rolling reference). The
process is out of control when the recent mean lies more than ``sigmas`` standard errors
(baseline standard deviation / √window) from the baseline mean. With the defaults (30, 5, 3σ)
a shift of 1.5 baseline standard deviations is seen, on average, within about 3 studies of its
start, and a stable process raises a false alarm about once in 370 checks per metric.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Rule", "Signal", "check"]


@dataclass(frozen=True)
class Rule:
    baseline: int = 30
    window: int = 5
    sigmas: float = 3.0
    min_sd: float = 1e-6
    """A floor under the baseline's standard deviation (a constant baseline is not infinitely
    sensitive)."""

    def __post_init__(self) -> None:
        if self.baseline < 2 or self.window < 1 or self.sigmas <= 0:
            raise ValueError("an SPC rule needs baseline >= 2, window >= 1 and sigmas > 0")


@dataclass(frozen=True)
class Signal:
    """The recent window is out of control: its mean, the baseline's, and how many standard
    errors apart (signed: positive = higher than usual)."""

    recent_mean: float
    baseline_mean: float
    baseline_sd: float
    z: float


def check(values: Sequence[float], rule: Rule = Rule()) -> Signal | None:
    """A :class:`Signal` when the last ``rule.window`` values are out of control against the
    ``rule.baseline`` before them; None when in control or too few values to tell."""
    if len(values) < rule.baseline + rule.window:
        return None
    reference = values[-(rule.baseline + rule.window) : -rule.window]
    recent = values[-rule.window :]
    mean = statistics.fmean(reference)
    sd = max(statistics.stdev(reference), rule.min_sd)
    recent_mean = statistics.fmean(recent)
    z = (recent_mean - mean) / (sd / math.sqrt(rule.window))
    if abs(z) <= rule.sigmas:
        return None
    return Signal(recent_mean, mean, sd, z)
