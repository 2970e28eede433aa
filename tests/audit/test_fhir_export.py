"""Audit records as FHIR R4B AuditEvents and a collection Bundle, validated by fhir.resources.

Assertions read the JSON (as a receiving system would); the R4B models validate it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from fhir.resources.R4B.bundle import Bundle

from preread.audit import (
    GENESIS,
    AuditAction,
    AuditEvent,
    AuditLog,
    AuditRecord,
    Outcome,
    audit_bundle_json,
    to_audit_event,
)
from preread.audit.chain import Fields, link_hash
from tests.audit.conftest import STUDY, event, fill
from tests.store.conftest import FakeClock

AT = datetime(2025, 3, 1, 8, 0, 0, 250000, tzinfo=UTC)
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"


def record(e: AuditEvent, seq: int = 1, prev_hash: str = GENESIS) -> AuditRecord:
    return AuditRecord(e, seq, AT, prev_hash, link_hash(prev_hash, seq, e.fields(AT)))


def exported(e: AuditEvent, seq: int = 1, prev_hash: str = GENESIS) -> dict[str, Any]:
    """The AuditEvent of ``e`` as JSON, after the R4B model validated that JSON again."""
    raw = to_audit_event(record(e, seq, prev_hash)).model_dump_json()
    FhirAuditEvent.model_validate_json(raw)
    data: dict[str, Any] = json.loads(raw)
    return data


def chain_details(resource: dict[str, Any]) -> dict[str, str]:
    return {d["type"]: d["valueString"] for d in resource["entity"][-1]["detail"]}


def test_a_pixel_fetch_maps_to_dicom_instances_accessed() -> None:
    e = event(AuditAction.PIXELS_FETCH)
    resource = exported(e)
    assert resource["resourceType"] == "AuditEvent" and resource["id"] == "preread-audit-1"
    assert resource["type"] == {
        "system": DCM,
        "code": "110103",
        "display": "DICOM Instances Accessed",
    }
    assert (resource["action"], resource["outcome"]) == ("R", "0")
    assert "outcomeDesc" not in resource
    assert resource["recorded"] == "2025-03-01T08:00:00.250000Z"
    agent = resource["agent"][0]
    assert agent["requestor"] is True
    assert agent["who"]["identifier"]["value"] == "worker-1"
    assert agent["purposeOfUse"] == [
        {
            "coding": [{"system": ACT_REASON, "code": "TREAT", "display": "treatment"}],
            "text": "clinical-preread",
        }
    ]
    assert resource["source"]["observer"] == {"display": "PreRead"}
    study = resource["entity"][0]["what"]["identifier"]
    assert (study["system"], study["value"]) == ("urn:dicom:uid", f"urn:oid:{STUDY}")
    assert resource["entity"][1]["what"]["identifier"]["value"] == "tenant-a"
    details = chain_details(resource)
    assert details["seq"] == "1" and details["prev_hash"] == GENESIS
    assert details["hash"] == record(e).hash


@pytest.mark.parametrize(
    ("purpose", "code"),
    [("quality-review", "HQUALIMP"), ("model-training", "HRESCH"), ("research", "HRESCH")],
)
def test_purposes_map_to_v3_act_reason(purpose: str, code: str) -> None:
    coding = exported(event(purpose=purpose))["agent"][0]["purposeOfUse"][0]["coding"][0]
    assert (coding["system"], coding["code"]) == (ACT_REASON, code)


@pytest.mark.parametrize(
    ("outcome", "code"), [(Outcome.SUCCESS, "0"), (Outcome.REFUSED, "4"), (Outcome.FAILURE, "8")]
)
def test_outcomes(outcome: Outcome, code: str) -> None:
    assert exported(event(AuditAction.ACCESS_REFUSED, outcome=outcome))["outcome"] == code


def test_a_refusal_says_why() -> None:
    e = event(AuditAction.AUTH_FAILED, outcome=Outcome.REFUSED, study=None, reason="bad secret")
    resource = exported(e)
    assert resource["outcomeDesc"] == "bad secret"
    assert [c["code"] for c in resource["subtype"]] == ["110122", "auth.failed"]


@pytest.mark.parametrize("action", list(AuditAction))
def test_every_action_is_a_valid_audit_event(action: AuditAction) -> None:
    resource = exported(event(action, purpose=None, tenant=None, study=None))
    assert resource["action"] in {"C", "R", "U", "D", "E"}
    assert resource["type"]["system"] == DCM
    assert resource["subtype"][-1] == {"system": "urn:preread:audit-action", "code": action.value}
    assert len(resource["entity"]) == 1  # the chain record alone


def test_the_export_holds_what_recomputes_each_hash() -> None:
    e = event(AuditAction.EXPORT, count=3, ratio=0.5)
    resource = exported(e, seq=9, prev_hash="ab" * 32)
    details = chain_details(resource)
    fields = Fields(
        at=datetime.fromisoformat(resource["recorded"]),
        actor=resource["agent"][0]["who"]["identifier"]["value"],
        action=resource["subtype"][-1]["code"],
        outcome=e.outcome.value,
        tenant=resource["entity"][1]["what"]["identifier"]["value"],
        purpose=resource["agent"][0]["purposeOfUse"][0]["text"],
        study_instance_uid=resource["entity"][0]["what"]["identifier"]["value"].removeprefix(
            "urn:oid:"
        ),
        detail=json.loads(details["detail"]),
    )
    assert link_hash(details["prev_hash"], int(details["seq"]), fields) == details["hash"]


def test_the_bundle_validates(audit: AuditLog, clock: FakeClock) -> None:
    fill(audit, clock, 3)
    audit.record(event(AuditAction.GRANT_REVOKE, study=None, reason="consent withdrawn"))
    data = audit_bundle_json(audit.records(), timestamp=clock.now)
    Bundle.model_validate_json(data)
    bundle = json.loads(data)
    assert bundle["type"] == "collection" and bundle["timestamp"] == "2025-03-01T08:03:00Z"
    resources = [entry["resource"] for entry in bundle["entry"]]
    assert [r["id"] for r in resources] == [f"preread-audit-{n}" for n in range(1, 5)]
    assert len({entry["fullUrl"] for entry in bundle["entry"]}) == 4
    assert resources[-1]["action"] == "D" and resources[-1]["outcomeDesc"] == "consent withdrawn"
    assert audit_bundle_json(audit.records(), timestamp=clock.now) == data  # reproducible


def test_an_empty_bundle_validates() -> None:
    data = audit_bundle_json([])
    Bundle.model_validate_json(data)
    assert json.loads(data) == {"resourceType": "Bundle", "type": "collection"}


def test_detail_with_a_patient_key_is_refused() -> None:
    with pytest.raises(ValueError, match="patient identifiers"):
        event(AuditAction.EXPORT, PatientID="12345")
