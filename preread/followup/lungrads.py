"""Lung-RADS v2022 (ACR; Christensen et al., Chest 2024) as data, and the pure functions that
apply it to a pre-read's findings.

What PreRead assesses and what it leaves to the radiologist:

* **Inputs per nodule**: type (solid / part-solid / ground-glass, from the model), the mean
  diameter (axial long axis + perpendicular short axis) / 2 to one decimal, for part-solid
  nodules the solid component, and — from the comparison with the priors — whether the
  nodule is new, growing (mean diameter up by more than 1.5 mm within 12 months) or stable.
* **Solid component**: the model measures its *long axis*, not its mean diameter; using it is
  conservative (the long axis is never below the mean diameter, so the category is never
  lower than the measured mean would give). Said in every part-solid rule's reason.
* **Not assessed**: calcification patterns, fat, perifissural or airway nodules, atypical
  cysts, and category **4X** (a 3 or 4 nodule with features that raise suspicion) — these need
  the radiologist. A finding without a type or without measurements gets no category
  ("not determinable", with the reason): never a guess.
* **Exam category**: the most suspicious nodule's. When any nodule is not determinable and
  the determinable ones stay below 4B, the exam category is not determinable either (the
  unknown one could be the most suspicious). When the priors could not be had for comparison,
  the exam is category **0** ("prior chest CT examination(s) being located for comparison").
* **Stepped management** (new in v2022): a stable category 3 nodule becomes 2, a stable 4A
  becomes 3; this needs the prior exam's category of that nodule (PreRead's own assessment of
  the prior, carried by the tracking UID). Without it, a stable nodule is sized by the
  baseline rows and the reason says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from preread.domain import (
    Comparison,
    Finding,
    LungRadsAssessment,
    LungRadsCategory,
    LungRadsNodule,
    NoduleComparison,
    NoduleType,
)

#: How a nodule presents against the priors. ``baseline``: no prior to compare with (a
#: baseline screen, or comparison not configured); ``stable``: persistent and not growing
#: (including smaller).
Context = Literal["baseline", "new", "growing", "stable"]
Measure = Literal["mean", "solid"]

#: Growth: mean diameter up by more than this (mm) …
GROWTH_MM = 1.5
#: … within this many days (12 months; a leap year's included)
GROWTH_WINDOW_DAYS = 366

ORDER: tuple[LungRadsCategory, ...] = ("0", "1", "2", "3", "4A", "4B", "4X")


@dataclass(frozen=True)
class Rule:
    """One row of the v2022 table: nodules of ``nodule_type`` in one of ``contexts`` whose
    ``measure`` lies in ``[lo, hi)`` (mm, None: unbounded) — for part-solid rows on the solid
    component, also a total mean diameter in ``[total_lo, total_hi)`` — are ``category``."""

    id: str
    nodule_type: NoduleType
    contexts: frozenset[Context]
    category: LungRadsCategory
    measure: Measure = "mean"
    lo: float | None = None
    hi: float | None = None
    total_lo: float | None = None
    total_hi: float | None = None
    text: str = ""

    def matches(self, context: Context, mean: float, solid: float | None) -> bool:
        if context not in self.contexts:
            return False
        value = mean if self.measure == "mean" else solid
        if value is None:
            return False
        if self.lo is not None and value < self.lo:
            return False
        if self.hi is not None and value >= self.hi:
            return False
        if self.total_lo is not None and mean < self.total_lo:
            return False
        return self.total_hi is None or mean < self.total_hi


_BASE: frozenset[Context] = frozenset({"baseline", "stable"})
_NEW: frozenset[Context] = frozenset({"new"})
_GROW: frozenset[Context] = frozenset({"growing"})
_NEW_OR_GROW: frozenset[Context] = frozenset({"new", "growing"})
_NOT_STABLE: frozenset[Context] = frozenset({"baseline", "new", "growing"})

#: The v2022 table (nodule rows), first match wins within a type. Volumes of the ACR table
#: (113, 268, 1,767 mm³ …) are the equivalent of these diameters; PreRead sizes by diameter.
RULES: tuple[Rule, ...] = (
    # solid
    Rule("solid-baseline-lt6", "solid", _BASE, "2", hi=6.0, text="solid < 6 mm"),
    Rule("solid-baseline-6-8", "solid", _BASE, "3", lo=6.0, hi=8.0, text="solid >= 6 to < 8 mm"),
    Rule(
        "solid-baseline-8-15", "solid", _BASE, "4A", lo=8.0, hi=15.0, text="solid >= 8 to < 15 mm"
    ),
    Rule("solid-baseline-ge15", "solid", _BASE, "4B", lo=15.0, text="solid >= 15 mm"),
    Rule("solid-new-lt4", "solid", _NEW, "2", hi=4.0, text="new solid < 4 mm"),
    Rule("solid-new-4-6", "solid", _NEW, "3", lo=4.0, hi=6.0, text="new solid 4 to < 6 mm"),
    Rule("solid-new-6-8", "solid", _NEW, "4A", lo=6.0, hi=8.0, text="new solid 6 to < 8 mm"),
    Rule("solid-new-ge8", "solid", _NEW, "4B", lo=8.0, text="new solid >= 8 mm"),
    Rule("solid-growing-lt8", "solid", _GROW, "4A", hi=8.0, text="growing solid < 8 mm"),
    Rule("solid-growing-ge8", "solid", _GROW, "4B", lo=8.0, text="growing solid >= 8 mm"),
    # part-solid: total mean diameter, then the solid component
    Rule(
        "part-solid-baseline-lt6", "part-solid", _BASE, "2", hi=6.0, text="part-solid < 6 mm total"
    ),
    Rule(
        "part-solid-baseline-solid-lt6",
        "part-solid",
        _BASE,
        "3",
        measure="solid",
        hi=6.0,
        total_lo=6.0,
        text="part-solid >= 6 mm total, solid component < 6 mm",
    ),
    Rule(
        "part-solid-baseline-solid-6-8",
        "part-solid",
        _BASE,
        "4A",
        measure="solid",
        lo=6.0,
        hi=8.0,
        total_lo=6.0,
        text="part-solid, solid component >= 6 to < 8 mm",
    ),
    Rule(
        "part-solid-baseline-solid-ge8",
        "part-solid",
        _BASE,
        "4B",
        measure="solid",
        lo=8.0,
        total_lo=6.0,
        text="part-solid, solid component >= 8 mm",
    ),
    Rule(
        "part-solid-new-lt6",
        "part-solid",
        _NEW_OR_GROW,
        "3",
        hi=6.0,
        text="new (or growing) part-solid < 6 mm total",
    ),
    Rule(
        "part-solid-new-solid-lt4",
        "part-solid",
        _NEW_OR_GROW,
        "4A",
        measure="solid",
        hi=4.0,
        total_lo=6.0,
        text="part-solid >= 6 mm total with a new or growing solid component < 4 mm",
    ),
    Rule(
        "part-solid-new-solid-ge4",
        "part-solid",
        _NEW_OR_GROW,
        "4B",
        measure="solid",
        lo=4.0,
        total_lo=6.0,
        text="part-solid with a new or growing solid component >= 4 mm",
    ),
    # ground-glass (non-solid)
    Rule(
        "ggn-lt30",
        "ground-glass",
        frozenset({"baseline", "new", "growing", "stable"}),
        "2",
        hi=30.0,
        text="non-solid < 30 mm (baseline, new or growing)",
    ),
    Rule(
        "ggn-stable-ge30",
        "ground-glass",
        frozenset({"stable"}),
        "2",
        lo=30.0,
        text="non-solid >= 30 mm, stable",
    ),
    # v2022 places a growing ≥ 30 mm non-solid nodule in 2 only when it grows slowly, which
    # one interval cannot tell: 3, as a new one (conservative)
    Rule(
        "ggn-ge30",
        "ground-glass",
        _NOT_STABLE,
        "3",
        lo=30.0,
        text="non-solid >= 30 mm (baseline, new or growing)",
    ),
)

#: Management per exam category (v2022).
MANAGEMENT: Mapping[LungRadsCategory, str] = {
    "0": "Comparison to prior chest CT examination(s) is needed (being located) and/or "
    "additional lung cancer screening CT images; 1-3 month LDCT if an infectious or "
    "inflammatory process is suspected.",
    "1": "Continue annual screening with LDCT in 12 months.",
    "2": "Continue annual screening with LDCT in 12 months.",
    "3": "6-month LDCT.",
    "4A": "3-month LDCT; PET/CT may be considered if there is a >= 8 mm solid nodule or solid "
    "component.",
    "4B": "Diagnostic chest CT with or without contrast; PET/CT may be considered if there is a "
    ">= 8 mm solid nodule or solid component; tissue sampling; and/or referral for further "
    "clinical evaluation.",
    "4X": "Diagnostic chest CT with or without contrast; PET/CT may be considered if there is a "
    ">= 8 mm solid nodule or solid component; tissue sampling; and/or referral for further "
    "clinical evaluation.",
}

#: v2022 stepped management: a stable nodule of the prior exam's category steps down to …
STEP_DOWN: Mapping[LungRadsCategory, LungRadsCategory] = {"2": "2", "3": "2", "4A": "3"}


def rank(category: LungRadsCategory) -> int:
    """Position in suspicion order (0 < 1 < 2 < 3 < 4A < 4B < 4X)."""
    return ORDER.index(category)


@dataclass(frozen=True)
class NoduleInput:
    """What a category is computed from (built from a finding and its comparison row)."""

    label: int
    nodule_type: NoduleType | None
    mean_diameter_mm: float | None
    solid_component_mm: float | None = None
    context: Context = "baseline"
    #: the prior exam's category of this nodule (stepped management), when known
    prior_category: LungRadsCategory | None = None
    #: why the context is what it is (growth outside 12 months, …)
    note: str | None = None


def is_growing(change_mm: float | None, days: int | None) -> bool:
    """v2022 growth: mean diameter up by more than 1.5 mm within 12 months."""
    if change_mm is None or days is None:
        return False
    return round(change_mm, 1) > GROWTH_MM and 0 < days <= GROWTH_WINDOW_DAYS


def context_of(row: NoduleComparison | None) -> tuple[Context, str | None]:
    """The context of a current finding from its comparison row (None: no comparison)."""
    if row is None:
        return "baseline", None
    if row.status == "new":
        return "new", None
    change, days = row.diameter_change_mm, row.days_between
    if is_growing(change, days):
        return "growing", None
    if change is not None and days is not None and round(change, 1) > GROWTH_MM:
        return "stable", (
            f"mean diameter up {change:.1f} mm over {days} days: more than 12 months, so not "
            "growth by the v2022 definition; the radiologist judges slow growth"
        )
    return "stable", None


def categorize(nodule: NoduleInput) -> LungRadsNodule:
    """One nodule's category by the v2022 table (None: not determinable, with the reason)."""
    if nodule.nodule_type is None:
        return LungRadsNodule(
            nodule.label, None, None, "not determinable: the model did not type this nodule"
        )
    if nodule.mean_diameter_mm is None:
        return LungRadsNodule(
            nodule.label, None, None, "not determinable: no axial long and short axis measured"
        )
    mean = round(nodule.mean_diameter_mm, 1)
    solid = None if nodule.solid_component_mm is None else round(nodule.solid_component_mm, 1)
    if nodule.nodule_type == "part-solid" and solid is None and mean >= 6.0:
        return LungRadsNodule(
            nodule.label, None, None, "not determinable: the solid component was not measured"
        )
    rule = next(
        (
            r
            for r in RULES
            if r.nodule_type == nodule.nodule_type and r.matches(nodule.context, mean, solid)
        ),
        None,
    )
    if rule is None:  # the table covers every size; a gap is a defect in RULES
        raise AssertionError(f"no Lung-RADS rule for {nodule}")
    reasons = [f"{rule.text} ({_sizes(nodule.nodule_type, mean, solid)})"]
    if nodule.note:
        reasons.append(nodule.note)
    category, rule_id = rule.category, rule.id
    if nodule.context == "stable":
        prior = nodule.prior_category
        if prior is not None and prior in STEP_DOWN:
            stepped = STEP_DOWN[prior]
            if rank(stepped) < rank(category):
                category, rule_id = stepped, f"stepped-{prior}-stable"
                reasons.append(f"stable since the prior exam's category {prior}: {stepped}")
        elif prior is None and nodule.nodule_type != "ground-glass":
            reasons.append(
                "stable; the prior exam's category is unknown: sized by the baseline rows"
            )
    return LungRadsNodule(nodule.label, category, rule_id, "; ".join(reasons))


def _sizes(nodule_type: NoduleType, mean: float, solid: float | None) -> str:
    text = f"mean diameter {mean:.1f} mm"
    if nodule_type == "part-solid" and solid is not None:
        text += f", solid component {solid:.1f} mm (long axis: conservative)"
    return text


def exam_category(
    nodules: Sequence[LungRadsNodule], *, comparison_unavailable: str | None = None
) -> LungRadsAssessment:
    """The exam's category: the most suspicious nodule's; 1 without nodules; 0 when the
    priors could not be had for comparison (``comparison_unavailable`` says why)."""
    if comparison_unavailable is not None:
        return LungRadsAssessment(
            "0",
            "incomplete-prior-being-located",
            MANAGEMENT["0"],
            tuple(nodules),
            reason=f"prior chest CT being located for comparison: {comparison_unavailable}",
        )
    if not nodules:
        return LungRadsAssessment("1", "negative-no-nodules", MANAGEMENT["1"], ())
    known = [n for n in nodules if n.category is not None]
    unknown = [n for n in nodules if n.category is None]
    top = max(known, key=lambda n: rank(n.category or "0"), default=None)
    if unknown and (top is None or rank(top.category or "0") < rank("4B")):
        labels = ", ".join(str(n.label) for n in unknown)
        return LungRadsAssessment(
            None,
            None,
            None,
            tuple(nodules),
            reason=f"not determinable: nodule(s) {labels} could not be categorised "
            f"({unknown[0].reason})",
        )
    assert top is not None and top.category is not None
    return LungRadsAssessment(top.category, top.rule, MANAGEMENT[top.category], tuple(nodules))


def assess(
    findings: Sequence[Finding],
    comparison: Comparison | None,
    *,
    prior_categories: Mapping[str, LungRadsCategory] | None = None,
) -> LungRadsAssessment:
    """Lung-RADS v2022 for one pre-read: every finding's category and the exam's.

    ``comparison``: the result's comparison with the priors (None, or ``not-configured``:
    baseline rows, stated; ``unavailable``: category 0); ``prior_categories``: the prior
    exam's category of each nodule by tracking UID (stepped management).
    """
    unavailable = None
    if comparison is not None and comparison.status == "unavailable":
        unavailable = comparison.reason or "the priors could not be retrieved"
    priors = prior_categories or {}
    out: list[LungRadsNodule] = []
    for f in findings:
        row = comparison.for_label(f.label) if comparison is not None else None
        context, note = context_of(row)
        if comparison is None:
            note = "not compared with priors: baseline rows"
        elif comparison.status == "not-configured" and note is None:
            note = "no PACS configured for priors: baseline rows"
        out.append(
            categorize(
                NoduleInput(
                    label=f.label,
                    nodule_type=f.nodule_type,
                    mean_diameter_mm=f.mean_diameter_mm,
                    solid_component_mm=f.solid_component_long_axis_mm,
                    context=context,
                    prior_category=priors.get(row.tracking_uid) if row is not None else None,
                    note=note,
                )
            )
        )
    return exam_category(out, comparison_unavailable=unavailable)
