"""A study's reviews for hospital systems: ``GET /api/v1/studies/{uid}/reviews`` (newest first,
tenant-scoped) and the review in the JSON, FHIR and HL7 reports, fresh after every signature
even though reports are cached."""

from __future__ import annotations

from datetime import UTC, datetime

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.provenance import Provenance
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from preread.audit import AuditLog
from preread.reviews import (
    Accepted,
    Assessment,
    Modified,
    Rejected,
    RejectReason,
    ReviewDraft,
    Reviewer,
    ReviewStore,
    review_target,
)
from tests.api.conftest import Api, finding
from tests.reviews.test_domain import added

READER = Reviewer("user-3", "Dr Rosalind Franklin", "hosp-a")


def test_reviews_in_the_listing_and_every_report_format(api: Api) -> None:
    facts, job = api.study("hosp-a", (finding(1, "left", 12.0), finding(2, "right", 7.5)))
    uid = facts.study_instance_uid
    a, b = api.token("hosp-a"), api.token("hosp-b")
    base = f"/api/v1/studies/{uid}"
    assert api.client.get(f"{base}/reviews", headers=a).json() == []
    unreviewed = api.client.get(f"{base}/report/json", headers=a).json()
    assert unreviewed["review"] is None
    unreviewed_fhir = api.client.get(f"{base}/report/fhir", headers=a).text  # cached now
    assert "not verified by a radiologist" in unreviewed_fhir

    study = api.store.study(uid)
    assert study is not None
    target = review_target(study, job)
    one, two = target.findings
    reviews = ReviewStore(api.store)
    first = reviews.sign(
        target,
        READER,
        ReviewDraft(
            (
                Assessment(one.tracking_uid, 1, Accepted()),
                Assessment(two.tracking_uid, 2, Rejected(RejectReason.LYMPH_NODE, "hilar")),
            ),
            (added(uid=None),),
        ),
        replaces=None,
        at=datetime(2025, 2, 1, 9, 0, tzinfo=UTC),
        audit=AuditLog(api.store.engine),
        grant_id="g",
    )
    second = reviews.sign(
        target,
        READER,
        ReviewDraft(
            (
                Assessment(one.tracking_uid, 1, Modified("part-solid", 13.0, 11.0)),
                Assessment(two.tracking_uid, 2, Rejected(RejectReason.LYMPH_NODE, "hilar")),
            ),
            (added(uid=None),),
        ),
        replaces=first.id,
        at=datetime(2025, 2, 1, 10, 0, tzinfo=UTC),
        audit=AuditLog(api.store.engine),
        grant_id="g",
    )

    listed = api.client.get(f"{base}/reviews", headers=a)
    assert listed.status_code == 200, listed.text
    out = listed.json()
    assert [(r["id"], r["version"], r["current"]) for r in out] == [
        (second.id, 2, True),
        (first.id, 1, False),
    ]
    assert out[0]["supersedes"] == first.id and out[0]["reviewer"]["name"] == READER.name
    assert [(x["label"], x["assessment"]) for x in out[0]["assessments"]] == [
        (1, "modified"),
        (2, "rejected"),
    ]
    assert out[0]["assessments"][1]["reason"] == "lymph-node"
    assert out[0]["added"][0]["reader_placed"] is True
    assert api.client.get(f"{base}/reviews", headers=b).status_code == 404

    # every report shows the current review, although the unreviewed ones were cached
    doc = api.client.get(f"{base}/report/json", headers=a).json()
    assert doc["review"]["id"] == second.id and doc["status"] == "preliminary"
    assert api.client.get(f"{base}/preread", headers=a).json() == doc
    fhir = api.client.get(f"{base}/report/fhir", headers=a)
    bundle = Bundle.model_validate_json(fhir.content)
    resources = [e.resource for e in bundle.entry or [] if e.resource is not None]
    report = next(r for r in resources if isinstance(r, DiagnosticReport))
    assert report.status == "preliminary"
    assert report.resultsInterpreter is not None
    assert report.resultsInterpreter[0].display == READER.name
    assert "Reviewed by Dr Rosalind Franklin" in (report.conclusion or "")
    provenance = next(r for r in resources if isinstance(r, Provenance))
    assert provenance.entity is not None and provenance.entity[0].what.identifier is not None
    assert provenance.entity[0].what.identifier.value == first.id
    hl7 = api.client.get(f"{base}/report/hl7", headers=a).text
    message = parse_message(hl7, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert message.validate()
    assert "MODIFIED^Modified by reader^99PRERD" in hl7
    assert "59441001^Lymph Node^SCT" in hl7 and "|1.1|" in hl7 and "|R1|" in hl7
