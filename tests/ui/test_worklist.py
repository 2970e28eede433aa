"""The worklist page (/ui/): the reader's tenant's studies in priority order, filters and pages,
another tenant's studies never shown, a revoked grant refused with its reason, every view
audited."""

from __future__ import annotations

import re

from preread.audit import AuditAction
from tests.accounts.conftest import Site, sign_in
from tests.store.test_worklist import _finding, seed_study


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-study="([0-9.]+)">', html)


def test_the_worklist_shows_the_tenants_studies_most_urgent_first(site: Site) -> None:
    store = site.services.store
    seed_study(store, "1.2.1", tenant="hosp-a", date="20250101", findings=[_finding(6.5, "solid")])
    seed_study(
        store, "1.2.2", tenant="hosp-a", date="20250102", findings=[_finding(25.0, "ground-glass")]
    )
    seed_study(
        store, "1.2.3", tenant="hosp-a", date="20241201", findings=[_finding(14.0, "part-solid")]
    )
    seed_study(store, "1.2.9", tenant="hosp-b", date="20250105", findings=[_finding(30.0, "solid")])
    site.user()
    browser = site.browser()
    sign_in(browser)
    mark = site.audit_mark()
    page = browser.get("/ui/")
    assert page.status_code == 200
    assert _rows(page.text) == ["1.2.3", "1.2.1", "1.2.2"]  # largest solid first; no hosp-b
    assert 'href="/ui/studies/1.2.3"' in page.text
    assert 'href="/viewer/viewer?StudyInstanceUIDs=1.2.3"' in page.text
    assert "Doe Jane" in page.text and "14.0" in page.text
    by_date = browser.get("/ui/", params={"sort": "date", "order": "asc"})
    assert _rows(by_date.text) == ["1.2.3", "1.2.1", "1.2.2"]
    paged = browser.get("/ui/", params={"page_size": "2", "page": "2"})
    assert _rows(paged.text) == ["1.2.2"] and "page 2 of 2" in paged.text
    unreviewed = browser.get("/ui/", params={"reviewed": "yes"})
    assert _rows(unreviewed.text) == [] and "No studies match." in unreviewed.text
    assert browser.get("/ui/", params={"date_from": "2025-01-01"}).status_code == 422
    records = site.audit_until(mark, 5)
    assert {(r.event.action, r.event.actor) for r in records} == {
        (AuditAction.REPORT_READ, "user:ada")
    }

    other = site.user("bob", tenant="hosp-b", display_name="Dr Bob")
    assert other.tenant == "hosp-b"
    elsewhere = site.browser("10.2.2.2")
    sign_in(elsewhere, "bob")
    refused = elsewhere.get("/ui/")  # hosp-b has no grant in force
    assert refused.status_code == 403
    assert "Not authorized" in refused.text and "1.2.9" not in refused.text


def test_a_revoked_grant_closes_the_worklist_with_the_reason(site: Site) -> None:
    assert site.services.grant_store is not None
    grants = site.services.grant_store.list(tenant="hosp-a")
    site.user()
    browser = site.browser()
    sign_in(browser)
    assert browser.get("/ui/").status_code == 200
    for grant in grants:
        site.services.grant_store.revoke(grant.id, by="platform", reason="consent withdrawn")
    mark = site.audit_mark()
    refused = browser.get("/ui/")
    assert refused.status_code == 403
    assert "clinical-preread" in refused.text
    [record] = site.audit_until(mark, 1)
    assert record.event.action is AuditAction.ACCESS_REFUSED
