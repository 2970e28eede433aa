"""A radiologist, in Chromium: sign in, find the study the model read on the worklist, open it
in OHIF through PreRead's DICOMweb proxy and see the AI's measurements (the SR, one length per
finding) and segments (the SEG); another tenant's radiologist finds nothing of it; without a
session the proxy answers nothing. Screenshots go to ``tests/browser/artifacts/<test>/``.

OHIF 3.13 shows its onboarding tour and an "investigational use" banner on a first visit; they
are dismissed as a person would ("Skip all", "Confirm and hide"). Loading the SR asks whether to
track its measurements and the SEG whether to open it: both answered "Yes".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, expect

from preread.audit import AuditAction, AuditLog, Outcome
from tests.browser.conftest import LiveSite, PageLog, SignedIn

TIMEOUT_MS = 60_000
ALLOWED_CONSOLE_ERRORS = re.compile(r"Unable to generate tool state .*No spatial coordinates group")
"""OHIF's SR reader on a TID 1500 group without coordinates (one per finding: the numbers'
group beside the drawn long axis), logged and skipped."""


def _findings(site: LiveSite) -> list[dict[str, Any]]:
    """The findings of the model's read of the study (PreRead JSON)."""
    (job,) = site.service.store.current_for_study(site.study_uid)
    assert job.result is not None
    findings = list(job.result["findings"])
    assert findings, "the model found nothing in the phantom (its 20 mm nodule)"
    return findings


def _thumbnail(page: Page, modality: str) -> Any:
    label = page.locator("[data-cy=series-modality-label]", has_text=re.compile(f"^{modality}$"))
    # a series with images has a picture (CT), the others a row (SR, SEG)
    return page.locator("[data-cy^=study-browser-thumbnail]").filter(has=label)


def _fetch(page: Page, path: str) -> dict[str, Any]:
    """``path`` fetched by the page's own ``fetch()`` (its cookies): status and JSON body."""
    answer: dict[str, Any] = page.evaluate(
        """async (path) => {
            const r = await fetch(path, {headers: {Accept: "application/dicom+json"}});
            const text = await r.text();
            let body = null;
            try { body = JSON.parse(text); } catch (e) { body = text; }
            return {status: r.status, body: body};
        }""",
        path,
    )
    return answer


def _dicomweb_answers(log: PageLog) -> dict[str, int]:
    """Each DICOMweb request the page made (UIDs as ``UID``), by its status."""
    counted: dict[str, int] = {}
    for line in log.requests:
        if " /dicomweb/" in f" {line}":
            key = re.sub(r"[0-9]+(\.[0-9]+){3,}", "UID", line)
            counted[key] = counted.get(key, 0) + 1
    return counted


def test_a_radiologist_opens_the_read_study_in_ohif_and_sees_the_ai_measurements_and_segments(
    live_site: LiveSite, signed_in: SignedIn, artifacts: Path
) -> None:
    findings = _findings(live_site)
    audit = AuditLog(live_site.service.store.engine)
    seen = len(list(audit.records()))
    page, log = signed_in(live_site.radiologist)

    row = page.locator(f"#worklist tr[data-study='{live_site.study_uid}']")
    expect(row).to_be_visible()
    expect(row.locator("td.state")).to_have_text("done")
    expect(row.locator("td.num").first).to_have_text(str(len(findings)))
    page.screenshot(path=str(artifacts / "worklist.png"), full_page=True)

    with page.expect_navigation():
        row.locator("a.viewer").click()
    assert page.url == live_site.url(f"/viewer/viewer?StudyInstanceUIDs={live_site.study_uid}")
    page.get_by_text("Skip all").click(timeout=TIMEOUT_MS)  # OHIF's onboarding tour
    page.get_by_text("Confirm and hide").click()  # the "investigational use" banner
    for modality in ("CT", "SR", "SEG"):
        expect(_thumbnail(page, modality)).to_have_count(1, timeout=TIMEOUT_MS)

    _thumbnail(page, "SR").dblclick()
    page.get_by_text("Do you want to continue tracking measurements for this study?").wait_for(
        timeout=TIMEOUT_MS
    )
    page.get_by_role("button", name="Yes").click()
    page.click("[data-cy=trackedMeasurements-btn]")
    panel = page.locator("[data-cy=trackedMeasurements-panel]")
    titles = panel.locator("[data-cy=data-row-title]")
    expect(titles).to_have_count(len(findings), timeout=TIMEOUT_MS)
    assert [t.split(":")[0] for t in titles.all_inner_texts()] == [
        f"AI nodule {n}" for n in range(1, len(findings) + 1)
    ]

    _thumbnail(page, "SEG").dblclick()
    page.get_by_text("Do you want to open this Segmentation?").wait_for(timeout=TIMEOUT_MS)
    page.get_by_role("button", name="Yes").click()
    page.click("[data-cy=panelSegmentation-btn]")
    for f in findings:
        kind = f" ({f['nodule_type']})" if f["nodule_type"] else ""
        segment = f"Nodule {f['label']}{kind}"
        expect(page.get_by_text(segment, exact=True)).to_be_visible(timeout=TIMEOUT_MS)

    page.click("[data-cy=trackedMeasurements-btn]")  # back to the measurements: go to nodule 1
    titles.first.click()
    # OHIF's notice that the SEG has no RecommendedDisplayCIELabValue goes by itself
    page.get_by_text("DICOM SEG import").wait_for(state="hidden", timeout=TIMEOUT_MS)
    page.wait_for_timeout(500)  # the viewport renders the slice (software WebGL)
    page.screenshot(path=str(artifacts / "ohif.png"))

    assert page.evaluate("window.crossOriginIsolated") is True
    answers = _dicomweb_answers(log)
    assert answers and not [k for k in answers if not k.endswith(" 200")], answers
    assert any("/frames/" in key for key in answers), answers
    log.assert_clean(allowed=ALLOWED_CONSOLE_ERRORS)
    # hundreds of requests, one record of the access (per session and study, preread.dicomweb)
    fetched = [
        r.event
        for r in list(audit.records())[seen:]
        if r.event.action is AuditAction.PIXELS_FETCH
        and r.event.study_instance_uid == live_site.study_uid
    ]
    assert [(e.actor, e.outcome, e.detail.get("via")) for e in fetched] == [
        (f"user:{live_site.radiologist.username}", Outcome.SUCCESS, "dicomweb")
    ]
    (artifacts / "dicomweb-requests.txt").write_text(
        "".join(f"{n:4d} {key}\n" for key, n in sorted(answers.items()))
    )


def test_another_tenants_radiologist_finds_nothing_of_the_study(
    live_site: LiveSite, signed_in: SignedIn, artifacts: Path
) -> None:
    page, log = signed_in(live_site.outsider)
    expect(page.locator("#worklist")).to_contain_text("No studies match.")
    assert page.locator(f"tr[data-study='{live_site.study_uid}']").count() == 0
    page.screenshot(path=str(artifacts / "worklist-elsewhere.png"), full_page=True)
    uid = live_site.study_uid
    assert _fetch(page, f"/dicomweb/studies/{uid}/series")["status"] == 404
    assert _fetch(page, f"/dicomweb/studies/{uid}/metadata")["status"] == 404
    assert _fetch(page, f"/dicomweb/studies?StudyInstanceUID={uid}") == {"status": 200, "body": []}
    assert _fetch(page, "/dicomweb/studies") == {"status": 200, "body": []}
    log.assert_clean(allowed=re.compile("status of 404"))  # the two refused fetches


def test_the_dicomweb_proxy_answers_nothing_without_a_session(
    live_site: LiveSite, browser: Browser
) -> None:
    context = browser.new_context()
    try:
        uid = live_site.study_uid
        for path in ("/dicomweb/studies", f"/dicomweb/studies/{uid}/series",
                     f"/dicomweb/studies/{uid}/metadata"):  # fmt: skip
            answer = context.request.get(live_site.url(path))
            assert answer.status == 401, (path, answer.status)
            assert answer.json() == {"detail": "sign-in required"}
    finally:
        context.close()
