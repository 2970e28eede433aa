"""The FHIR R4B Bundle of a PreRead, re-read and validated with fhir.resources' R4B models.

Inputs are synthetic and built here: the two nodules of the phantom study of
``test_sr_seg.py`` (14 mm in the left lung, 10 mm in the right), with made-up patient and
study tags in their DICOM string forms, and the same result without findings. The checks
read the bundle's JSON as plain data, so they test what a receiving system gets.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import fhir.resources.R4B.bundle
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from pydantic import ValidationError

from preread.reports.context import ReportInput, ReportStudy
from preread.reports.errors import ReportError
from preread.reports.fhir import FHIR_JSON, FHIR_VERSION, fhir_json, to_fhir_bundle
from preread.reports.json import FindingOut, ModelOut, PreReadOut
from preread.reports.series import AI_NOTICE, MANUFACTURER
from tests.reports.typed import typed_findings

STUDY_UID = "1.2.826.0.1.3680043.8.498.1001"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
AIAST = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "AIAST")
MODEL = ModelOut(
    id="lung-nodule-unet",
    version="1.4.2",
    name="PreRead Lung Nodule UNet",
    sha256="0123456789abcdef" * 4,
)
LEFT = FindingOut(
    label=1,
    tracking_id="AI nodule 1",
    tracking_uid="1.2.826.0.1.3680043.8.498.2001",
    center_lps_mm=(99.7, -15.5, -145.6),
    long_axis_mm=14.0,
    volume_mm3=1436.755,
    probability=0.97314,
    mean_hu=-35.27,
    lung_side="left",
)
RIGHT = FindingOut(
    label=2,
    tracking_id="AI nodule 2",
    tracking_uid="1.2.826.0.1.3680043.8.498.2002",
    center_lps_mm=(-108.4, 46.2, -136.7),
    long_axis_mm=10.004,
    volume_mm3=523.6,
    probability=0.8,
    mean_hu=12.04,
    lung_side="right",
)
# the same nodules typed by a 2.0.0-like model, and a third, ground-glass one
SOLID, PART_SOLID, GROUND_GLASS = typed_findings(LEFT, RIGHT, "1.2.826.0.1.3680043.8.498.2003")
TYPED = (SOLID, PART_SOLID, GROUND_GLASS)
RADLEX = "http://radlex.org"
PRERD = "urn:preread:codes"
RESOURCE_CLASSES: dict[str, type[DiagnosticReport | Device | Observation]] = {
    "DiagnosticReport": DiagnosticReport,
    "Device": Device,
    "Observation": Observation,
}


def make_report(findings: tuple[FindingOut, ...] = (LEFT, RIGHT), /, **study: str) -> ReportInput:
    tags = {
        "tenant": "st-elsewhere",
        "study_instance_uid": STUDY_UID,
        "patient_id": "PAT-0042",
        "issuer_of_patient_id": "",
        "patient_name": "O'Brien^Séan",
        "patient_birth_date": "19600101",
        "patient_sex": "M",
        "accession_number": "ACC-7",
        "study_date": "20240501",
        "study_time": "101500.000000",
        "study_description": "CT Thorax",
    } | study
    preread = PreReadOut(
        study_instance_uid=STUDY_UID,
        series_instance_uid="1.2.826.0.1.3680043.8.498.1002",
        frame_of_reference_uid="1.2.826.0.1.3680043.8.498.1003",
        model=MODEL,
        provider="CPUExecutionProvider",
        created=datetime(2024, 5, 1, 12, 30, 15, tzinfo=UTC),
        findings=list(findings),
    )
    return ReportInput(
        study=ReportStudy(**tags),
        preread=preread,
        job_id="7f9c2a4e-job",
        finished_at=datetime(2024, 5, 1, 12, 31, 5, 250000, tzinfo=UTC),
        sr_sop_instance_uid="1.2.826.0.1.3680043.8.498.3001",
        seg_sop_instance_uid="1.2.826.0.1.3680043.8.498.3002",
    )


def bundle_json(report: ReportInput) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fhir_json(report))
    return data


def resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def the(bundle: dict[str, Any], kind: str) -> dict[str, Any]:
    (resource,) = resources(bundle, kind)
    return resource


def codings(concept: dict[str, Any]) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concept.get("coding", [])}


def tags(resource: dict[str, Any]) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in resource["meta"]["tag"]}


def components(observation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Components by their first code (or their text when uncoded)."""
    return {
        (c["code"]["coding"][0]["code"] if "coding" in c["code"] else c["code"]["text"]): c
        for c in observation["component"]
    }


@pytest.mark.parametrize(
    "findings", [(LEFT, RIGHT), TYPED, ()], ids=["findings", "typed-findings", "no-findings"]
)
def test_bundle_is_valid_r4b(findings: tuple[FindingOut, ...]) -> None:
    raw = fhir_json(make_report(findings))
    bundle = Bundle.model_validate_json(raw)
    assert bundle.type == "collection"
    data = json.loads(raw)
    kinds = [e["resource"]["resourceType"] for e in data["entry"]]
    assert kinds == ["DiagnosticReport", "Device"] + ["Observation"] * len(findings)
    for entry in data["entry"]:
        model = RESOURCE_CLASSES[entry["resource"]["resourceType"]]
        assert model.model_validate(entry["resource"]).id == entry["fullUrl"].split(":")[-1]
    assert isinstance(to_fhir_bundle(make_report(findings)), Bundle)


def test_declares_the_version_of_the_models_it_uses() -> None:
    assert FHIR_VERSION == "4.3.0"
    assert f"Version: {FHIR_VERSION}" in (fhir.resources.R4B.bundle.__doc__ or "")
    assert FHIR_JSON == "application/fhir+json"


def test_json_is_utf8_and_keeps_the_patient_name() -> None:
    raw = fhir_json(make_report())
    assert "Séan O'Brien".encode() in raw
    assert the(bundle_json(make_report()), "DiagnosticReport")["subject"]["display"] == (
        "Séan O'Brien"
    )


def test_diagnostic_report() -> None:
    report = the(bundle_json(make_report()), "DiagnosticReport")
    assert report["status"] == "preliminary"
    assert codings(report["category"][0]) == {
        ("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD")
    }
    assert codings(report["code"]) == {(LOINC, "24627-2")}
    assert report["code"]["text"] == "AI pre-read: lung nodules"
    assert report["subject"]["identifier"] == {
        "system": "urn:preread:tenant:st-elsewhere:patient-id",
        "value": "PAT-0042",
    }
    assert report["subject"]["type"] == "Patient"
    assert report["imagingStudy"][0]["identifier"] == {
        "system": "urn:dicom:uid",
        "value": f"urn:oid:{STUDY_UID}",
    }
    assert report["effectiveDateTime"] == "2024-05-01"
    assert report["issued"] == "2024-05-01T12:31:05.250000Z"
    job, accession = report["identifier"]
    assert job == {"system": "urn:preread:job", "value": "7f9c2a4e-job"}
    assert codings(accession["type"]) == {("http://terminology.hl7.org/CodeSystem/v2-0203", "ACSN")}
    assert accession["value"] == "ACC-7"
    assert report["conclusion"] == (
        "AI pre-read (preliminary, not verified by a radiologist): 2 lung nodules found by "
        "PreRead Lung Nodule UNet 1.4.2: 14.0 mm left lung; 10.0 mm right lung."
    )
    assert codings(report["conclusionCode"][0]) == {(SNOMED, "27925004")}


def test_no_findings() -> None:
    bundle = bundle_json(make_report(()))
    report = the(bundle, "DiagnosticReport")
    assert report["conclusion"] == (
        "AI pre-read (preliminary, not verified by a radiologist): no lung nodule was found by "
        "PreRead Lung Nodule UNet 1.4.2."
    )
    assert "result" not in report
    assert "conclusionCode" not in report
    assert resources(bundle, "Observation") == []


def test_observations() -> None:
    bundle = bundle_json(make_report())
    left, right = resources(bundle, "Observation")
    for obs, finding in ((left, LEFT), (right, RIGHT)):
        assert obs["status"] == "preliminary"
        assert codings(obs["category"][0]) == {
            ("http://terminology.hl7.org/CodeSystem/observation-category", "imaging")
        }
        assert codings(obs["code"]) == {(SNOMED, "27925004")}
        assert obs["subject"] == the(bundle, "DiagnosticReport")["subject"]
        assert obs["issued"] == "2024-05-01T12:31:05.250000Z"
        assert obs["note"] == [{"text": AI_NOTICE}]
        uid, tracking = obs["identifier"]
        assert (uid["system"], uid["value"]) == ("urn:dicom:uid", f"urn:oid:{finding.tracking_uid}")
        assert tracking["value"] == finding.tracking_id
    assert codings(left["bodySite"]) == {(SNOMED, "44029006")}
    assert left["bodySite"]["text"] == "left lung"
    assert codings(right["bodySite"]) == {(SNOMED, "3341006")}

    measured = components(left)
    quantities = {code: c["valueQuantity"] for code, c in measured.items() if "valueQuantity" in c}
    assert {code: (q["value"], q["system"], q["code"]) for code, q in quantities.items()} == {
        "103339001": (14.0, UCUM, "mm"),
        "118565006": (1436.8, UCUM, "mm3"),
        "112031": (-35.3, UCUM, "[hnsf'U]"),
        "111012": (97.31, UCUM, "%"),
    }
    assert codings(measured["112031"]["code"]) == {(DCM, "112031")}
    assert codings(measured["111012"]["code"]) == {(DCM, "111012")}
    assert measured["Center (DICOM patient LPS, mm)"]["valueString"] == "99.70, -15.50, -145.60"
    assert components(right)["103339001"]["valueQuantity"]["value"] == 10.0


def test_untyped_findings_have_no_type_and_no_lung_rads_sizes() -> None:
    for obs in resources(bundle_json(make_report()), "Observation"):
        systems = {c["system"] for comp in obs["component"] for c in comp["code"].get("coding", [])}
        assert systems == {SNOMED, DCM}  # no RadLex, no PreRead code
        texts = {comp["code"].get("text") for comp in obs["component"]}
        assert not texts & {"Nodule type", "Short axis", "Axial long axis"}


def test_typed_findings_carry_their_type_and_lung_rads_sizes() -> None:
    bundle = bundle_json(make_report(TYPED))
    observations = resources(bundle, "Observation")
    expected_sizes = {  # code: (system, value) for each finding; absent when not given
        1: {
            "AXIAL-LONG-AXIS": (PRERD, 13.2),
            "103340004": (SNOMED, 11.05),
            "RID50155": (RADLEX, 12.1),
        },
        2: {
            "AXIAL-LONG-AXIS": (PRERD, 9.46),
            "103340004": (SNOMED, 7.2),
            "RID50155": (RADLEX, 8.3),
            "SOLID-LONG-AXIS": (PRERD, 4.13),
        },
        3: {"AXIAL-LONG-AXIS": (PRERD, 7.5), "103340004": (SNOMED, 6.0), "RID50155": (RADLEX, 6.8)},
    }
    expected_type = {1: "RID50151", 2: "RID50152", 3: "RID50153"}
    assert len(observations) == 3
    for obs, finding in zip(observations, TYPED, strict=True):
        measured = components(obs)
        sizes = {
            code: (c["code"]["coding"][0]["system"], c["valueQuantity"]["value"])
            for code, c in measured.items()
            if code in {"AXIAL-LONG-AXIS", "103340004", "RID50155", "SOLID-LONG-AXIS"}
        }
        assert sizes == expected_sizes[finding.label]
        for code in sizes:
            quantity = measured[code]["valueQuantity"]
            assert (quantity["system"], quantity["code"], quantity["unit"]) == (UCUM, "mm", "mm")
        kind = measured["RID46010"]
        assert codings(kind["code"]) == {(RADLEX, "RID46010")}
        assert codings(kind["valueCodeableConcept"]) == {(RADLEX, expected_type[finding.label])}
        assert kind["valueCodeableConcept"]["text"] == finding.nodule_type
        # the 3-D long axis is still there, under its own code
        assert measured["103339001"]["valueQuantity"]["value"] == round(finding.long_axis_mm, 2)


def test_unknown_side_is_the_lung() -> None:
    bundle = bundle_json(make_report((LEFT.model_copy(update={"lung_side": None}),)))
    (obs,) = resources(bundle, "Observation")
    assert codings(obs["bodySite"]) == {(SNOMED, "39607008")}
    assert "14.0 mm lung, side not determined" in the(bundle, "DiagnosticReport")["conclusion"]


def test_device() -> None:
    bundle = bundle_json(make_report())
    device = the(bundle, "Device")
    assert device["deviceName"] == [{"name": MODEL.name, "type": "model-name"}]
    assert device["manufacturer"] == MANUFACTURER
    assert device["type"]["text"] == "AI model"
    assert device["version"] == [
        {"value": "1.4.2"},
        {"type": {"text": "sha256"}, "value": MODEL.sha256},
    ]
    assert {"system": "urn:preread:model", "value": MODEL.id} in device["identifier"]
    assert device["property"][0]["valueCode"][0]["text"] == "CPUExecutionProvider"


def test_every_resource_is_tagged_ai_asserted() -> None:
    bundle = bundle_json(make_report())
    for resource in [bundle, *(e["resource"] for e in bundle["entry"])]:
        assert AIAST in tags(resource), resource["resourceType"]


def test_references_resolve_within_the_bundle() -> None:
    bundle = bundle_json(make_report())
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(set(urls)) == len(urls)
    assert all(url.startswith("urn:uuid:") for url in urls)
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    results = [r["reference"] for r in the(bundle, "DiagnosticReport")["result"]]
    assert [by_url[r]["resourceType"] for r in results] == ["Observation", "Observation"]
    assert results == [url for url, r in by_url.items() if r["resourceType"] == "Observation"]
    for obs in resources(bundle, "Observation"):
        assert by_url[obs["device"]["reference"]]["resourceType"] == "Device"


def test_deterministic() -> None:
    report = make_report()
    assert fhir_json(report) == fhir_json(make_report())
    other = bundle_json(replace(report, job_id="another-job"))
    mine = bundle_json(report)
    assert mine["identifier"] != other["identifier"]
    assert not {e["fullUrl"] for e in mine["entry"]} & {e["fullUrl"] for e in other["entry"]}


@pytest.mark.parametrize(
    ("pn", "display"),
    [
        ("O'Brien^Séan", "Séan O'Brien"),
        ("Doe^John^Q^Dr.^Jr.", "Dr. John Q Doe Jr."),
        ("Yamada^Tarou=山田^太郎=やまだ^たろう", "Tarou Yamada"),
        ("Anonymous", "Anonymous"),
    ],
)
def test_patient_display(pn: str, display: str) -> None:
    subject = the(bundle_json(make_report(patient_name=pn)), "DiagnosticReport")["subject"]
    assert subject["display"] == display


def test_no_patient_name_no_display() -> None:
    subject = the(bundle_json(make_report(patient_name="")), "DiagnosticReport")["subject"]
    assert "display" not in subject


def test_issuer_oid_and_local_issuer() -> None:
    oid = the(bundle_json(make_report(issuer_of_patient_id="1.2.840.99999.7")), "DiagnosticReport")
    assert oid["subject"]["identifier"]["system"] == "urn:oid:1.2.840.99999.7"
    local = the(bundle_json(make_report(issuer_of_patient_id="MAIN HOSP")), "DiagnosticReport")
    assert local["subject"]["identifier"]["system"] == "urn:preread:tenant:st-elsewhere:patient-id"
    assert local["subject"]["identifier"]["assigner"] == {"display": "MAIN HOSP"}


def test_optional_study_tags_may_be_absent() -> None:
    report = the(
        bundle_json(make_report(study_date="", study_time="", accession_number="")),
        "DiagnosticReport",
    )
    assert "effectiveDateTime" not in report
    assert [i["system"] for i in report["identifier"]] == ["urn:preread:job"]


def test_finished_at_is_given_in_utc() -> None:
    cet = timezone(timedelta(hours=2))
    report = replace(make_report(), finished_at=datetime(2024, 5, 1, 14, 31, 5, tzinfo=cet))
    assert bundle_json(report)["timestamp"] == "2024-05-01T12:31:05Z"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"patient_id": ""}, "patient_id"),
        ({"patient_id": "   "}, "patient_id"),
        ({"tenant": ""}, "tenant"),
        ({"study_date": "2024-05-01"}, "study_date"),
        ({"study_date": "20240231"}, "study_date"),
        ({"study_instance_uid": "not-a-uid"}, "study_instance_uid"),
    ],
)
def test_bad_study_tags(change: dict[str, str], field: str) -> None:
    with pytest.raises(ReportError, match=field):
        to_fhir_bundle(make_report(**change))


def test_bad_report_fields() -> None:
    with pytest.raises(ReportError, match="job_id"):
        fhir_json(replace(make_report(), job_id=""))
    with pytest.raises(ReportError, match="finished_at"):
        fhir_json(replace(make_report(), finished_at=datetime(2024, 5, 1, 12, 31)))
    twin = RIGHT.model_copy(update={"tracking_uid": LEFT.tracking_uid})
    with pytest.raises(ReportError, match="tracking_uid"):
        fhir_json(make_report((LEFT, twin)))


def test_fhir_validation_errors_become_report_errors_naming_the_resource() -> None:
    report = make_report()
    unnamed = replace(
        report,
        preread=report.preread.model_copy(update={"model": MODEL.model_copy(update={"name": ""})}),
    )
    with pytest.raises(ReportError, match="Device") as caught:
        fhir_json(unnamed)
    assert isinstance(caught.value.__cause__, ValidationError)
