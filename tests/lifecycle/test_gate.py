"""The promotion gate's rules on made-up reviewed studies (pure: no store)."""

from __future__ import annotations

from typing import Any

from preread.lifecycle.gate import Nodule, ReviewedStudy, gate, held_out_figures

EVALUATION: dict[str, Any] = {
    "data": {"source": "phantoms", "seed": 900000, "count": 100},
    "cpm": 0.88,
    "sensitivity_ge6mm": 0.89,
    "fp_per_scan": 0.72,
}


def study(shadow: list[tuple[float, float, float]], *, rejected: int = 1) -> ReviewedStudy:
    """Truth: an accepted 8 mm nodule at the origin and a reader-added 6 mm one at x = 50."""
    return ReviewedStudy(
        study_instance_uid="1.2.3",
        review_id="r",
        truth=(Nodule((0.0, 0.0, 0.0), 8.0), Nodule((50.0, 0.0, 0.0), 6.0)),
        active_found=1,
        active_false=rejected,
        shadow_findings=tuple(shadow),
    )


def test_hits_follow_the_luna16_radius_and_unmatched_findings_count_against_the_shadow() -> None:
    inside, edge, outside = (3.9, 0.0, 0.0), (50.0, 3.0, 0.0), (4.1, 0.0, 0.0)
    result = gate(
        [study([inside, edge]), study([outside, (50.0, 0.0, 0.0)], rejected=0)],
        active="m@1",
        candidate="m@2",
        active_evaluation=EVALUATION,
        candidate_evaluation=EVALUATION,
        min_studies=2,
    )
    f = result.figures
    assert (f["active_sensitivity"], f["shadow_sensitivity"]) == (0.5, 0.75)
    assert (f["active_fp_per_scan"], f["shadow_fp_per_scan"]) == (0.5, 0.5)
    assert result.passed, result.failures


def test_more_false_positives_or_a_held_out_regression_refuse_naming_each_rule() -> None:
    noisy = [study([(0.0, 0.0, 0.0), (50.0, 0.0, 0.0), (90.0, 0.0, 0.0)], rejected=0)]
    worse = {**EVALUATION, "cpm": 0.85, "fp_per_scan": 0.9}
    result = gate(
        noisy,
        active="m@1",
        candidate="m@2",
        active_evaluation=EVALUATION,
        candidate_evaluation=worse,
        min_studies=1,
    )
    assert not result.passed
    assert result.failures == (
        "shadow false positives per scan 1.000 exceed the active's 0.000 + 0.1",
        "held-out cpm: candidate 0.850 against the active's 0.880",
        "held-out fp_per_scan: candidate 0.900 against the active's 0.720",
    )
    other_set = {**EVALUATION, "data": {"source": "phantoms", "seed": 1, "count": 100}}
    refused = gate(
        noisy[:0],
        active="m@1",
        candidate="m@2",
        active_evaluation=EVALUATION,
        candidate_evaluation=other_set,
        min_studies=1,
    )
    assert "0 reviewed studies read in shadow" in refused.failures[0]
    assert "not evaluated on the same held-out phantoms" in refused.failures[1]


def test_a_candidate_evaluated_beside_the_active_version_is_held_against_those_figures() -> None:
    """``preread models build`` reads its baseline on the same scans in the same run: those
    figures are the active's, not its package's evaluation of another set."""
    small = {"source": "phantoms", "seed": 70, "count": 4}
    beside = {"cpm": 0.80, "sensitivity_ge6mm": 0.75, "fp_per_scan": 0.5}
    candidate = {
        "data": small,
        "cpm": 0.79,
        "sensitivity_ge6mm": 0.75,
        "fp_per_scan": 0.5,
        "baseline": {"model": "m@1", "source": "same run", "held_out": beside},
    }
    active = held_out_figures(EVALUATION, candidate, "m@1")
    assert active == {**beside, "data": small}
    result = gate(
        [study([(0.0, 0.0, 0.0), (50.0, 0.0, 0.0)])],
        active="m@1",
        candidate="m@2",
        active_evaluation=active,
        candidate_evaluation=candidate,
        min_studies=1,
    )
    assert result.passed, result.failures
    assert result.figures["held_out"]["cpm"] == (0.80, 0.79)
    # another baseline, or one taken from its published document: the active package's figures
    for base in ({"model": "m@0", "source": "same run"}, {"model": "m@1", "source": "published"}):
        other = {**candidate, "baseline": {**base, "held_out": beside}}
        assert held_out_figures(EVALUATION, other, "m@1") is EVALUATION
