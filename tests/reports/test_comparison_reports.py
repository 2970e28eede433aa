"""The comparison with the priors in the JSON, FHIR (validated by fhir.resources), HL7
(parsed strictly by hl7apy) and HTML reports; the SR is checked in test_sr_seg.py."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from preread.domain import Comparison, NoduleComparison, PriorStudy
from preread.reports.fhir import fhir_json
from preread.reports.hl7 import to_oru
from preread.reports.html import to_html
from preread.reports.json import to_json
from tests.reports.test_lung_rads_reports import FINDINGS, _field, _obxs, _report, _result

PRIOR = PriorStudy("1.2.826.0.1.3680043.8.498.900", date(2023, 11, 2), "previous")
COMPARISON = Comparison(
    "compared",
    prior=PRIOR,
    nodules=(
        NoduleComparison(
            "persistent",
            "2.25.4242",
            1,
            7,
            prior_study_uid=PRIOR.study_instance_uid,
            prior_center_lps_mm=(90.0, -10.0, -140.0),
            days_between=181,
            prior_volume_mm3=700.0,
            current_volume_mm3=1436.8,
            volume_change_pct=105.3,
            vdt_days=174.4,
            vdt_band="<400",
            prior_mean_diameter_mm=10.0,
            current_mean_diameter_mm=12.1,
            diameter_change_mm=2.1,
        ),
        NoduleComparison("new", "2.25.77", 2, None, prior_study_uid=PRIOR.study_instance_uid),
        NoduleComparison(
            "resolved",
            "2.25.99",
            None,
            8,
            prior_study_uid=PRIOR.study_instance_uid,
            prior_mean_diameter_mm=5.0,
            prior_volume_mm3=60.0,
        ),
    ),
    registration_residual_mm=0.8,
)
SENTENCE = (
    "Persistent since 2023-11-02 (181 days); volume 700 -> 1437 mm3 (+105.3 %); volume "
    "doubling time 174 days (<400 d); mean diameter 10.0 -> 12.1 mm (+2.1 mm)."
)


def _compared() -> Any:
    return replace(_result(FINDINGS[:2]), comparison=COMPARISON)


def test_json_and_the_tracking_uid_the_nodule_keeps() -> None:
    doc = to_json(_compared())
    assert doc["findings"][0]["tracking_uid"] == "2.25.4242"  # the prior's
    c = doc["comparison"]
    assert c["status"] == "compared" and c["prior"]["study_date"] == "2023-11-02"
    assert [(n["status"], n["label"]) for n in c["nodules"]] == [
        ("persistent", 1),
        ("new", 2),
        ("resolved", None),
    ]
    assert c["nodules"][0]["vdt_days"] == 174.4 and c["nodules"][0]["vdt_band"] == "<400"


def _bundle() -> dict[str, Any]:
    raw = fhir_json(_report(_compared()))
    Bundle.model_validate_json(raw)
    data: dict[str, Any] = json.loads(raw)
    return data


def test_fhir_components_derived_from_the_prior_study_and_the_conclusion() -> None:
    resources = [e["resource"] for e in _bundle()["entry"]]
    report = resources[0]
    assert (
        "Compared with the prior CT of 2023-11-02: 1 persistent, 1 new, 1 resolved"
        in (report["conclusion"])
    )
    first = next(
        r
        for r in resources
        if r["resourceType"] == "Observation"
        and any(i["value"] == "urn:oid:2.25.4242" for i in r.get("identifier", []))
    )
    by_code = {
        c["code"]["coding"][0]["code"]: c for c in first["component"] if "coding" in c["code"]
    }
    assert by_code["FOLLOW-UP-STATUS"]["valueString"] == "persistent"
    assert by_code["FOLLOW-UP"]["valueString"] == SENTENCE
    assert by_code["VDT"]["valueQuantity"]["code"] == "d"
    assert float(by_code["VDT"]["valueQuantity"]["value"]) == 174.4
    assert float(by_code["VOLUME-CHANGE"]["valueQuantity"]["value"]) == 105.3
    (prior,) = first["derivedFrom"]
    assert prior["type"] == "ImagingStudy"
    assert prior["identifier"]["value"] == f"urn:oid:{PRIOR.study_instance_uid}"


def test_hl7_rows() -> None:
    obxs = _obxs(to_oru(_report(_compared())))
    rows = [
        (_field(o, "obx_4"), _field(o, "obx_2"), _field(o.obx_3, "ce_1"))
        for o in obxs
        if _field(o.obx_3, "ce_1") in ("FOLLOW-UP", "VOLUME-CHANGE", "VDT")
    ]
    assert rows == [
        ("", "ST", "FOLLOW-UP"),
        ("1", "ST", "FOLLOW-UP"),
        ("1", "NM", "VOLUME-CHANGE"),
        ("1", "NM", "VDT"),
        ("2", "ST", "FOLLOW-UP"),
    ]
    vdt = next(o for o in obxs if _field(o.obx_3, "ce_1") == "VDT")
    assert _field(vdt, "obx_5") == "174.4" and _field(vdt.obx_6, "ce_1") == "d"


def test_html_section() -> None:
    page = to_html(_report(_compared()))
    assert "<h2>Comparison with earlier CTs</h2>" in page
    assert "volume 700 -&gt; 1437 mm3" in page and "Resolved: the 5.0 mm nodule" in page


def test_not_compared_and_unavailable_say_so() -> None:
    down = replace(_result(FINDINGS[:1]), comparison=Comparison("unavailable", reason="PACS down"))
    assert "Comparison with earlier CTs unavailable: PACS down." in to_html(_report(down))
    none = _result(FINDINGS[:1])
    assert "Comparison with earlier CTs" not in to_html(_report(none))
    assert to_json(none)["comparison"] is None
