"""The PreRead JSON and the HTML page carry each finding's nodule type and Lung-RADS sizes.

Inputs are hand-made: a result of a 2.0.0-like model (one solid, one part-solid nodule with
its solid component, one ground-glass nodule) and the same nodules from a 1.0.0-like model,
which gives neither type nor Lung-RADS sizes.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from preread.domain import Finding, ModelRef, PreReadResult
from preread.reports import PreReadOut, to_json
from preread.reports.context import ReportInput, ReportStudy
from preread.reports.html import to_html
from preread.reports.json import to_model

MODEL = ModelRef(id="lung-nodule-2", version="2.0.0", name="PreRead Lung Nodule", sha256="ab" * 32)
UNTYPED = (
    Finding(1, (99.7, -15.5, -145.6), 14.0, 1436.8, 0.97, -35.3, 1400, "left"),
    Finding(2, (-108.4, 46.2, -136.7), 10.0, 523.6, 0.8, -310.0, 520, "right"),
    Finding(3, (80.0, 20.5, -120.0), 8.0, 180.2, 0.61, -640.0, 180, "left"),
)
TYPED = (
    replace(UNTYPED[0], nodule_type="solid", axial_long_axis_mm=13.2, short_axis_mm=11.05),
    replace(
        UNTYPED[1],
        nodule_type="part-solid",
        axial_long_axis_mm=9.46,
        short_axis_mm=7.2,
        solid_component_long_axis_mm=4.13,
    ),
    replace(UNTYPED[2], nodule_type="ground-glass", axial_long_axis_mm=7.5, short_axis_mm=6.0),
)
NEW_FIELDS = (
    "nodule_type",
    "axial_long_axis_mm",
    "short_axis_mm",
    "mean_diameter_mm",
    "solid_component_long_axis_mm",
)


def _result(findings: tuple[Finding, ...]) -> PreReadResult:
    return PreReadResult(
        study_instance_uid="1.2.826.0.1.3680043.8.498.1001",
        series_instance_uid="1.2.826.0.1.3680043.8.498.1002",
        frame_of_reference_uid="1.2.826.0.1.3680043.8.498.1003",
        model=MODEL,
        provider="CPUExecutionProvider",
        findings=findings,
        created=datetime(2024, 5, 1, 12, 30, 15, tzinfo=UTC),
    )


def _report(findings: tuple[Finding, ...]) -> ReportInput:
    study = ReportStudy(
        tenant="t",
        study_instance_uid="1.2.826.0.1.3680043.8.498.1001",
        patient_id="P1",
        issuer_of_patient_id="",
        patient_name="Doe^Jane",
        patient_birth_date="19600101",
        patient_sex="F",
        accession_number="A1",
        study_date="20240501",
        study_time="101500",
        study_description="CT Thorax",
    )
    return ReportInput(
        study=study,
        preread=to_model(_result(findings)),
        job_id="job-1",
        finished_at=datetime(2024, 5, 1, 12, 31, 5, tzinfo=UTC),
        sr_sop_instance_uid="1.2.826.0.1.3680043.8.498.3001",
        seg_sop_instance_uid="1.2.826.0.1.3680043.8.498.3002",
    )


# --- JSON ------------------------------------------------------------------------------------


def test_json_carries_type_and_lung_rads_sizes() -> None:
    findings = to_json(_result(TYPED))["findings"]
    picked = [{name: f[name] for name in NEW_FIELDS} for f in findings]
    assert picked == [
        {
            "nodule_type": "solid",
            "axial_long_axis_mm": 13.2,
            "short_axis_mm": 11.05,
            "mean_diameter_mm": 12.1,  # (13.2 + 11.05) / 2 = 12.125, to 0.1 mm
            "solid_component_long_axis_mm": None,
        },
        {
            "nodule_type": "part-solid",
            "axial_long_axis_mm": 9.46,
            "short_axis_mm": 7.2,
            "mean_diameter_mm": 8.3,
            "solid_component_long_axis_mm": 4.13,
        },
        {
            "nodule_type": "ground-glass",
            "axial_long_axis_mm": 7.5,
            "short_axis_mm": 6.0,
            "mean_diameter_mm": 6.8,
            "solid_component_long_axis_mm": None,
        },
    ]
    assert [f["long_axis_mm"] for f in findings] == [14.0, 10.0, 8.0]  # the 3-D one, as before


def test_json_of_an_untyped_model_has_the_fields_null() -> None:
    for finding in to_json(_result(UNTYPED))["findings"]:
        assert {name: finding[name] for name in NEW_FIELDS} == dict.fromkeys(NEW_FIELDS)


def test_results_stored_before_the_fields_existed_still_read() -> None:
    stored: dict[str, Any] = to_json(_result(UNTYPED))
    for finding in stored["findings"]:
        for name in NEW_FIELDS:
            del finding[name]
    read = PreReadOut.model_validate(stored)
    assert all(getattr(f, name) is None for f in read.findings for name in NEW_FIELDS)
    assert read.model_dump(mode="json") == to_json(_result(UNTYPED))
    # and a typed result round-trips through the stored JSON unchanged
    typed = to_json(_result(TYPED))
    assert PreReadOut.model_validate(typed).model_dump(mode="json") == typed


def test_json_schema_documents_the_new_fields_as_nullable() -> None:
    properties = PreReadOut.model_json_schema()["$defs"]["FindingOut"]["properties"]
    for name in NEW_FIELDS:
        assert {"type": "null"} in properties[name]["anyOf"], name
        assert properties[name]["description"], name
    kinds = next(s for s in properties["nodule_type"]["anyOf"] if s.get("enum"))
    assert kinds["enum"] == ["solid", "part-solid", "ground-glass"]


# --- HTML ------------------------------------------------------------------------------------


def _rows(page: str) -> list[list[str]]:
    body = page.split("<tbody>")[1].split("</tbody>")[0]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in body.split("</tr>") if row]


def test_html_shows_type_and_mean_diameter() -> None:
    page = to_html(_report(TYPED))
    assert "<th>Type</th><th>Mean diameter (mm)</th>" in page
    rows = _rows(page)
    assert [row[2:5] for row in rows] == [
        ["solid", "12.1", "14.0"],
        ["part-solid (solid component 4.1 mm)", "8.3", "10.0"],
        ["ground-glass", "6.8", "8.0"],
    ]


def test_html_of_an_untyped_model_says_not_given() -> None:
    rows = _rows(to_html(_report(UNTYPED)))
    assert [row[2:5] for row in rows] == [
        ["—", "—", "14.0"],
        ["—", "—", "10.0"],
        ["—", "—", "8.0"],
    ]
