"""The monitoring page (/ui/monitoring): the tenant's model versions in use, per acquisition
group, with trend plots and the alerts; another tenant's readings never shown; signed-in only."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from preread.monitoring.acquisition import Acquisition
from preread.monitoring.monitor import watch
from preread.monitoring.spc import Rule
from tests.accounts.conftest import Site, sign_in
from tests.monitoring.test_drift import read

USUAL = Acquisition("UsualCo", "CT-1", "B30f", 1.0, "<=1.25 mm", 20.0, 0.3, (0.125,) * 8)


def test_the_monitoring_page_shows_the_tenants_versions_trends_and_alerts(site: Site) -> None:
    store = site.services.store
    for noise in (20.0, 21.0, 19.5):
        read(store, dataclasses.replace(USUAL, noise_hu=noise), findings=1)
    read(store, dataclasses.replace(USUAL, manufacturer="NewCo", noise_hu=60.0), findings=2)
    read(store, dataclasses.replace(USUAL, manufacturer="OtherCo"), findings=1, tenant="hosp-b")
    raised, _ = watch(store, datetime.now(UTC), Rule(baseline=3, window=1))
    assert {a.metric for a in raised} >= {"noise_hu"}
    stranger = site.browser("10.9.9.9").get("/ui/monitoring")
    assert stranger.status_code == 303  # not signed in: to the sign-in page
    site.user()
    browser = site.browser()
    sign_in(browser)
    page = browser.get("/ui/monitoring")
    assert page.status_code == 200, page.text
    html = page.text
    assert "lung-nodule 2.6.0" in html and "UsualCo / CT-1 / B30f / &lt;=1.25 mm" in html
    assert "NewCo" in html and "OtherCo" not in html  # hosp-b's scanner is not hosp-a's business
    assert "image noise (HU, soft tissue)" in html and html.count("<svg") == 8
    assert "<td>open</td>" in html
