"""Lung-RADS v2022: every threshold of the table at ±0.1 mm, growth at 1.5 vs 1.6 mm, new
against baseline, stepped management, the exam category and what is left undetermined."""

from __future__ import annotations

from datetime import date

import pytest

from preread.domain import (
    Comparison,
    Finding,
    LungRadsCategory,
    NoduleComparison,
    NoduleType,
    PriorStudy,
)
from preread.followup.lungrads import (
    MANAGEMENT,
    RULES,
    Context,
    NoduleInput,
    assess,
    categorize,
    context_of,
    exam_category,
    is_growing,
)


def cat(
    kind: NoduleType,
    mean: float,
    solid: float | None = None,
    context: Context = "baseline",
    prior: LungRadsCategory | None = None,
) -> LungRadsCategory | None:
    return categorize(NoduleInput(1, kind, mean, solid, context, prior)).category


# (type, context, measure, boundary mm, category just below, category at/above), from the
# v2022 table; part-solid solid-component rows with a total of 10 mm
BOUNDARIES = [
    ("solid", "baseline", "mean", 6.0, "2", "3"),
    ("solid", "baseline", "mean", 8.0, "3", "4A"),
    ("solid", "baseline", "mean", 15.0, "4A", "4B"),
    ("solid", "new", "mean", 4.0, "2", "3"),
    ("solid", "new", "mean", 6.0, "3", "4A"),
    ("solid", "new", "mean", 8.0, "4A", "4B"),
    ("solid", "growing", "mean", 8.0, "4A", "4B"),
    ("part-solid", "baseline", "mean", 6.0, "2", "3"),  # solid component 2 mm
    ("part-solid", "baseline", "solid", 6.0, "3", "4A"),
    ("part-solid", "baseline", "solid", 8.0, "4A", "4B"),
    ("part-solid", "new", "mean", 6.0, "3", "4A"),  # solid component 2 mm
    ("part-solid", "new", "solid", 4.0, "4A", "4B"),
    ("part-solid", "growing", "solid", 4.0, "4A", "4B"),
    ("ground-glass", "baseline", "mean", 30.0, "2", "3"),
    ("ground-glass", "new", "mean", 30.0, "2", "3"),
    ("ground-glass", "growing", "mean", 30.0, "2", "3"),
]


@pytest.mark.parametrize(("kind", "context", "measure", "at", "below", "above"), BOUNDARIES)
def test_every_threshold_at_plus_minus_a_tenth(kind, context, measure, at, below, above) -> None:
    for value, want in ((round(at - 0.1, 1), below), (at, above), (round(at + 0.1, 1), above)):
        if measure == "mean":
            mean, solid = value, 2.0
        else:
            mean, solid = 10.0, value
        assert cat(kind, mean, solid, context) == want, (kind, context, measure, value)


def test_every_rule_is_reachable_and_has_text() -> None:
    fired = set()
    for kind in ("solid", "part-solid", "ground-glass"):
        for context in ("baseline", "new", "growing", "stable"):
            for tenth in range(0, 400):
                for solid in (1.0, 3.0, 5.0, 7.0, 9.0):
                    mean = max(tenth / 10, solid)
                    r = categorize(NoduleInput(1, kind, mean, solid, context))
                    fired.add(r.rule)
    assert {r.id for r in RULES} <= fired
    assert all(r.text for r in RULES)


def test_ground_glass_stable_at_30_mm_is_2() -> None:
    assert cat("ground-glass", 35.0, context="stable") == "2"
    assert cat("ground-glass", 35.0, context="baseline") == "3"


def test_growth_is_more_than_1_5_mm_within_12_months() -> None:
    assert not is_growing(1.5, 180)
    assert is_growing(1.6, 180)
    assert is_growing(1.6, 366)
    assert not is_growing(1.6, 400)  # outside the 12-month window
    assert not is_growing(None, 180)

    def row(change: float, days: int = 180) -> NoduleComparison:
        return NoduleComparison(
            "persistent", "2.25.1", 1, 1, diameter_change_mm=change, days_between=days
        )

    assert context_of(row(1.5)) == ("stable", None)
    assert context_of(row(1.6))[0] == "growing"
    context, note = context_of(row(2.0, 500))
    assert context == "stable" and note and "12 months" in note
    # a 7.0 mm solid nodule: stable 3, growing 4A
    assert cat("solid", 7.0, context=context_of(row(1.5))[0]) == "3"
    assert cat("solid", 7.0, context=context_of(row(1.6))[0]) == "4A"


def test_new_against_baseline() -> None:
    assert cat("solid", 5.0, context="baseline") == "2"
    assert cat("solid", 5.0, context="new") == "3"
    assert cat("solid", 7.0, context="baseline") == "3"
    assert cat("solid", 7.0, context="new") == "4A"


def test_stepped_management() -> None:
    assert cat("solid", 7.0, context="stable", prior="3") == "2"  # 3 stable → 2
    assert cat("solid", 10.0, context="stable", prior="4A") == "3"  # 4A stable → 3
    assert cat("solid", 7.0, context="stable", prior="2") == "2"  # stays 2
    assert cat("solid", 16.0, context="stable", prior="4B") == "4B"  # no step from 4B
    unknown = categorize(NoduleInput(1, "solid", 7.0, None, "stable"))
    assert unknown.category == "3" and "unknown" in (unknown.reason or "")
    stepped = categorize(NoduleInput(1, "solid", 10.0, None, "stable", "4A"))
    assert stepped.rule == "stepped-4A-stable"


def test_not_determinable_never_a_guess() -> None:
    untyped = categorize(NoduleInput(3, None, 9.0))
    assert untyped.category is None and "type" in (untyped.reason or "")
    unmeasured = categorize(NoduleInput(3, "solid", None))
    assert unmeasured.category is None
    no_solid = categorize(NoduleInput(3, "part-solid", 9.0, None))
    assert no_solid.category is None and "solid component" in (no_solid.reason or "")
    # small part-solid: < 6 mm total decides without the solid component
    assert categorize(NoduleInput(3, "part-solid", 5.0, None)).category == "2"


def test_exam_category_is_the_most_suspicious_nodule() -> None:
    a = categorize(NoduleInput(1, "solid", 7.0))
    b = categorize(NoduleInput(2, "solid", 9.0))
    exam = exam_category([a, b])
    assert exam.category == "4A" and exam.management == MANAGEMENT["4A"]
    assert exam.rule == "solid-baseline-8-15"
    assert exam_category([]).category == "1"
    unknown = categorize(NoduleInput(3, None, 9.0))
    assert exam_category([a, unknown]).category is None
    big = categorize(NoduleInput(4, "solid", 16.0))
    assert exam_category([big, unknown]).category == "4B"  # nothing is above 4B but 4X
    assert exam_category([a], comparison_unavailable="PACS down").category == "0"
    assert all(c != "4X" for c in (a.category, b.category, big.category))


def _finding(label: int, mean: float) -> Finding:
    return Finding(
        label=label,
        center_lps_mm=(0.0, 0.0, 0.0),
        long_axis_mm=mean,
        volume_mm3=100.0,
        probability=0.9,
        mean_hu=0.0,
        voxel_count=100,
        nodule_type="solid",
        axial_long_axis_mm=mean,
        short_axis_mm=mean,
    )


def test_assess_uses_the_comparison_and_the_prior_categories() -> None:
    prior = PriorStudy("1.2.3", date(2026, 1, 5), "previous")
    rows = (
        NoduleComparison("new", "2.25.10", 1, None, days_between=180),
        NoduleComparison("persistent", "2.25.11", 2, 7, diameter_change_mm=0.2, days_between=180),
    )
    comparison = Comparison("compared", prior=prior, nodules=rows)
    findings = [_finding(1, 7.0), _finding(2, 10.0)]
    result = assess(findings, comparison, prior_categories={"2.25.11": "4A"})
    assert [n.category for n in result.nodules] == ["4A", "3"]
    assert result.category == "4A" and result.rule == "solid-new-6-8"
    baseline = assess(findings, Comparison("not-configured"))
    assert [n.category for n in baseline.nodules] == ["3", "4A"]
    assert "no PACS" in (baseline.nodules[0].reason or "")
    down = assess(findings, Comparison("unavailable", reason="PACS did not answer"))
    assert down.category == "0" and "PACS did not answer" in (down.reason or "")
