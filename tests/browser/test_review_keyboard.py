"""Reviewing a study by keyboard in Chromium: a radiologist signs in, opens the worklist, opens
a study with five AI findings, accepts them all and signs in seven keystrokes (``a`` × 5, ``s``,
Enter); then rejects one with a reason, corrects another and adds the nodule the AI missed (the
cross moved onto it with Shift+arrows, Enter to measure, Enter to keep it) for a second
version. The review SR is in Orthanc and the review in the JSON report; no script error and no
Content-Security-Policy refusal on the way; screenshots in the test's artifact folder.

The study is the phantom of tests/reviews/phantom_study.py with six nodules, five of them "found"
by the AI (no model is run: the page, not the model, is under test) and the sixth missed; the
app is PreRead's own, served by uvicorn on a loopback port, with a real Orthanc.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import uvicorn

from dicom_gateway.orthanc_server import OrthancServer
from preread.accounts import Role
from preread.api.app import create_app
from preread.api.deps import Services
from preread.api.server import server_config
from preread.reviews import Accepted, Modified, Rejected, RejectReason, ReviewStore
from preread.security import ClientStore
from preread.settings import Settings
from preread.store import JobStore
from tests.browser.conftest import PASSWORD, PageLog
from tests.grant_support import clinical_preread
from tests.reviews.phantom_study import NODULES, ReadStudy, read_phantom_study
from tests.services import services_for
from training.phantoms import NoduleSpec

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

REPO = Path(__file__).resolve().parents[2]
TENANT = "default"
SIX = [  # phantom seed 4's lung points (tests.training.test_phantoms.lung_points); the last missed
    NODULES[0],
    NODULES[1],
    NoduleSpec(center_lps_mm=(-109.1, 1.7, -130.9), diameter_mm=9.0, type="solid"),
    NoduleSpec(center_lps_mm=(71.0, -36.4, -130.9), diameter_mm=8.0, type="solid"),
    NoduleSpec(center_lps_mm=(-43.3, 1.7, -130.9), diameter_mm=10.0, type="solid"),
    NODULES[2],
]
MAX_KEYSTROKES = 12


@dataclass
class Served:
    base_url: str
    services: Services
    study: ReadStudy
    orthanc: OrthancServer

    def url(self, path: str) -> str:
        return self.base_url + path

    @property
    def uid(self) -> str:
        return self.study.facts.study_instance_uid


@pytest.fixture(scope="module")
def served(orthanc: OrthancServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("review-keyboard")
    settings = Settings(data_dir=tmp / "data", models_dir=REPO / "models")
    with JobStore.create(f"sqlite:///{tmp / 'preread.db'}") as store:
        store.migrate()
        client = orthanc.client()
        study = read_phantom_study(
            client, store, tmp, tenant=TENANT, patient_id="PHANTOM-KEYS", nodules=SIX, found=5
        )
        services = services_for(settings, store, tmp / "keys", source=client)
        assert services.grant_store is not None and services.accounts is not None
        services.grant_store.create(clinical_preread("tests"))
        services.accounts.create(
            TENANT,
            "kim",
            Role.RADIOLOGIST,
            password=PASSWORD,
            display_name="Dr Kim Keys",
            by="tests",
        )
        server = uvicorn.Server(
            server_config(create_app(services), settings, host="127.0.0.1", port=0)
        )
        thread = threading.Thread(target=server.run, name="review-uvicorn", daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        port = int(server.servers[0].sockets[0].getsockname()[1])
        try:
            yield Served(f"http://127.0.0.1:{port}", services, study, orthanc)
        finally:
            server.should_exit = True
            thread.join(timeout=15)
            services.auditor.close()


def _open(browser: Browser, served: Served) -> tuple[Page, PageLog]:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    log = PageLog()
    page.on("console", log.on_console)
    page.on("pageerror", log.on_error)
    page.on("response", lambda r: log.requests.append(f"{r.request.method} {r.url} {r.status}"))
    page.goto(served.url("/ui/login"))
    page.fill("#username", "kim")
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.click("form.signin button[type=submit]")
    row = page.locator(f"tr[data-study='{served.uid}']")
    row.wait_for()
    with page.expect_navigation():
        row.locator("a.review").click()
    page.locator("section.finding.current").wait_for()
    return page, log


def _images_loaded(page: Page) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('section.finding.current img')]"
        ".every(i => i.complete && i.naturalWidth >= 360)"
    )


def _report(served: Served) -> dict[str, object]:
    clients = ClientStore(served.services.store.engine)
    client, secret = clients.create(TENANT, "ris", ["reports:read"], 1000)
    with httpx.Client(base_url=served.base_url) as http:
        token = http.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client.client_id,
                "client_secret": secret,
            },
        )
        assert token.status_code == 200, token.text
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        answer = http.get(f"/api/v1/studies/{served.uid}/report/json", headers=bearer)
        assert answer.status_code == 200, answer.text
        report: dict[str, object] = answer.json()
        return report


def test_five_findings_accepted_and_signed_in_seven_keystrokes(
    served: Served, browser: Browser, artifacts: Path
) -> None:
    page, log = _open(browser, served)
    assert page.locator("section.finding").count() == 5
    _images_loaded(page)
    page.screenshot(path=str(artifacts / "review.png"), full_page=True)
    page.keyboard.press("?")
    page.locator("#help-dialog[open]").wait_for()
    page.screenshot(path=str(artifacts / "help.png"))
    page.keyboard.press("Escape")
    page.locator("#help-dialog:not([open])").wait_for(state="attached")

    keys = ["a"] * 5 + ["s"]
    for key in keys:
        page.keyboard.press(key)
    page.locator("#sign-dialog[open]").wait_for()
    assert "5 accepted, 0 rejected, 0 corrected, 0 added" in page.inner_text("#sign-summary")
    page.screenshot(path=str(artifacts / "sign-dialog.png"))
    with page.expect_navigation():
        page.keyboard.press("Enter")
    keys.append("Enter")
    assert len(keys) == 7 <= MAX_KEYSTROKES
    notice = page.locator("#signed-notice")
    notice.wait_for()
    assert "Signed: review version 1 by Dr Kim Keys" in notice.inner_text()
    assert "Its SR is stored in the study." in notice.inner_text()
    page.screenshot(path=str(artifacts / "signed.png"), full_page=True)
    assert not [r for r in log.requests if r.endswith(" 404")], log.requests
    log.assert_clean()

    review = ReviewStore(served.services.store).history(TENANT, served.uid)[0]
    assert review.version == 1
    assert [a.verdict for a in review.assessments] == [Accepted()] * 5
    (sr,) = served.orthanc.client().series_datasets(served.uid, review.sr_series_uid)
    assert sr.VerificationFlag == "VERIFIED"
    report = _report(served)
    shown = report["review"]
    assert isinstance(shown, dict) and shown["id"] == review.id and shown["version"] == 1
    assert [a["assessment"] for a in shown["assessments"]] == ["accepted"] * 5


def test_reject_correct_and_add_by_keyboard_for_a_second_version(
    served: Served, browser: Browser, artifacts: Path
) -> None:
    page, log = _open(browser, served)
    store = ReviewStore(served.services.store)
    before = store.history(TENANT, served.uid)
    for key in ("r", "1"):  # finding 1: a vessel
        page.keyboard.press(key)
    page.keyboard.press("c")  # finding 2: part-solid, 11 mm
    assert page.evaluate("document.activeElement.name") == "type-2"
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Tab")
    page.keyboard.type("11")
    page.keyboard.press("Enter")
    for _ in range(3):
        page.keyboard.press("a")

    page.keyboard.press("n")  # the slice viewer, at the current finding's level
    page.wait_for_function("() => document.getElementById('slice').naturalWidth >= 512")
    missed = SIX[5].center_lps_mm
    images = sorted(served.study.datasets, key=lambda ds: -float(ds.ImagePositionPatient[2]))
    index = min(
        range(len(images)), key=lambda k: abs(float(images[k].ImagePositionPatient[2]) - missed[2])
    )
    shown_index = int(page.inner_text("#slice-info").split()[1]) - 1
    step = "ArrowDown" if index > shown_index else "ArrowUp"
    for _ in range(abs(index - shown_index)):
        page.keyboard.press(step)
    page.wait_for_function(
        f"() => document.getElementById('slice-info').textContent === 'Slice {index + 1} of 32'"
    )
    first = images[index]  # the cross starts in the middle; Shift+arrows move it a voxel
    x0, y0 = (float(v) for v in first.ImagePositionPatient[:2])
    dy, dx = (float(v) for v in first.PixelSpacing)
    rows, columns = round((missed[1] - y0) / dy) - 64, round((missed[0] - x0) / dx) - 64
    for _ in range(abs(rows)):
        page.keyboard.press("Shift+ArrowDown" if rows > 0 else "Shift+ArrowUp")
    for _ in range(abs(columns)):
        page.keyboard.press("Shift+ArrowRight" if columns > 0 else "Shift+ArrowLeft")
    page.keyboard.press("Enter")  # measure at the cross
    page.locator("#candidate:not([hidden])").wait_for()
    page.screenshot(path=str(artifacts / "added.png"), full_page=True)
    page.keyboard.press("Enter")  # keep it
    assert page.locator("#added-list li").count() == 1
    page.keyboard.press("Escape")
    page.keyboard.press("s")
    page.locator("#sign-dialog[open]").wait_for()
    assert "3 accepted, 1 rejected, 1 corrected, 1 added" in page.inner_text("#sign-summary")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.locator("#signed-notice").wait_for()
    log.assert_clean()

    review = store.history(TENANT, served.uid)[0]
    assert review.version == len(before) + 1
    assert review.supersedes == (before[0].id if before else None)
    verdicts = [a.verdict for a in review.assessments]
    assert verdicts[0] == Rejected(RejectReason.VESSEL)
    assert verdicts[1] == Modified("part-solid", 11.0, None)
    assert verdicts[2:] == [Accepted()] * 3
    assert len(review.added) == 1 and review.stored_at is not None
    report = _report(served)
    assert isinstance(report["review"], dict) and report["review"]["version"] == review.version
