"""Volume doubling time, its 25 % gate and bands, volume and diameter change."""

from __future__ import annotations

import math

import pytest

from preread.followup.growth import (
    diameter_change_mm,
    vdt_band,
    volume_change_pct,
    volume_doubling_time,
)


def test_doubling_in_100_days_is_a_vdt_of_100_days() -> None:
    assert volume_doubling_time(100.0, 200.0, 100) == pytest.approx(100.0)
    # quadrupling in 100 days: two doublings
    assert volume_doubling_time(50.0, 200.0, 100) == pytest.approx(50.0)


def test_vdt_formula_by_hand() -> None:
    # 300 → 450 mm³ in 365 days: 365·ln 2 / ln 1.5
    assert volume_doubling_time(300.0, 450.0, 365) == pytest.approx(
        365 * math.log(2) / math.log(1.5)
    )
    assert volume_doubling_time(300.0, 450.0, 365) == pytest.approx(623.98, abs=0.01)


def test_a_change_under_25_percent_has_no_vdt() -> None:
    assert volume_doubling_time(100.0, 124.9, 90) is None  # +24.9 %
    assert volume_doubling_time(100.0, 75.1, 90) is None  # −24.9 %
    assert volume_doubling_time(1000.0, 1000.0, 90) is None


def test_a_change_of_exactly_25_percent_has_a_vdt() -> None:
    assert volume_doubling_time(100.0, 125.0, 90) == pytest.approx(
        90 * math.log(2) / math.log(1.25)
    )
    # 0.1 → 0.125 is 24.999… % in binary floating point: still 25 %
    assert volume_doubling_time(0.1, 0.125, 90) is not None


def test_a_shrinking_nodule_has_a_negative_vdt_and_no_band() -> None:
    vdt = volume_doubling_time(100.0, 50.0, 100)
    assert vdt == pytest.approx(-100.0)
    assert vdt_band(vdt) is None
    assert volume_doubling_time(100.0, 75.0, 100) == pytest.approx(
        100 * math.log(2) / math.log(0.75)
    )


@pytest.mark.parametrize(
    ("v1", "v2", "days"),
    [(100.0, 200.0, 0), (100.0, 200.0, -30), (0.0, 200.0, 90), (100.0, 0.0, 90), (-1, 5, 90)],
)
def test_no_vdt_without_time_or_volume(v1: float, v2: float, days: int) -> None:
    assert volume_doubling_time(v1, v2, days) is None


@pytest.mark.parametrize(
    ("vdt", "band"),
    [
        (0.5, "<400"),
        (399.9, "<400"),
        (400.0, "400-600"),
        (600.0, "400-600"),
        (600.1, ">600"),
        (5000.0, ">600"),
        (None, None),
        (0.0, None),
        (-120.0, None),
    ],
)
def test_vdt_bands(vdt: float | None, band: str | None) -> None:
    assert vdt_band(vdt) == band


def test_volume_change_in_percent_one_decimal() -> None:
    assert volume_change_pct(100.0, 200.0) == 100.0
    assert volume_change_pct(300.0, 150.0) == -50.0
    assert volume_change_pct(3.0, 4.0) == 33.3
    with pytest.raises(ValueError, match="positive"):
        volume_change_pct(0.0, 4.0)


def test_diameter_change_one_decimal_or_none() -> None:
    assert diameter_change_mm(6.2, 8.0) == 1.8
    assert diameter_change_mm(8.0, 6.3) == -1.7
    assert diameter_change_mm(None, 8.0) is None
    assert diameter_change_mm(6.2, None) is None
