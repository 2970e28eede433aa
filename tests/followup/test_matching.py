"""Matching current findings to a prior's: status, gate, Hungarian pairing, growth, UIDs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np
import pytest

from preread.domain import Finding, NoduleComparison, Vec3
from preread.followup.matching import MIN_GATE_MM, add_baseline, gate_mm, match_nodules
from preread.followup.registration import RigidTransform

CURRENT_DATE = date(2025, 6, 1)
PRIOR_DATE = date(2024, 6, 1)  # 365 days earlier
DAYS = 365


def finding(
    label: int,
    center: Vec3,
    *,
    long_axis: float = 6.0,
    volume: float = 100.0,
    axial: float | None = 6.0,
    short: float | None = 4.0,
) -> Finding:
    return Finding(
        label=label,
        center_lps_mm=center,
        long_axis_mm=long_axis,
        volume_mm3=volume,
        probability=0.9,
        mean_hu=-50.0,
        voxel_count=100,
        axial_long_axis_mm=axial,
        short_axis_mm=short,
    )


def match(
    current: Sequence[Finding],
    prior: Sequence[Finding],
    transform: RigidTransform | None = None,
    **kwargs: Any,
) -> tuple[NoduleComparison, ...]:
    options: dict[str, Any] = {
        "current_study_date": CURRENT_DATE,
        "prior_study_date": PRIOR_DATE,
        "prior_study_uid": "1.2.3.prior",
        "prior_tracking_uids": {p.label: f"1.2.3.track.{p.label}" for p in prior},
        "new_tracking_uid": lambda f: f"1.2.3.new.{f.label}",
    }
    options.update(kwargs)
    return match_nodules(current, prior, transform or RigidTransform.identity(), **options)


def shift(d: float) -> RigidTransform:
    return RigidTransform.from_arrays(np.eye(3), (d, 0.0, 0.0))


def test_persistent_new_and_resolved() -> None:
    prior = [finding(1, (0.0, 0.0, 0.0)), finding(2, (50.0, 0.0, 0.0))]
    current = [finding(1, (101.0, 1.0, 0.0), volume=200.0), finding(2, (-30.0, 40.0, 0.0))]
    rows = match(current, prior, shift(100.0))  # the patient moved 100 mm along x
    assert [(r.status, r.current_label, r.prior_label) for r in rows] == [
        ("persistent", 1, 1),
        ("new", 2, None),
        ("resolved", None, 2),
    ]
    persistent, new, resolved = rows
    assert persistent.tracking_uid == "1.2.3.track.1"
    assert persistent.prior_center_lps_mm == (0.0, 0.0, 0.0)  # the prior's own frame
    assert persistent.days_between == DAYS
    assert (persistent.prior_volume_mm3, persistent.current_volume_mm3) == (100.0, 200.0)
    assert persistent.volume_change_pct == 100.0
    assert persistent.vdt_days == pytest.approx(365.0)
    assert persistent.vdt_band == "<400"
    assert persistent.prior_study_uid == "1.2.3.prior"
    assert new.tracking_uid == "1.2.3.new.2"
    assert new.current_volume_mm3 == 100.0
    assert new.prior_center_lps_mm is None
    assert resolved.tracking_uid == "1.2.3.track.2"
    assert resolved.prior_center_lps_mm == (50.0, 0.0, 0.0)
    assert resolved.prior_volume_mm3 == 100.0
    assert resolved.current_volume_mm3 is None


def test_gate_is_half_the_larger_long_axis_at_least_5_mm() -> None:
    small, large = finding(1, (0, 0, 0), long_axis=4.0), finding(2, (0, 0, 0), long_axis=16.0)
    assert gate_mm(small, small) == MIN_GATE_MM
    assert gate_mm(small, large) == gate_mm(large, small) == 8.0


@pytest.mark.parametrize(
    ("long_axis", "distance", "status"),
    [
        (6.0, 4.99, "persistent"),
        (6.0, 5.0, "persistent"),  # the gate itself is inside
        (6.0, 5.01, "new"),
        (20.0, 9.99, "persistent"),
        (20.0, 10.01, "new"),
    ],
)
def test_a_pair_just_inside_or_outside_the_gate(
    long_axis: float, distance: float, status: str
) -> None:
    prior = [finding(1, (10.0, 20.0, 30.0), long_axis=long_axis)]
    current = [finding(1, (10.0, 20.0 + distance, 30.0), long_axis=6.0)]
    rows = match(current, prior)
    assert rows[0].status == status
    assert len(rows) == (1 if status == "persistent" else 2)


def test_the_gate_applies_after_registration() -> None:
    prior = [finding(1, (0.0, 0.0, 0.0))]
    current = [finding(1, (30.0, 0.0, 0.0))]
    assert [r.status for r in match(current, prior)] == ["new", "resolved"]
    assert [r.status for r in match(current, prior, shift(28.0))] == ["persistent"]


def test_hungarian_beats_greedy_nearest_first() -> None:
    """Along x: prior A at 0, B at 3; current a at 1, b at −2. Greedy takes the nearest pair
    (A–a, 1 mm) and then has B–b (5 mm): 6 mm in all; Hungarian takes A–b (2 mm) and B–a
    (2 mm): 4 mm. All four pairs lie within the 5 mm gate."""
    prior = [finding(1, (0.0, 0.0, 0.0)), finding(2, (3.0, 0.0, 0.0))]
    current = [finding(1, (1.0, 0.0, 0.0)), finding(2, (-2.0, 0.0, 0.0))]
    rows = match(current, prior)
    assert [(r.status, r.current_label, r.prior_label) for r in rows] == [
        ("persistent", 1, 2),
        ("persistent", 2, 1),
    ]
    assert [r.tracking_uid for r in rows] == ["1.2.3.track.2", "1.2.3.track.1"]


def test_most_pairs_within_the_gate_win_over_a_shorter_single_pair() -> None:
    """Current a lies 1 mm from prior A and 4 mm from B; current b only within reach of A
    (4 mm). Taking the nearest pair A–a leaves b and B apart; the better pairing has two."""
    prior = [finding(1, (0.0, 0.0, 0.0)), finding(2, (5.0, 0.0, 0.0))]
    current = [finding(1, (1.0, 0.0, 0.0)), finding(2, (-4.0, 0.0, 0.0))]
    rows = match(current, prior)
    assert [(r.status, r.current_label, r.prior_label) for r in rows] == [
        ("persistent", 1, 2),
        ("persistent", 2, 1),
    ]


def test_output_order_does_not_depend_on_input_order() -> None:
    prior = [finding(3, (0, 0, 0)), finding(1, (40, 0, 0)), finding(2, (80, 0, 0))]
    current = [finding(2, (0.5, 0, 0)), finding(5, (-60, 0, 0)), finding(1, (80, 1, 0))]
    rows = match(current, prior)
    assert [(r.status, r.current_label, r.prior_label) for r in rows] == [
        ("persistent", 1, 2),
        ("persistent", 2, 3),
        ("new", 5, None),
        ("resolved", None, 1),
    ]
    assert match(list(reversed(current)), list(reversed(prior))) == rows


def test_missing_diameters_stay_none() -> None:
    prior = [finding(1, (0, 0, 0), axial=None, short=None)]
    current = [finding(1, (0, 0, 0), axial=8.0, short=6.0)]
    (row,) = match(current, prior)
    assert row.prior_mean_diameter_mm is None
    assert row.current_mean_diameter_mm == 7.0
    assert row.diameter_change_mm is None
    (row,) = match([finding(1, (0, 0, 0), axial=8.0, short=6.0)], [finding(1, (0, 0, 0))])
    assert (row.prior_mean_diameter_mm, row.diameter_change_mm) == (5.0, 2.0)


def test_small_change_has_no_vdt_and_shrinking_no_band() -> None:
    prior = [finding(1, (0, 0, 0), volume=100.0), finding(2, (50, 0, 0), volume=200.0)]
    current = [finding(1, (0, 0, 0), volume=110.0), finding(2, (50, 0, 0), volume=100.0)]
    small, shrunk = match(current, prior)
    assert (small.volume_change_pct, small.vdt_days, small.vdt_band) == (10.0, None, None)
    assert shrunk.volume_change_pct == -50.0
    assert shrunk.vdt_days == pytest.approx(-365.0)
    assert shrunk.vdt_band is None


def test_vdt_is_rounded_and_banded_as_shown() -> None:
    prior = [finding(1, (0, 0, 0), volume=300.0)]
    current = [finding(1, (0, 0, 0), volume=450.0)]
    (row,) = match(current, prior)
    assert row.vdt_days == round(DAYS * math.log(2) / math.log(1.5), 1) == 624.0
    assert row.vdt_band == ">600"


def test_no_priors_or_no_current_findings() -> None:
    assert match([], []) == ()
    (row,) = match([finding(4, (0, 0, 0))], [])
    assert (row.status, row.tracking_uid, row.days_between) == ("new", "1.2.3.new.4", DAYS)
    (row,) = match([], [finding(7, (0, 0, 0))])
    assert (row.status, row.tracking_uid) == ("resolved", "1.2.3.track.7")


def test_a_prior_finding_without_tracking_uid_or_a_duplicate_label_is_an_error() -> None:
    with pytest.raises(ValueError, match="tracking UID"):
        match([], [finding(1, (0, 0, 0))], prior_tracking_uids={})
    with pytest.raises(ValueError, match="duplicate"):
        match([finding(1, (0, 0, 0)), finding(1, (9, 0, 0))], [])


def test_baseline_figures_for_persistent_nodules() -> None:
    prior = [finding(1, (0, 0, 0), volume=150.0), finding(2, (50, 0, 0))]
    current = [
        finding(1, (0, 0, 0), volume=200.0),
        finding(2, (-40, 0, 0)),  # new
        finding(3, (50, 0, 0)),  # persistent, but not in the baseline
    ]
    rows = match(current, prior)
    baseline = [finding(9, (10.0, 0, 0), volume=100.0, axial=5.0, short=3.0)]
    out = add_baseline(rows, current, baseline, shift(-10.0), baseline_study_uid="1.2.3.base")
    assert [r.status for r in out] == ["persistent", "new", "persistent"]
    assert (out[0].baseline_study_uid, out[0].baseline_volume_mm3) == ("1.2.3.base", 100.0)
    assert out[0].baseline_mean_diameter_mm == 4.0
    assert out[1] == rows[1]
    assert out[2] == rows[2]
    # the baseline is the prior itself: nothing to add
    same = add_baseline(rows, current, baseline, shift(-10.0), baseline_study_uid="1.2.3.prior")
    assert same == rows
