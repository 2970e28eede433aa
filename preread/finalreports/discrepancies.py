"""The AI's reading of a study against the radiologist's final report — pure.

:func:`compare` pairs the AI's findings (:func:`ai_findings`, from the finished job's result)
with the report's present nodule mentions, then lists what disagrees:

* ``ai-only`` — the AI found a nodule of 6 mm or more that the report does not mention;
* ``report-only`` — the report mentions a nodule of 6 mm or more that the AI did not find;
* ``size`` — a pair whose sizes disagree: ``|report − AI| > max(2 mm, 25 % of the AI's long
  axis)``, when either is 6 mm or more (the report's size and the AI's long axis both being
  the nodule's longest diameter).

Reports rarely give coordinates, so pairs are made **by size**, one to one, closest first (ties:
the larger AI finding first), among plausible pairs only: the same side of the chest where both
say one (lobe gives the side), and sizes within a factor of 2 of each other or 2 mm apart.
What a report says without a size still counts:

* a sized mention of a group ("multiple nodules, the largest 14 mm") accounts, once paired,
  for every further AI finding on a compatible side up to its size (+ 2 mm);
* an unsized mention ("a nodule in the RUL", "several nodules") accounts for one AI finding
  (a plural one for any number) on a compatible side, the largest first, unless a word bounds
  its size under the finding's ("tiny", "micronodules": 4 mm; "subcentimeter": 10 mm).

AI findings under 6 mm that nothing accounts for are not discrepancies (the report need not
list them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from preread.finalreports.mentions import GE6_MM, NoduleMention

__all__ = ["AiFinding", "Discrepancy", "DiscrepancyKind", "ai_findings", "compare"]

SIZE_TOLERANCE_MM = 2.0
SIZE_TOLERANCE_FRACTION = 0.25
PLAUSIBLE_RATIO = 2.0


class DiscrepancyKind(StrEnum):
    AI_ONLY = "ai-only"
    REPORT_ONLY = "report-only"
    SIZE = "size"


@dataclass(frozen=True)
class AiFinding:
    """One finding of the AI's reading (the job result's ``findings[]``)."""

    label: int
    long_axis_mm: float
    nodule_type: str | None = None
    lung_side: str | None = None
    center_lps_mm: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class Discrepancy:
    """One disagreement; ``ai`` and ``report`` are the finding and the mention involved."""

    kind: DiscrepancyKind
    ai: AiFinding | None
    report: NoduleMention | None

    @property
    def description(self) -> str:
        """One sentence for a worklist (no patient data)."""
        if self.kind is DiscrepancyKind.AI_ONLY and self.ai is not None:
            return (
                f"The AI found a nodule of {_mm(self.ai.long_axis_mm)}"
                f"{_where(self.ai.lung_side)} that the final report does not mention"
            )
        if self.kind is DiscrepancyKind.REPORT_ONLY and self.report is not None:
            return (
                f"The final report mentions a nodule of {_mm(self.report.size_mm)}"
                f"{_where(self.report.side, self.report.lobe)} that the AI did not find"
            )
        assert self.ai is not None and self.report is not None
        return (
            f"Sizes disagree: the final report says {_mm(self.report.size_mm)}, the AI measured "
            f"{_mm(self.ai.long_axis_mm)}{_where(self.ai.lung_side, self.report.lobe)}"
        )


def _mm(value: float | None) -> str:
    return "?" if value is None else f"{value:g} mm"


def _where(side: str | None, lobe: str | None = None) -> str:
    if lobe:
        return f" ({lobe})"
    return f" ({side} lung)" if side in ("left", "right") else ""


def ai_findings(result: Mapping[str, Any]) -> tuple[AiFinding, ...]:
    """The findings of a job's stored result (:func:`preread.reports.to_json`'s form).

    Raises:
        ValueError: a finding without a usable ``long_axis_mm`` (the message names it).
    """
    out = []
    for i, raw in enumerate(result.get("findings") or []):
        size = raw.get("long_axis_mm") if isinstance(raw, Mapping) else None
        if not isinstance(size, int | float) or not math.isfinite(size) or size < 0:
            raise ValueError(f"the result's findings[{i}] has no long_axis_mm")
        center = raw.get("center_lps_mm")
        out.append(
            AiFinding(
                label=int(raw.get("label", i + 1)),
                long_axis_mm=float(size),
                nodule_type=raw.get("nodule_type"),
                lung_side=raw.get("lung_side"),
                center_lps_mm=(
                    (float(center[0]), float(center[1]), float(center[2]))
                    if isinstance(center, list | tuple) and len(center) == 3
                    else None
                ),
            )
        )
    return tuple(out)


def _same_side(ai: AiFinding, mention: NoduleMention) -> bool:
    side = mention.side
    return ai.lung_side not in ("left", "right") or side is None or side == ai.lung_side


def _plausible(ai: AiFinding, size: float) -> bool:
    small, large = sorted((ai.long_axis_mm, size))
    return large - small <= SIZE_TOLERANCE_MM or (small > 0 and large / small <= PLAUSIBLE_RATIO)


def _sizes_disagree(ai: AiFinding, mention: NoduleMention) -> bool:
    size = mention.size_mm
    if size is None or mention.size_bound != "exact":
        return False
    tolerance = max(SIZE_TOLERANCE_MM, SIZE_TOLERANCE_FRACTION * ai.long_axis_mm)
    return max(ai.long_axis_mm, size) >= GE6_MM and abs(size - ai.long_axis_mm) > tolerance


def compare(
    findings: Sequence[AiFinding], mentions: Sequence[NoduleMention]
) -> tuple[Discrepancy, ...]:
    """The discrepancies between the AI's ``findings`` and a report's ``mentions`` (the rules
    in the module docstring), AI-only first, then report-only, then sizes."""
    present = [m for m in mentions if m.present]
    sized = [m for m in present if m.size_mm is not None]
    unsized = [m for m in present if m.size_mm is None]
    candidates = sorted(
        (
            (abs(m.size_mm - a.long_axis_mm), -a.long_axis_mm, i, j)
            for i, a in enumerate(findings)
            for j, m in enumerate(sized)
            if m.size_mm is not None and _same_side(a, m) and _plausible(a, m.size_mm)
        ),
    )
    pairs: dict[int, int] = {}  # finding -> sized mention
    for _, _, i, j in candidates:
        if i not in pairs and j not in pairs.values():
            pairs[i] = j
    left = [i for i in range(len(findings)) if i not in pairs]
    left.sort(key=lambda i: -findings[i].long_axis_mm)
    accounted: set[int] = set()
    for j in set(pairs.values()):  # the rest of a group: "multiple nodules, the largest X"
        group = sized[j]
        if group.plural and group.size_mm is not None:
            for i in left:
                a = findings[i]
                if _same_side(a, group) and a.long_axis_mm <= group.size_mm + SIZE_TOLERANCE_MM:
                    accounted.add(i)
    for mention in unsized:
        for i in (i for i in left if i not in accounted):
            a = findings[i]
            bound = mention.at_most_mm
            if _same_side(a, mention) and (bound is None or a.long_axis_mm <= bound):
                accounted.add(i)
                if not mention.plural:
                    break
    out = [
        Discrepancy(DiscrepancyKind.AI_ONLY, findings[i], None)
        for i in left
        if i not in accounted and findings[i].long_axis_mm >= GE6_MM
    ]
    out += [
        Discrepancy(DiscrepancyKind.REPORT_ONLY, None, m)
        for j, m in enumerate(sized)
        if j not in pairs.values() and m.ge6
    ]
    out += [
        Discrepancy(DiscrepancyKind.SIZE, findings[i], sized[j])
        for i, j in sorted(pairs.items())
        if _sizes_disagree(findings[i], sized[j])
    ]
    return tuple(out)
