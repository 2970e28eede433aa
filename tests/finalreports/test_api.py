"""``POST /api/v1/final-reports`` (a FHIR DiagnosticReport) and ``GET /api/v1/discrepancies``
on the real app, job store, tokens and grants (``tests/api/conftest.py``)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.detectedissue import DetectedIssue

from preread.audit import AuditAction, AuditLog, Outcome
from preread.finalreports import FinalReportStore
from tests.api.conftest import Api, finding

URL = "/api/v1/final-reports"
ACSN = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]}


def resource(accession: str, text: str | None = None, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "24627-2"}], "text": "CT chest"},
        "identifier": [
            {"system": "urn:oid:1.2.3", "value": "order-1"},
            {"type": ACSN, "value": accession},
        ],
        "conclusion": "IMPRESSION: see findings.",
    }
    if text is not None:
        data = base64.b64encode(text.encode("utf-8")).decode("ascii")
        body["presentedForm"] = [
            {"contentType": "application/pdf", "data": base64.b64encode(b"%PDF").decode()},
            {"contentType": "text/plain; charset=utf-8", "data": data},
        ]
    body.update(changes)
    return body


def receipts(api: Api) -> list[Any]:
    return [
        r.event
        for r in AuditLog(api.store.engine).records()
        if r.event.action is AuditAction.FINAL_REPORT_RECEIVE
    ]


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_a_report_is_stored_matched_and_corrected(api: Api) -> None:
    facts, _ = api.study("hosp-a", (finding(1, "right", 9.0),))
    accession = facts.accession_number
    writer = api.token("hosp-a", "reports:write")
    text = "右肺上叶见一实性结节，大小约9mm×7mm。"
    first = api.client.post(URL, json=resource(accession, text), headers=writer)
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["version"], body["status"], body["study_instance_uid"]) == (
        1,
        "final",
        facts.study_instance_uid,
    )
    assert body["summary"] == {"nodules": 1, "largest_mm": 9.0, "nodule_ge6mm": True}
    assert body["mentions"][0]["lobe"] == "RUL" and body["mentions"][0]["nodule_type"] == "solid"
    again = api.client.post(
        URL, json=resource(accession, status="amended", conclusion="No nodules."), headers=writer
    )
    assert again.status_code == 200, again.text
    assert (again.json()["version"], again.json()["status"]) == (2, "corrected")
    assert again.json()["id"] == body["id"] and again.json()["summary"]["nodules"] == 0
    theirs = api.client.post(URL, json=resource(accession), headers=api.token("hosp-b", "admin"))
    assert theirs.status_code == 201 and theirs.json()["study_instance_uid"] is None
    events = receipts(api)
    assert [(e.tenant, e.study_instance_uid, e.outcome) for e in events] == [
        ("hosp-a", facts.study_instance_uid, Outcome.SUCCESS),
        ("hosp-a", facts.study_instance_uid, Outcome.SUCCESS),
        ("hosp-b", None, Outcome.SUCCESS),
    ]
    assert events[0].detail["route"] == "post_final_report" and events[0].purpose == (
        "clinical-preread"
    )
    assert all(accession not in repr(e.detail) for e in events)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_bad_resources_are_422_naming_the_problem(api: Api) -> None:
    writer = api.token("hosp-a", "reports:write")
    bad_text = [{"contentType": "text/plain", "data": base64.b64encode(b"\xff\xfe").decode()}]
    cases = [
        (resource("A1", identifier=[{"value": "A1"}]), "no identifier of type ACSN"),
        (resource("A1", status="preliminary"), "DiagnosticReport.status is 'preliminary'"),
        (resource("A1", conclusion=None), "no report text"),
        (resource("A1", presentedForm=bad_text, conclusion=None), "presentedForm[0].data is not"),
        (resource("A1", presentedForm=[{"data": "!!notb64"}]), "presentedForm.0.data: Base64"),
        (resource("A1", code=None), "DiagnosticReport.code"),
        (resource("A1", resourceType="Patient"), "resourceType"),
        (resource("A1", conclusion="8 mm nodule\x00"), "NUL byte"),
        (resource("A" * 65), "over 64 characters"),
    ]
    for body, words in cases:
        body = {k: v for k, v in body.items() if v is not None}
        answer = api.client.post(URL, json=body, headers=writer)
        assert answer.status_code == 422, (words, answer.text)
        assert words in answer.text, (words, answer.text)
    assert FinalReportStore(api.store).list("hosp-a") == [] and receipts(api) == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_scope_and_a_grant_are_needed(api: Api) -> None:
    reader = api.client.post(URL, json=resource("A1"), headers=api.token("hosp-a"))
    assert reader.status_code == 403 and "reports:write" in reader.text
    no_grant = api.client.post(URL, json=resource("A1"), headers=api.token("nobody", "admin"))
    assert no_grant.status_code == 403 and "no valid clinical-preread grant" in no_grant.text
    refused = [
        r.event
        for r in AuditLog(api.store.engine).records()
        if r.event.action is AuditAction.ACCESS_REFUSED
    ]
    assert [(e.tenant, e.detail["route"]) for e in refused] == [("nobody", "post_final_report")]
    assert FinalReportStore(api.store).list("nobody") == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_discrepancy_list_in_json_and_fhir(api: Api) -> None:
    writer = api.token("hosp-a", "reports:write")
    studies = {
        "ai-only": (api.study("hosp-a", (finding(1, "right", 9.0),))[0], "No pulmonary nodules."),
        "report-only": (api.study("hosp-a", ())[0], "12 mm nodule in the left lower lobe."),
        "size": (api.study("hosp-a", (finding(1, "right", 8.0),))[0], "RUL nodule, 14 mm."),
        "none": (api.study("hosp-a", (finding(1, "left", 7.0),))[0], "7 mm LUL nodule."),
    }
    for facts, text in studies.values():
        answer = api.client.post(URL, json=resource(facts.accession_number, text), headers=writer)
        assert answer.status_code == 201, answer.text
    b_facts, _ = api.study("hosp-b", (finding(1, "right", 9.0),))
    b_writer = api.token("hosp-b", "reports:write")
    api.client.post(URL, json=resource(b_facts.accession_number, "No nodules."), headers=b_writer)
    pending = api.client.post(URL, json=resource("LATER-1", "No nodules."), headers=writer)
    assert pending.json()["study_instance_uid"] is None

    reader = api.token("hosp-a")
    listed = api.client.get("/api/v1/discrepancies", headers=reader)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["counts"] == {
        "reports": 5,
        "compared": 4,
        "unmatched": 1,
        "awaiting_ai": 0,
        "with_discrepancies": 3,
        "discrepancies": 3,
    }
    got = {item["study_instance_uid"]: item for item in body["items"]}
    for kind in ("ai-only", "report-only", "size"):
        item = got[studies[kind][0].study_instance_uid]
        assert [d["kind"] for d in item["discrepancies"]] == [kind]
        assert item["accession_number"] == studies[kind][0].accession_number
    assert got[studies["size"][0].study_instance_uid]["discrepancies"][0]["ai"]["long_axis_mm"] == 8
    assert b_facts.study_instance_uid not in listed.text

    fhir = api.client.get("/api/v1/discrepancies?format=fhir", headers=reader)
    assert fhir.status_code == 200 and fhir.headers["content-type"] == "application/fhir+json"
    bundle = Bundle.model_validate_json(fhir.content)
    assert bundle.type == "collection" and bundle.entry is not None
    issues = [
        DetectedIssue.model_validate_json(e.resource.model_dump_json())
        for e in bundle.entry
        if e.resource
    ]
    codes = []
    for issue in issues:
        assert issue.code is not None and issue.code.coding and issue.implicated
        codes.append(str(issue.code.coding[0].code))
        study_ref = issue.implicated[0]
        assert study_ref.type == "ImagingStudy" and study_ref.identifier is not None
        assert study_ref.identifier.system == "urn:dicom:uid"
        assert issue.status == "preliminary" and issue.detail
    assert sorted(codes) == ["ai-only", "report-only", "size"]
    assert api.client.get("/api/v1/discrepancies?format=csv", headers=reader).status_code == 422
    theirs = api.client.get("/api/v1/discrepancies", headers=api.token("hosp-b")).json()
    assert [i["study_instance_uid"] for i in theirs["items"]] == [b_facts.study_instance_uid]
