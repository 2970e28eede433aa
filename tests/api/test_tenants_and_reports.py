"""Studies, jobs and reports as a tenant sees them: every format, every filter, and another
tenant's ids answering exactly like missing ones on every route that takes an id."""

from __future__ import annotations

import json
import time

from fhir.resources.R4B.bundle import Bundle
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from preread.store import (
    JobOutputs,
    JobState,
    JobStore,
    JobUpdate,
    StoredObject,
    StudyFingerprint,
)
from tests.api.conftest import MODEL, Api, finding


def test_a_client_sees_only_its_tenants_studies(api: Api) -> None:
    a_facts, a_job = api.study("hosp-a", (finding(1, "left", 12.0),))
    api.study("hosp-a")  # no findings
    b_facts, _ = api.study("hosp-b", (finding(1, "right", 8.0),))
    api.study(None, done=False)  # a sender of no tenant: nobody sees it
    a = api.token("hosp-a")
    listing = api.client.get("/api/v1/studies", headers=a).json()
    uids = {s["study_instance_uid"] for s in listing["items"]}
    assert a_facts.study_instance_uid in uids and b_facts.study_instance_uid not in uids
    assert listing["total"] == 2
    item = next(
        s for s in listing["items"] if s["study_instance_uid"] == a_facts.study_instance_uid
    )
    assert item["patient_id"] == a_facts.patient_id and item["has_findings"] is True
    assert item["jobs"][0]["id"] == a_job.id and item["jobs"][0]["state"] == "done"
    b = api.token("hosp-b")
    b_uids = {
        s["study_instance_uid"]
        for s in api.client.get("/api/v1/studies", headers=b).json()["items"]
    }
    assert b_uids == {b_facts.study_instance_uid}


def test_filters(api: Api) -> None:
    with_findings, _ = api.study("hosp-a", (finding(1, "left", 12.0),))
    without, _ = api.study("hosp-a")
    queued, _ = api.study("hosp-a", done=False)
    a = api.token("hosp-a")

    def uids(**params: object) -> set[str]:
        answer = api.client.get("/api/v1/studies", params=params, headers=a)
        assert answer.status_code == 200, answer.text
        return {s["study_instance_uid"] for s in answer.json()["items"]}

    w, wo, q = (f.study_instance_uid for f in (with_findings, without, queued))
    assert uids(has_findings=True) == {w}
    assert uids(has_findings=False) == {wo}
    assert uids(state="queued") == {q}
    assert uids(state=["done", "queued"]) == {w, wo, q}
    day = with_findings.study_date
    iso = f"{day[:4]}-{day[4:6]}-{day[6:]}"
    assert uids(study_date_from=iso, study_date_to=iso) == {w}
    assert uids(model_id="no-such-model") == set()
    page = api.client.get("/api/v1/studies", params={"limit": 1}, headers=a).json()
    assert len(page["items"]) == 1 and page["total"] == 3
    bad = api.client.get("/api/v1/studies", params={"study_date_from": "yesterday"}, headers=a)
    assert bad.status_code == 422 and "study_date_from" in bad.text


def test_every_report_format(api: Api) -> None:
    facts, job = api.study("hosp-a", (finding(1, "left", 12.0), finding(2, "right", 7.5)))
    a = api.token("hosp-a")
    base = f"/api/v1/studies/{facts.study_instance_uid}"

    as_json = api.client.get(f"{base}/report/json", headers=a)
    assert as_json.headers["content-type"] == "application/json"
    doc = as_json.json()
    assert doc["model"]["version"] == "1.0.0" and doc["provider"] == "CPUExecutionProvider"
    assert doc["status"] == "preliminary" and len(doc["findings"]) == 2
    assert api.client.get(f"{base}/preread", headers=a).json() == doc

    fhir = api.client.get(f"{base}/report/fhir", headers=a)
    assert fhir.headers["content-type"].startswith("application/fhir+json")
    bundle = Bundle.model_validate_json(fhir.content)  # the third-party FHIR models
    resources = [e.resource for e in bundle.entry or [] if e.resource is not None]
    kinds = [r.get_resource_type() for r in resources]
    assert kinds.count("DiagnosticReport") == 1 and kinds.count("Observation") == 2
    report = next(r for r in resources if r.get_resource_type() == "DiagnosticReport")
    assert report.model_dump()["status"] == "preliminary"

    hl7 = api.client.get(f"{base}/report/hl7", headers=a)
    assert hl7.headers["content-type"].startswith("x-application/hl7-v2+er7")
    message = parse_message(hl7.text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert message.validate()
    obr = hl7.text.split("\r")[2].split("|")
    assert obr[0] == "OBR" and obr[25] == "P"

    html = api.client.get(f"{base}/report/html", headers=a)
    assert html.headers["content-type"].startswith("text/html")
    assert "AI-generated, preliminary" in html.text and "12.0" in html.text
    assert "DOE, JANE" in html.text

    negotiated = {
        "application/fhir+json": "application/fhir+json",
        "x-application/hl7-v2+er7": "x-application/hl7-v2+er7",
        "text/html, application/json;q=0.5": "text/html",
        "application/json;q=0.2, application/fhir+json;q=0.9": "application/fhir+json",
        "*/*": "application/json",
    }
    for accept, media in negotiated.items():
        answer = api.client.get(f"{base}/report", headers={**a, "Accept": accept})
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(media), (
            accept
        )
    by_query = api.client.get(f"{base}/report", params={"format": "hl7"}, headers=a)
    assert by_query.text.startswith("MSH|")
    refused = api.client.get(f"{base}/report", headers={**a, "Accept": "image/png"})
    assert refused.status_code == 406
    assert job.id in api.client.get(f"/api/v1/jobs/{job.id}", headers=a).text


def test_report_of_a_study_not_read_yet_says_why(api: Api) -> None:
    facts, job = api.study("hosp-a", done=False)
    a = api.token("hosp-a")
    answer = api.client.get(f"/api/v1/studies/{facts.study_instance_uid}/report", headers=a)
    assert answer.status_code == 404
    assert f"job {job.id} is queued" in answer.json()["detail"]


def test_another_tenants_ids_answer_like_missing_ones_on_every_route(api: Api) -> None:
    b_facts, b_job = api.study("hosp-b", (finding(1, "right", 9.0),))
    hook_b = api.client.post(
        "/api/v1/webhooks",
        json={"url": "https://b.example.org/hook"},
        headers=api.token("hosp-b", "webhooks:manage"),
    ).json()
    a = api.token("hosp-a", "admin")
    missing_uid = "1.2.3.4.5.6.7.8.9"
    missing_job = "00000000-0000-0000-0000-000000000000"
    missing_hook = "11111111-1111-1111-1111-111111111111"
    pairs = [
        ("GET", "/api/v1/studies/{}", b_facts.study_instance_uid, missing_uid),
        ("GET", "/api/v1/studies/{}/report", b_facts.study_instance_uid, missing_uid),
        ("GET", "/api/v1/studies/{}/preread", b_facts.study_instance_uid, missing_uid),
        *[
            ("GET", f"/api/v1/studies/{{}}/report/{fmt}", b_facts.study_instance_uid, missing_uid)
            for fmt in ("json", "fhir", "hl7", "html", "sr", "seg")
        ],
        ("POST", "/api/v1/studies/{}/analyze", b_facts.study_instance_uid, missing_uid),
        ("GET", "/api/v1/jobs/{}", b_job.id, missing_job),
        ("GET", "/api/v1/webhooks/{}", hook_b["id"], missing_hook),
        ("GET", "/api/v1/webhooks/{}/deliveries", hook_b["id"], missing_hook),
        ("POST", "/api/v1/webhooks/{}/disable", hook_b["id"], missing_hook),
        (
            "POST",
            f"/api/v1/webhooks/{{}}/deliveries/msg_{'0' * 32}/redeliver",
            hook_b["id"],
            missing_hook,
        ),
        ("DELETE", "/api/v1/webhooks/{}", hook_b["id"], missing_hook),
    ]
    for method, template, theirs, missing in pairs:
        other = api.client.request(method, template.format(theirs), headers=a)
        absent = api.client.request(method, template.format(missing), headers=a)
        assert other.status_code == 404, (template, other.text)
        assert absent.status_code == 404, (template, absent.text)
        assert other.json()["detail"].replace(theirs, "ID") == absent.json()["detail"].replace(
            missing, "ID"
        ), template
    # and B still has all of it
    b = api.token("hosp-b", "admin")
    assert api.client.get(f"/api/v1/webhooks/{hook_b['id']}", headers=b).status_code == 200
    report = api.client.get(f"/api/v1/studies/{b_facts.study_instance_uid}/report", headers=b)
    assert report.status_code == 200
    assert json.loads(report.text)["findings"][0]["lung_side"] == "right"


def test_models_card_and_evaluation(api: Api) -> None:
    m = api.token("hosp-a", "models:read")
    listed = api.client.get("/api/v1/models", headers=m).json()
    assert {"id": "lung-nodule", "version": "1.0.0"}.items() <= listed[0].items()
    detail = api.client.get("/api/v1/models/lung-nodule/1.0.0", headers=m).json()
    assert detail["card"]["id"] == "lung-nodule" and detail["evaluation"]
    # PREREAD_MODELS names lung-nodule: its newest version reads, the others are candidates
    stages = {entry["version"]: entry["stage"] for entry in listed}
    newest = max(stages, key=lambda v: tuple(int(p) for p in v.split(".")))
    assert stages.pop(newest) == "active" and set(stages.values()) == {"candidate"}
    assert detail["stage"] == "candidate" and detail["lifecycle"]["promotion_gate"] is None
    assert api.client.get("/api/v1/models/lung-nodule/9.9.9", headers=m).status_code == 404


def test_operations_endpoints(api: Api) -> None:
    api.study("hosp-a", done=False)
    a = api.token("hosp-a")
    uid_listing = api.client.get("/api/v1/studies", headers=a).json()
    uid = uid_listing["items"][0]["study_instance_uid"]
    api.client.get(f"/api/v1/studies/{uid}", headers=a)
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok"}
    metrics = api.client.get("/metrics").text
    assert 'preread_jobs{state="queued"} 1.0' in metrics
    assert "preread_queue_depth 1.0" in metrics
    assert 'route="/api/v1/studies/{study_uid}"' in metrics
    assert uid not in metrics  # templates, never identifiers

    def broken() -> None:
        raise ConnectionError("down")

    api.services.ready_checks = {"database": broken}
    down = api.client.get("/readyz")
    assert down.status_code == 503 and down.json()["checks"]["database"].startswith("failed")


def test_a_cached_report_follows_a_new_reading_at_once(api: Api, db_url: str) -> None:
    """Reports are served from memory once read; a new reading of the study — committed by this
    process or, on PostgreSQL, by another one — is what the next request gets."""
    facts, first = api.study("hosp-a", (finding(1, "left", 12.0),))
    a = api.token("hosp-a")
    url = f"/api/v1/studies/{facts.study_instance_uid}/report/json"
    assert len(api.client.get(url, headers=a).json()["findings"]) == 1
    assert len(api.client.get(url, headers=a).json()["findings"]) == 1  # from memory now
    postgres = db_url.startswith("postgresql")
    assert api.services.views is not None
    assert (api.services.views.size > 0) == postgres
    # another process (its own engine) reads the grown study again and finishes with 2 findings
    with JobStore.create(db_url) as other:
        grown = other.enqueue(
            facts.study_instance_uid, facts.orthanc_study_id, MODEL, StudyFingerprint(12, "y")
        )
        assert grown.superseded is not None and grown.superseded.id == first.id
        job = grown.job
        other.claim(job.id, "w2", 60)
        other.advance(job.id, "w2", JobState.INFERRING)
        outputs = JobOutputs(
            sr=StoredObject("1.2.3.1", "1.2.3.2"), seg=StoredObject("1.2.3.3", "1.2.3.4")
        )
        other.advance(job.id, "w2", JobState.WRITING, JobUpdate(outputs=outputs))
        result = dict(first.result or {})
        result["findings"] = [*result["findings"], {**result["findings"][0], "label": 2}]
        other.finish_done(job.id, "w2", result)
    deadline = time.monotonic() + 10
    while len(api.client.get(url, headers=a).json()["findings"]) != 2:
        assert time.monotonic() < deadline, "the cached report was not replaced"
        time.sleep(0.05)
