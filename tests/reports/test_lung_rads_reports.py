"""Lung-RADS v2022 in every report format: the JSON (and results stored before it existed),
the FHIR Bundle (validated by fhir.resources), the HL7 ORU (parsed by hl7apy, strict) and the
HTML page. The SR is tested with dciodvfy and dsrdump in test_sr_seg.py."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from preread.domain import Finding, ModelRef, PreReadResult
from preread.followup.lungrads import MANAGEMENT, assess
from preread.reports import PreReadOut
from preread.reports.context import ReportInput, ReportStudy
from preread.reports.fhir import fhir_json
from preread.reports.hl7 import to_oru
from preread.reports.html import to_html
from preread.reports.json import to_json, to_model

MODEL = ModelRef(id="lung-nodule", version="2.1.0", name="PreRead Lung Nodule", sha256="cd" * 32)
BASE = Finding(1, (99.7, -15.5, -145.6), 14.0, 1436.8, 0.97, -35.3, 1400, "left")
# solid 12.1 mm → 4A; part-solid 8.3 mm with a 4.1 mm solid component → 3; ground-glass → 2;
# the exam: 4A
FINDINGS = (
    replace(BASE, nodule_type="solid", axial_long_axis_mm=13.2, short_axis_mm=11.05),
    replace(
        BASE,
        label=2,
        center_lps_mm=(-108.4, 46.2, -136.7),
        nodule_type="part-solid",
        axial_long_axis_mm=9.46,
        short_axis_mm=7.2,
        solid_component_long_axis_mm=4.13,
    ),
    replace(
        BASE,
        label=3,
        center_lps_mm=(80.0, 20.5, -120.0),
        nodule_type="ground-glass",
        axial_long_axis_mm=7.5,
        short_axis_mm=6.0,
    ),
)
PRERD = "urn:preread:codes"


def _result(findings: tuple[Finding, ...] = FINDINGS, *, screening: bool = True) -> PreReadResult:
    return PreReadResult(
        study_instance_uid="1.2.826.0.1.3680043.8.498.1001",
        series_instance_uid="1.2.826.0.1.3680043.8.498.1002",
        frame_of_reference_uid="1.2.826.0.1.3680043.8.498.1003",
        model=MODEL,
        provider="CPUExecutionProvider",
        findings=findings,
        created=datetime(2024, 5, 1, 12, 30, 15, tzinfo=UTC),
        lung_rads=assess(findings, None) if screening else None,
    )


def _report(result: PreReadResult) -> ReportInput:
    return ReportInput(
        study=ReportStudy(
            tenant="t",
            study_instance_uid=result.study_instance_uid,
            patient_id="P1",
            issuer_of_patient_id="",
            patient_name="Doe^Jane",
            patient_birth_date="19600101",
            patient_sex="F",
            accession_number="A1",
            study_date="20240501",
            study_time="101500",
            study_description="LDCT lung screening",
        ),
        preread=to_model(result),
        job_id="job-1",
        finished_at=datetime(2024, 5, 1, 12, 31, 5, tzinfo=UTC),
        sr_sop_instance_uid="1.2.826.0.1.3680043.8.498.3001",
        seg_sop_instance_uid="1.2.826.0.1.3680043.8.498.3002",
    )


def test_json_carries_the_exam_and_each_nodule() -> None:
    doc = to_json(_result())
    rads = doc["lung_rads"]
    assert (rads["version"], rads["category"], rads["rule"]) == (
        "v2022",
        "4A",
        "solid-baseline-8-15",
    )
    assert rads["management"] == MANAGEMENT["4A"]
    uids = {f["label"]: f["tracking_uid"] for f in doc["findings"]}
    assert [(n["label"], n["category"], n["tracking_uid"]) for n in rads["nodules"]] == [
        (1, "4A", uids[1]),
        (2, "3", uids[2]),
        (3, "2", uids[3]),
    ]
    assert "solid component 4.1 mm" in rads["nodules"][1]["reason"]
    # round trip, and a result stored before Lung-RADS existed still reads (null)
    assert (
        PreReadOut.model_validate(json.loads(json.dumps(doc))).lung_rads
        == to_model(_result()).lung_rads
    )
    old = dict(doc)
    del old["lung_rads"]
    assert PreReadOut.model_validate(old).lung_rads is None
    assert to_json(_result(screening=False))["lung_rads"] is None


def _entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"]]


def test_fhir_has_a_lung_rads_observation_and_a_component_per_nodule() -> None:
    raw = fhir_json(_report(_result()))
    Bundle.model_validate_json(raw)  # the official R4B models accept it
    resources = _entries(json.loads(raw))
    report = resources[0]
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    exam = next(o for o in observations if o["code"]["coding"][0]["code"] == "LUNG-RADS")
    assert exam["valueCodeableConcept"]["coding"][0] == {
        "system": PRERD,
        "code": "LUNG-RADS-4A",
        "display": "Lung-RADS 4A",
    }
    assert {r["reference"] for r in exam["derivedFrom"]} == {
        f"urn:uuid:{o['id']}" for o in observations if o is not exam
    }
    assert any(MANAGEMENT["4A"] in n["text"] for n in exam["note"])
    assert f"urn:uuid:{exam['id']}" in {r["reference"] for r in report["result"]}
    assert "Lung-RADS v2022 category 4A" in report["conclusion"]
    per_nodule = [
        c["valueCodeableConcept"]["text"]
        for o in observations
        if o is not exam
        for c in o["component"]
        if c["code"].get("coding", [{}])[0].get("code") == "LUNG-RADS"
    ]
    assert per_nodule == ["4A", "3", "2"]


def test_fhir_not_determinable_is_a_data_absent_reason() -> None:
    untyped = (replace(FINDINGS[0], nodule_type=None),)
    raw = fhir_json(_report(_result(untyped)))
    Bundle.model_validate_json(raw)
    exam = next(
        r
        for r in _entries(json.loads(raw))
        if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "LUNG-RADS"
    )
    assert "valueCodeableConcept" not in exam
    assert exam["dataAbsentReason"]["coding"][0]["code"] == "unknown"
    assert "not determinable" in exam["dataAbsentReason"]["text"]


def test_fhir_without_lung_rads_has_no_such_observation() -> None:
    raw = fhir_json(_report(_result(screening=False)))
    codes = [
        r["code"]["coding"][0]["code"]
        for r in _entries(json.loads(raw))
        if r["resourceType"] == "Observation"
    ]
    assert "LUNG-RADS" not in codes and b"LUNG-RADS" not in raw


def _obxs(text: str) -> list[Any]:
    message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    message.validate()
    order = message.oru_r01_patient_result.oru_r01_order_observation
    return [group.obx for group in order.oru_r01_observation]


def _field(obx: Any, name: str) -> str:
    return "~".join(str(e.to_er7()) for e in getattr(obx, name))


def test_hl7_has_the_exam_category_its_management_and_one_row_per_nodule() -> None:
    obxs = _obxs(to_oru(_report(_result())))
    rows = [
        (_field(o, "obx_4"), _field(o, "obx_2"), _field(o, "obx_5"))
        for o in obxs
        if _field(o.obx_3, "ce_1") == "LUNG-RADS"
    ]
    assert rows == [
        ("", "CWE", "LUNG-RADS-4A^Lung-RADS 4A^99PRERD"),
        ("1", "CWE", "LUNG-RADS-4A^Lung-RADS 4A^99PRERD"),
        ("2", "CWE", "LUNG-RADS-3^Lung-RADS 3^99PRERD"),
        ("3", "CWE", "LUNG-RADS-2^Lung-RADS 2^99PRERD"),
    ]
    (management,) = [o for o in obxs if _field(o.obx_3, "ce_1") == "121075"]
    assert _field(management, "obx_2") == "TX"
    assert "3-month LDCT" in _field(management, "obx_5")


def test_hl7_not_determinable_is_text_with_the_reason() -> None:
    untyped = (replace(FINDINGS[0], nodule_type=None),)
    obxs = _obxs(to_oru(_report(_result(untyped))))
    rows = [o for o in obxs if _field(o.obx_3, "ce_1") == "LUNG-RADS"]
    assert [_field(o, "obx_2") for o in rows] == ["ST", "ST"]
    assert all("not determinable" in _field(o, "obx_5") for o in rows)
    assert not [o for o in obxs if _field(o.obx_3, "ce_1") == "121075"]


def test_html_shows_the_category_per_nodule_and_for_the_exam() -> None:
    page = to_html(_report(_result()))
    assert "<th>Lung-RADS</th>" in page
    assert "<h2>Lung-RADS v2022: category 4A</h2>" in page
    assert "3-month LDCT" in page
    plain = to_html(_report(_result(screening=False)))
    assert "Lung-RADS</th>" not in plain and "<h2>Lung-RADS" not in plain
