"""Final reports stored (SQLite and PostgreSQL): one per tenant and accession number, versions,
matching to the tenant's study (now or when listed later), the comparison with the AI's
current, non-shadow reading, and the receipt's audit record."""

from __future__ import annotations

from preread.audit import AuditAction, AuditLog
from preread.finalreports import FinalReportStore, IncomingReport, receive, tenant_comparisons
from preread.finalreports.records import Channel, ReportStatus
from preread.finalreports.worklist import ComparisonState
from preread.store import JobStore, StudyFingerprint
from tests.finalreports.conftest import MODEL, done_study, finding, finish, study


def incoming(
    accession: str, text: str, status: ReportStatus = ReportStatus.FINAL
) -> IncomingReport:
    return IncomingReport(accession, text, status, Channel.FHIR, "client-1")


def test_reports_are_versioned_matched_and_compared(
    store: JobStore, reports: FinalReportStore
) -> None:
    early = receive(
        reports, "hosp-a", incoming("ACC-1", "9 mm RUL nodule."), actor="client:c", purpose="x"
    )
    assert early.created and early.report.version == 1 and early.report.study_instance_uid is None
    facts, job = done_study(store, "hosp-a", "ACC-1", (finding(1, 9.0),))
    done_study(store, "hosp-b", "ACC-2", (finding(1, 7.0),))  # another tenant's accession
    other = receive(
        reports, "hosp-a", incoming("ACC-2", "No nodules."), actor="client:c", purpose="x"
    )
    assert other.report.study_instance_uid is None  # hosp-b's study is never hosp-a's
    fixed = receive(
        reports,
        "hosp-a",
        incoming("ACC-1", "No pulmonary nodules.", ReportStatus.CORRECTED),
        actor="client:c",
        purpose="x",
    )
    assert not fixed.created and fixed.report.version == 2 and fixed.report.id == early.report.id
    assert fixed.report.study_instance_uid == facts.study_instance_uid  # matched on receipt
    assert fixed.report.status is ReportStatus.CORRECTED
    assert fixed.report.first_received_at == early.report.first_received_at
    retry = receive(
        reports,
        "hosp-a",
        incoming("ACC-1", "No pulmonary nodules.", ReportStatus.CORRECTED),
        actor="client:c",
        purpose="x",
    )
    assert retry.repeated and not retry.created and retry.report.version == 2

    waiting = study(store, "hosp-a", "ACC-3")  # a study, no reading yet
    receive(reports, "hosp-a", incoming("ACC-3", "8 mm LLL nodule."), actor="c", purpose="x")
    compared = tenant_comparisons(store, reports, "hosp-a")
    by_accession = {c.report.accession_number: c for c in compared}
    assert {k: c.state for k, c in by_accession.items()} == {
        "ACC-1": ComparisonState.COMPARED,
        "ACC-2": ComparisonState.UNMATCHED,
        "ACC-3": ComparisonState.AWAITING_AI,
    }
    first = by_accession["ACC-1"]
    assert first.job is not None and first.job.id == job.id
    assert [d.kind.value for d in first.discrepancies] == ["ai-only"]
    assert by_accession["ACC-3"].report.study_instance_uid == waiting.study_instance_uid
    assert reports.list("hosp-b") == []

    records = [
        r.event
        for r in AuditLog(store.engine).records()
        if r.event.action is AuditAction.FINAL_REPORT_RECEIVE
    ]
    assert [(e.detail["version"], e.detail["matched"], e.detail["repeated"]) for e in records] == [
        (1, False, False),
        (1, False, False),
        (2, True, False),
        (2, True, True),
        (1, True, False),
    ]
    assert all("ACC-" not in repr(e.detail) and "nodule" not in repr(e.detail) for e in records)


def test_a_report_that_came_first_is_matched_when_listed_and_shadow_readings_are_left_out(
    sqlite_store: JobStore,
) -> None:
    store = sqlite_store
    reports = FinalReportStore(store)
    receive(reports, "hosp-a", incoming("ACC-9", "8 mm RUL nodule."), actor="c", purpose="x")
    facts, _ = done_study(store, "hosp-a", "ACC-9", (finding(1, 8.0),))
    shadow_model = MODEL.__class__(MODEL.id, "3.0.0", MODEL.name, MODEL.sha256)
    with store.transaction() as tx:
        shadow = tx.enqueue(
            facts.study_instance_uid,
            facts.orthanc_study_id,
            shadow_model,
            StudyFingerprint(10, "x"),
            shadow=True,
        ).job
    finish(store, shadow, (finding(1, 8.0), finding(2, 15.0)))  # would be a discrepancy
    (comparison,) = tenant_comparisons(store, reports, "hosp-a")
    assert comparison.report.study_instance_uid == facts.study_instance_uid
    assert comparison.state is ComparisonState.COMPARED and comparison.discrepancies == ()
    assert comparison.model == f"{MODEL.id} {MODEL.version}"
