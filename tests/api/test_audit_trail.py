"""Every access through the API is one audit record (who, tenant, purpose, study, action,
outcome); refusals and failed logins too; and a failed audit write stops the access."""

from __future__ import annotations

from sqlalchemy import text

from preread.audit import AuditAction, AuditLog, Outcome
from tests.api.conftest import Api, finding


def _records(api: Api) -> list[tuple[str, str, str | None, str | None, str | None]]:
    log = AuditLog(api.store.engine)
    return [
        (r.event.action.value, r.event.outcome.value, r.event.tenant, r.event.purpose,
         r.event.study_instance_uid)
        for r in log.records()
    ]  # fmt: skip


def test_reads_refusals_and_failed_logins_are_audited(api: Api) -> None:
    facts, job = api.study("hosp-a", (finding(1, "left", 10.0),))
    uid = facts.study_instance_uid
    clinical = api.token("hosp-a")
    before = len(_records(api))
    assert api.client.get(f"/api/v1/studies/{uid}/report/fhir", headers=clinical).status_code == 200
    assert api.client.get(f"/api/v1/studies/{uid}/report/fhir", headers=clinical).status_code == 200
    review = api.token("hosp-a", purpose="quality-review")
    assert api.client.get(f"/api/v1/studies/{uid}/report/json", headers=review).status_code == 403
    bad = api.client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "prc_x", "client_secret": "no"},
    )
    assert bad.status_code == 401
    assert (
        api.client.get("/api/v1/studies", headers={"Authorization": "Bearer x"}).status_code == 401
    )
    new = _records(api)[before:]
    reads = [r for r in new if r[0] == "report.read"]
    assert reads == [("report.read", "success", "hosp-a", "clinical-preread", uid)] * 2
    assert ("access.refused", "refused", "hosp-a", "quality-review", uid) in new
    assert [r[0] for r in new].count("auth.failed") == 2
    log = AuditLog(api.store.engine)
    detail = [
        r.event.detail
        for r in log.records(study_uid=uid)
        if r.event.action is AuditAction.REPORT_READ
    ]
    assert detail[0]["format"] == "fhir" and detail[0]["job_id"] == job.id and detail[0]["grant_id"]
    assert facts.patient_id not in str([r.event.detail for r in log.records()])
    assert log.verify().ok


def test_grant_changes_are_audited_with_the_change(api: Api) -> None:
    platform = api.token("platform", "grants:manage")
    created = api.client.post(
        "/api/v1/grants",
        json={"tenant": "hosp-a", "purpose": "research", "valid_from": "2025-01-01T00:00:00Z",
              "valid_to": "2030-01-01T00:00:00Z", "legal_basis": "IRB 42"},
        headers=platform,
    ).json()  # fmt: skip
    api.client.post(
        f"/api/v1/grants/{created['id']}/revoke", json={"reason": "done"}, headers=platform
    )
    log = AuditLog(api.store.engine)
    changes = [
        r.event
        for r in log.records()
        if r.event.action in (AuditAction.GRANT_CREATE, AuditAction.GRANT_REVOKE)
    ]
    mine = [e for e in changes if e.detail.get("grant_id") == created["id"]]
    assert [e.action for e in mine] == [AuditAction.GRANT_CREATE, AuditAction.GRANT_REVOKE]
    assert mine[0].actor.startswith("client:") and mine[0].detail["legal_basis"] == "IRB 42"
    assert all(e.outcome is Outcome.SUCCESS for e in mine)


def test_a_failed_audit_write_stops_the_read(api: Api, db_url: str) -> None:
    facts, _ = api.study("hosp-a", (finding(1, "left", 10.0),))
    clinical = api.token("hosp-a")
    url = f"/api/v1/studies/{facts.study_instance_uid}/report/json"
    with api.store.engine.begin() as conn:  # the audit table refuses new records from now on
        if db_url.startswith("postgresql"):
            conn.execute(text(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql"
            ))  # fmt: skip
            conn.execute(text(
                "CREATE TRIGGER refuse BEFORE INSERT ON audit_events "
                "FOR EACH ROW EXECUTE FUNCTION refuse()"
            ))  # fmt: skip
        else:
            conn.execute(text(
                "CREATE TRIGGER refuse BEFORE INSERT ON audit_events "
                "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            ))  # fmt: skip
    answer = api.client.get(url, headers=clinical)
    assert answer.status_code == 503
    assert "audit trail is unavailable" in answer.json()["detail"]
    assert "findings" not in answer.text
    # and a grant change whose record fails does not happen
    platform_headers = api.token("platform", "grants:manage")
    before = len(api.grants.list())
    made = api.client.post(
        "/api/v1/grants",
        json={"tenant": "hosp-a", "purpose": "research", "valid_from": "2025-01-01T00:00:00Z",
              "valid_to": "2030-01-01T00:00:00Z", "legal_basis": "IRB 43"},
        headers=platform_headers,
    )  # fmt: skip
    assert made.status_code == 503 and len(api.grants.list()) == before
