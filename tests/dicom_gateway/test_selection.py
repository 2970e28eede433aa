"""Series selection from the card's rules: each refusal has its reason."""

from __future__ import annotations

from typing import Any

import pytest

from dicom_gateway.selection import SeriesCandidate, judge, select_series
from inference.card import SeriesRules

RULES = SeriesRules(
    min_slices=50,
    max_slice_thickness_mm=2.5,
    min_slice_thickness_mm=0.5,
    description_exclude=["scout", "localizer"],
)
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def ct(uid: str = "1.2.3", **kw: Any) -> SeriesCandidate:
    base: dict[str, object] = {
        "series_instance_uid": uid,
        "modality": "CT",
        "description": "Chest 1.0 B70f",
        "n_images": 200,
        "image_orientation": AXIAL,
        "slice_thickness_mm": 1.0,
    }
    base.update(kw)
    return SeriesCandidate(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"modality": "MR"}, "modality MR"),
        ({"image_type": ("ORIGINAL", "PRIMARY", "LOCALIZER")}, "localizer"),
        ({"description": "Scout 0.6"}, "excluded pattern"),
        ({"image_orientation": (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)}, "not axial (slice normal 90°"),
        ({"image_orientation": None}, "no ImageOrientationPatient"),
        ({"slice_thickness_mm": 5.0}, "slice thickness 5 mm > 2.5 mm"),
        ({"slice_thickness_mm": 0.3}, "< 0.5 mm"),
        ({"slice_thickness_mm": None}, "no SliceThickness"),
        ({"n_images": 20}, "20 images < 50"),
    ],
)
def test_each_rule_names_its_reason(changes: dict[str, Any], reason: str) -> None:
    decision = judge(ct(**changes), RULES)
    assert not decision.eligible
    assert reason in decision.reason


def test_slightly_tilted_axial_is_still_axial() -> None:
    # 5° about the x axis
    import math

    c, s = math.cos(math.radians(5)), math.sin(math.radians(5))
    assert judge(ct(image_orientation=(1.0, 0.0, 0.0, 0.0, c, s)), RULES).eligible


def test_thinnest_then_largest_series_is_chosen_and_all_are_recorded() -> None:
    series = [
        ct("1", slice_thickness_mm=2.0, n_images=150),
        ct("2", slice_thickness_mm=1.0, n_images=300),
        ct("3", slice_thickness_mm=1.0, n_images=310),
        ct("4", modality="SR"),
    ]
    sel = select_series(series, RULES)
    assert sel.chosen is not None and sel.chosen.series_instance_uid == "3"
    assert [d.eligible for d in sel.decisions] == [True, True, True, False]


def test_no_eligible_series_gives_every_reason() -> None:
    sel = select_series([ct("a", modality="MR"), ct("b", n_images=3)], RULES)
    assert sel.chosen is None
    assert "a: modality MR" in sel.reason and "b: 3 images" in sel.reason
    assert select_series([], RULES).reason == "the study has no series"
