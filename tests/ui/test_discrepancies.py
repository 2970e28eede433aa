"""The discrepancy worklist (/ui/discrepancies): the tenant's final reports that disagree with
the AI, each disagreement in a sentence; another tenant's never shown; through the enforcement
point (a grant in force, each view audited)."""

from __future__ import annotations

from preread.audit import AuditAction
from preread.domain import ModelRef
from preread.finalreports import FinalReportStore
from preread.finalreports.intake import receive
from tests.accounts.conftest import Site, sign_in
from tests.finalreports.test_store import incoming
from tests.study_support import finding, read_study, recorded_study

MODEL = ModelRef("lung-nodule", "2.6.0", "PreRead Lung Nodule", "ef" * 32)


def test_the_discrepancy_worklist_lists_the_tenants_disagreements(site: Site) -> None:
    store = site.services.store
    reports = FinalReportStore(store)
    for tenant, accession, text in (
        ("hosp-a", "ACC-1", "No pulmonary nodules."),  # the AI found a 9 mm nodule
        ("hosp-a", "ACC-2", "9 mm nodule in the right upper lobe."),  # agrees
        ("hosp-b", "ACC-3", "No pulmonary nodules."),  # another tenant's
    ):
        facts = recorded_study(store, tenant, accession=accession)
        read_study(store, facts, MODEL, [finding(1, 9.0)])
        receive(reports, tenant, incoming(accession, text), actor="client:c", purpose="x")
    site.user()
    browser = site.browser()
    sign_in(browser)
    mark = site.audit_mark()
    page = browser.get("/ui/discrepancies")
    assert page.status_code == 200, page.text
    assert 'data-accession="ACC-1"' in page.text and "does not mention" in page.text
    assert 'data-accession="ACC-2"' not in page.text and "ACC-3" not in page.text
    everything = browser.get("/ui/discrepancies", params={"everything": "true"})
    assert 'data-accession="ACC-2"' in everything.text and "ACC-3" not in everything.text
    records = site.audit_until(mark, 2)
    assert {(r.event.action, r.event.actor) for r in records} == {
        (AuditAction.REPORT_READ, "user:ada")
    }
