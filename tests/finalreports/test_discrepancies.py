"""The AI's reading against a final report (pure): the three kinds, and the pairing rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from preread.domain import ModelRef, PreReadResult
from preread.finalreports import AiFinding, DiscrepancyKind, compare, extract
from preread.finalreports.discrepancies import ai_findings
from preread.reports import to_json
from tests.finalreports.conftest import finding


def ai(*sizes: float, side: str = "right") -> tuple[AiFinding, ...]:
    return tuple(AiFinding(n, size, "solid", side) for n, size in enumerate(sizes, 1))


def kinds(findings: tuple[AiFinding, ...], text: str) -> list[tuple[str, float | None]]:
    return [
        (d.kind.value, d.ai.long_axis_mm if d.ai else d.report.size_mm if d.report else None)
        for d in compare(findings, extract(text))
    ]


@pytest.mark.parametrize(
    ("findings", "text", "expected"),
    [
        (ai(8), "8 mm solid nodule in the right upper lobe.", []),
        (ai(8.4), "右肺上叶实性结节，大小约8mm×6mm。", []),
        (ai(9), "No pulmonary nodules.", [("ai-only", 9.0)]),
        (ai(9), "双肺未见明显结节。", [("ai-only", 9.0)]),
        (ai(), "12 mm nodule in the left lower lobe.", [("report-only", 12.0)]),
        (ai(8), "14 mm nodule in the right upper lobe.", [("size", 8.0)]),
        (ai(10), "12 mm nodule in the RUL.", []),  # 2 mm apart: within max(2 mm, 25 %)
        (ai(20), "14 mm nodule in the RUL.", [("size", 20.0)]),  # 6 mm apart: over 25 %
        (ai(12), "5 mm nodule in the RUL.", [("ai-only", 12.0)]),  # no plausible pair
        (ai(7, side="left"), "7 mm nodule in the RUL.", [("ai-only", 7.0), ("report-only", 7.0)]),
        (ai(4), "No pulmonary nodules.", []),  # an AI finding under 6 mm need not be reported
        (ai(), "5 mm nodule in the RUL.", []),
        (ai(14, 9, 7), "Multiple nodules in the right lung, the largest 14 mm.", []),
        (ai(14, 18), "Multiple nodules in the right lung, the largest 14 mm.", [("ai-only", 18.0)]),
        (ai(8), "A nodule in the right upper lobe, not measured.", []),
        (ai(8, 9), "A nodule in the right upper lobe.", [("ai-only", 8.0)]),
        (ai(8, 9), "Several nodules in the right lung.", []),
        (ai(8), "Tiny micronodules in the right lung.", [("ai-only", 8.0)]),
        (ai(7), "Calcified granuloma in the right lower lobe, 7 mm.", []),
        (ai(7), "Thyroid: 7 mm nodule in the right lobe. Lungs: clear.", [("ai-only", 7.0)]),
    ],
)
def test_compare(
    findings: tuple[AiFinding, ...], text: str, expected: list[tuple[str, float]]
) -> None:
    assert kinds(findings, text) == expected


def test_each_discrepancy_says_what_it_is_in_a_sentence() -> None:
    found = compare(ai(9, 8), extract("14 mm nodule in the RLL. 20 mm mass in the left lung."))
    assert [d.kind for d in found] == [
        DiscrepancyKind.AI_ONLY,
        DiscrepancyKind.REPORT_ONLY,
        DiscrepancyKind.SIZE,
    ]
    assert found[0].description == (
        "The AI found a nodule of 8 mm (right lung) that the final report does not mention"
    )
    assert found[1].description == (
        "The final report mentions a nodule of 20 mm (left lung) that the AI did not find"
    )
    assert found[2].description == (
        "Sizes disagree: the final report says 14 mm, the AI measured 9 mm (RLL)"
    )


def test_findings_are_read_from_a_stored_result() -> None:
    result = PreReadResult(
        study_instance_uid="1.2.3",
        series_instance_uid="1.2.4",
        frame_of_reference_uid="1.2.5",
        model=ModelRef("lung-nodule", "2.6.0", "x", "ab" * 32),
        provider="CPUExecutionProvider",
        findings=(finding(1, 8.5), finding(2, 4.0, side="left")),
        created=datetime(2025, 1, 10, tzinfo=UTC),
    )
    read = ai_findings(to_json(result))
    assert [(f.label, f.long_axis_mm, f.lung_side, f.nodule_type) for f in read] == [
        (1, 8.5, "right", "solid"),
        (2, 4.0, "left", "solid"),
    ]
    assert read[0].center_lps_mm == (-20.0, 10.0, -120.0)
    with pytest.raises(ValueError, match=r"findings\[0\] has no long_axis_mm"):
        ai_findings({"findings": [{"label": 1}]})
