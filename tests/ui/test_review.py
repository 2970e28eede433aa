"""The study review page (/ui/studies/{uid}) on a read phantom study in a real Orthanc
(tests/reviews/phantom_study.py: two AI findings, a third nodule the AI missed): the findings
and their key images (PNG, decoded: the contour is there, in the middle), the slice viewer,
adding a missed nodule from a click, signing by the plain form (v1, then v2 superseding it, the
review SR in Orthanc), conflicts and incomplete forms shown and not signed; another tenant's
reader (404), a revoked grant (403 with the reason) and a missing CSRF token (403) refused;
every view audited, the series fetched from Orthanc once."""

from __future__ import annotations

import base64
import io
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from dicom_gateway.orthanc_server import OrthancServer
from preread.api.app import create_app
from preread.audit import AuditAction, Outcome
from preread.domain import Vec3
from preread.reports.render import CONTOUR_RGB
from preread.reviews import Accepted, Modified, Rejected, RejectReason, Review, ReviewStore
from preread.settings import Settings
from preread.store import JobStore
from tests.accounts.conftest import REPO, Site, Ticks, page_token, sign_in
from tests.grant_support import clinical_preread
from tests.reviews.phantom_study import NODULES, ReadStudy, read_phantom_study
from tests.services import services_for
from tests.store.conftest import FakeClock

TENANT = "default"
EMPTY_LUNG: Vec3 = (71.0, -36.4, -130.9)
"""A lung point of phantom seed 4 far from anything (tests.training.test_phantoms.lung_points
on the phantom without nodules), 36 mm from the nearest nodule."""
PLANES = ("axial", "coronal", "sagittal")


@dataclass
class Ward:
    site: Site
    study: ReadStudy
    orthanc: OrthancServer

    @property
    def uid(self) -> str:
        return self.study.facts.study_instance_uid

    @property
    def page(self) -> str:
        return f"/ui/studies/{self.uid}"

    def reviews(self) -> list[Review]:
        return ReviewStore(self.site.services.store).history(TENANT, self.uid)

    def reader(self, username: str = "ada", source: str = "10.1.1.1") -> TestClient:
        browser = self.site.browser(source)
        assert sign_in(browser, username).status_code == 303
        return browser


@pytest.fixture(scope="module")
def ward(orthanc: OrthancServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ward]:
    tmp = tmp_path_factory.mktemp("review-page")
    settings = Settings(data_dir=tmp / "data", models_dir=REPO / "models")
    with JobStore.create(f"sqlite:///{tmp / 'preread.db'}") as store:
        store.migrate()
        client = orthanc.client()
        study = read_phantom_study(client, store, tmp, tenant=TENANT, patient_id="PHANTOM-UI")
        services = services_for(settings, store, tmp / "keys", source=client)
        assert services.grant_store is not None and services.accounts is not None
        services.grant_store.create(clinical_preread("tests"))
        services.grant_store.create(clinical_preread("tests", tenant="hosp-b"))
        app = create_app(services)
        clock = FakeClock(datetime.now(UTC))
        assert services.sessions is not None
        site = Site(
            app,
            TestClient(app),
            services,
            services.accounts,
            services.sessions,
            clock,
            Ticks(),
            store.engine,
        )
        site.user("ada", tenant=TENANT)
        site.user("grace", tenant=TENANT, display_name="Dr Grace Hopper")
        site.user("bob", tenant="hosp-b", display_name="Dr Bob")
        try:
            with site.client:
                yield Ward(site, study, orthanc)
        finally:
            for browser in site.browsers:
                browser.close()
            services.auditor.close()


def _png(data: bytes) -> npt.NDArray[np.uint8]:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.mode == "RGB"
    return np.asarray(image)


def _contour(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.intp]:
    """(row, column) of the contour's pixels."""
    return np.argwhere(np.all(rgb == np.asarray(CONTOUR_RGB, dtype=np.uint8), axis=-1))


def _form(ward: Ward, page_text: str, **fields: str) -> dict[str, str]:
    job = re.search(r'name="job_id" value="([^"]*)"', page_text)
    replaces = re.search(r'name="replaces" value="([^"]*)"', page_text)
    assert job is not None and replaces is not None
    token = re.search(r'name="csrf_token" value="([^"]+)"', page_text)
    assert token is not None
    return {
        "csrf_token": token.group(1),
        "job_id": job.group(1),
        "replaces": replaces.group(1),
        **fields,
    }


def _click(ward: Ward, point: Vec3) -> dict[str, float]:
    """The slice index and row/column the page's viewer shows ``point`` at, from the images'
    own headers: slices numbered from the top (most superior first)."""
    images = sorted(ward.study.datasets, key=lambda ds: -float(ds.ImagePositionPatient[2]))
    index = int(np.argmin([abs(float(ds.ImagePositionPatient[2]) - point[2]) for ds in images]))
    first = images[index]
    x0, y0 = (float(v) for v in first.ImagePositionPatient[:2])
    dy, dx = (float(v) for v in first.PixelSpacing)
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    return {"index": index, "row": (point[1] - y0) / dy, "column": (point[0] - x0) / dx}


def test_the_page_lists_the_findings_and_serves_their_key_images(ward: Ward) -> None:
    site = ward.site
    ada = ward.reader()
    mark = site.audit_mark()
    page = ada.get(ward.page)
    assert page.status_code == 200, page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    text = page.text
    for n in (1, 2):
        assert f"AI finding {n} of 2" in text
        assert f'name="verdict-{n}" value="accept"' in text
        assert f'href="#finding-{n}"' in text
    assert "Solid nodule left lung" in text and "14.0 mm" in text  # finding 1: 14 mm, left
    assert '<script type="module" src="/ui/static/review.js"></script>' in text
    assert "<script>" not in text and "style=" not in text  # the pages' CSP: no inline
    assert "PHANTOM-UI" in text

    assert site.services.volumes is not None
    loads = site.services.volumes.loads
    for n, nodule in enumerate(NODULES[:2], start=1):
        for plane in PLANES:
            answer = ada.get(f"{ward.page}/key-images/{plane}.png", params={"finding": n})
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == "image/png"
            assert answer.headers["cache-control"] == "no-store"
            rgb = _png(answer.content)
            rows, cols, _ = rgb.shape
            assert cols >= 360 and 0.8 <= rows / cols <= 1.25, rgb.shape
            contour = _contour(rgb)
            assert len(contour) > 20, (n, plane)
            centre = contour.mean(axis=0) / np.array([rows, cols])
            assert np.all(np.abs(centre - 0.5) < 0.1), (n, plane, centre)  # the finding, centred
            # its size: a 90 mm field, the nodule's diameter across the contour
            width_mm = (np.ptp(contour[:, 1]) + 1) / cols * 90.0
            assert abs(width_mm - nodule.diameter_mm) < 5.0, (n, plane, width_mm)
    assert site.services.volumes.loads - loads <= 1  # the series fetched once, then from memory

    middle = ada.get(f"{ward.page}/slice.png", params={"finding": 1})
    assert middle.status_code == 200
    assert middle.headers["x-preread-grid"] == "32,128,128"
    assert middle.headers["x-preread-slices"] == "32"
    index = int(middle.headers["x-preread-slice"])
    assert index == _click(ward, NODULES[0].center_lps_mm)["index"]
    rgb = _png(middle.content)
    assert rgb.shape[1] >= 512 and len(_contour(rgb)) > 20  # the AI contours on it
    top = ada.get(f"{ward.page}/slice.png", params={"index": 0})
    assert top.headers["x-preread-slice"] == "0" and len(_contour(_png(top.content))) == 0
    beyond = ada.get(f"{ward.page}/slice.png", params={"index": 500})
    assert beyond.headers["x-preread-slice"] == "31"
    assert ada.get(f"{ward.page}/key-images/axial.png", params={"finding": 9}).status_code == 404
    assert ada.get(f"{ward.page}/key-images/oblique.png", params={"finding": 1}).status_code == 422

    records = [r.event for r in site.audit_since(mark)]
    views = [
        (e.action, e.detail.get("view"), e.detail.get("plane"), e.detail.get("finding"))
        for e in records
        if str(e.detail.get("route", "")).startswith("ui_review")
    ]
    assert views[0] == (AuditAction.REPORT_READ, "review", None, None)
    key_images = {(v[2], v[3]) for v in views if v[1] == "key image"}
    assert key_images >= {(p, str(n)) for p in PLANES for n in (1, 2)}
    assert {e.actor for e in records if e.action is AuditAction.REPORT_READ} == {"user:ada"}
    assert all(e.study_instance_uid == ward.uid and e.tenant == TENANT for e in records)


def test_the_plain_form_signs_v1_then_v2_supersedes_it(ward: Ward) -> None:
    site = ward.site
    ada = ward.reader()
    store = site.services.store
    before = ward.reviews()
    page = ada.get(ward.page)
    mark = site.audit_mark()
    form = _form(
        ward, page.text, **{"verdict-1": "reject", "reason-1": "vessel", "verdict-2": "accept"}
    )
    signed = ada.post(f"{ward.page}/review", data=form)
    assert signed.status_code == 303, signed.text
    first = ward.reviews()[0]
    assert signed.headers["location"] == f"{ward.page}?signed={first.id}"
    assert first.version == len(before) + 1 and first.stored_at is not None
    assert first.supersedes == (before[0].id if before else None)
    verdicts = {a.finding_number: a.verdict for a in first.assessments}
    assert verdicts == {1: Rejected(RejectReason.VESSEL), 2: Accepted()}
    assert first.reviewer.name == "Dr Ada Lovelace" and first.reviewer.tenant == TENANT
    (sr,) = ward.orthanc.client().series_datasets(ward.uid, first.sr_series_uid)
    assert sr.VerificationFlag == "VERIFIED"
    shown = ada.get(signed.headers["location"])
    assert f"Signed: review version {first.version} by Dr Ada Lovelace" in shown.text
    assert "Its SR is stored in the study." in shown.text
    assert 'value="reject" checked' in shown.text  # the next review starts from this one
    events = [r.event for r in site.audit_since(mark)]
    sign = [e for e in events if e.action is AuditAction.REVIEW_SIGN]
    assert [(e.outcome, e.actor, e.detail["rejected"], e.detail["accepted"]) for e in sign] == [
        (Outcome.SUCCESS, "user:ada", 1, 1)
    ]
    assert {e.actor for e in events} == {"user:ada"}  # the view, the pixels, the signature
    assert any(e.detail.get("view") == "sign" for e in events)

    # v2: correct finding 1, keep 2, add the nodule the AI missed (measured again when signed)
    missed = NODULES[2].center_lps_mm
    point = f"{missed[0] + 1.0:.2f},{missed[1] - 1.0:.2f},{missed[2]:.2f}"
    form = _form(
        ward,
        shown.text,
        **{
            "verdict-1": "correct",
            "type-1": "part-solid",
            "long-1": "15",
            "short-1": "12.5",
            "verdict-2": "accept",
            "added": point,
        },
    )
    assert form["replaces"] == first.id
    again = ada.post(f"{ward.page}/review", data=form)
    assert again.status_code == 303, again.text
    second = ward.reviews()[0]
    assert (second.version, second.supersedes) == (first.version + 1, first.id)
    assert second.assessments[0].verdict == Modified("part-solid", 15.0, 12.5)
    (added,) = second.added
    assert np.linalg.norm(np.subtract(added.centre_lps_mm, missed)) < 3.0
    assert abs(added.long_axis_mm - NODULES[2].diameter_mm) < 4.0
    assert second.seg_series_uid is not None and second.stored_at is not None
    client = ward.orthanc.client()
    assert len(client.series_datasets(ward.uid, second.sr_series_uid)) == 1
    assert len(client.series_datasets(ward.uid, first.sr_series_uid)) == 1  # never overwritten
    assert store.study(ward.uid) is not None
    listed = ada.get(again.headers["location"])
    assert "Keep reader nodule 1 of the current review" in listed.text


def test_conflicts_and_incomplete_forms_are_shown_and_not_signed(ward: Ward) -> None:
    ada = ward.reader()
    page = ada.get(ward.page)
    before = ward.reviews()
    complete = {"verdict-1": "accept", "verdict-2": "accept"}

    incomplete = ada.post(
        f"{ward.page}/review", data=_form(ward, page.text, **{"verdict-1": "reject"})
    )
    assert incomplete.status_code == 422
    assert "finding 1: a rejection needs a reason" in incomplete.text
    assert "finding 2: choose accept, reject or correct" in incomplete.text
    assert 'value="reject" checked' in incomplete.text  # the reader's choices kept

    other = _form(
        ward, page.text, **{"verdict-1": "reject", "reason-1": "other", "verdict-2": "accept"}
    )
    no_text = ada.post(f"{ward.page}/review", data=other)
    assert no_text.status_code == 422 and "needs a text saying what it is" in no_text.text

    reread = _form(ward, page.text, **complete)
    reread["job_id"] = str(uuid.uuid4())
    answer = ada.post(f"{ward.page}/review", data=reread)
    assert answer.status_code == 409 and "read again by the AI" in answer.text

    # a colleague signs meanwhile: this reader's form no longer replaces the current review
    grace = ward.reader("grace", "10.1.1.7")
    theirs = grace.get(ward.page)
    assert (
        grace.post(f"{ward.page}/review", data=_form(ward, theirs.text, **complete)).status_code
        == 303
    )
    stale = ada.post(f"{ward.page}/review", data=_form(ward, page.text, **complete))
    assert stale.status_code == 409
    newest = ward.reviews()[0]
    assert f"Dr Grace Hopper signed review version {newest.version}" in stale.text
    assert f'name="replaces" value="{newest.id}"' in stale.text  # sign again: replaces theirs
    assert len(ward.reviews()) == len(before) + 1

    far = ada.post(
        f"{ward.page}/review", data=_form(ward, stale.text, **complete, added="71.0,-36.4,-130.9")
    )
    assert far.status_code == 422 and "nothing nodule-like" in far.text
    assert len(ward.reviews()) == len(before) + 1


def test_a_click_on_a_missed_nodule_is_measured_and_an_empty_spot_refused(ward: Ward) -> None:
    ada = ward.reader()
    token = page_token(ada.get(ward.page))
    truth = NODULES[2]
    click = _click(
        ward, (truth.center_lps_mm[0] + 1.5, truth.center_lps_mm[1] - 1.0, truth.center_lps_mm[2])
    )
    answer = ada.post(f"{ward.page}/added", json=click, headers={"X-CSRF-Token": token})
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert np.linalg.norm(np.subtract(found["centre_lps_mm"], truth.center_lps_mm)) < 3.0
    assert abs(found["long_axis_mm"] - truth.diameter_mm) < 4.0
    assert found["short_axis_mm"] <= found["long_axis_mm"]
    assert found["nodule_type"] == "solid" and found["volume_mm3"] > 0
    assert len(found["point"].split(",")) == 3
    for plane in PLANES:
        data = found["images"][plane]
        assert data.startswith("data:image/png;base64,")
        assert len(_contour(_png(base64.b64decode(data.split(",", 1)[1])))) > 20, plane

    empty = ada.post(
        f"{ward.page}/added", json=_click(ward, EMPTY_LUNG), headers={"X-CSRF-Token": token}
    )
    assert empty.status_code == 422
    assert "nothing nodule-like" in empty.json()["detail"]
    outside = ada.post(
        f"{ward.page}/added",
        json={"index": 99, "row": 1, "column": 1},
        headers={"X-CSRF-Token": token},
    )
    assert outside.status_code == 422


def test_another_tenants_reader_sees_no_page_and_no_image(ward: Ward) -> None:
    bob = ward.reader("bob", "10.2.2.2")
    token = page_token(bob.get("/ui/"))
    missing = "/ui/studies/1.2.826.0.1.3680043.99.7"
    for path in ("", "/key-images/axial.png?finding=1", "/slice.png?index=3"):
        theirs, absent = bob.get(ward.page + path), bob.get(missing + path)
        assert theirs.status_code == absent.status_code == 404
        assert theirs.text == absent.text and "No such study." in theirs.text
        assert "PHANTOM" not in theirs.text
    measure = bob.post(
        f"{ward.page}/added",
        json={"index": 1, "row": 1, "column": 1},
        headers={"X-CSRF-Token": token},
    )
    assert measure.status_code == 404
    sign = bob.post(f"{ward.page}/review", data={"csrf_token": token, "verdict-1": "accept"})
    assert sign.status_code == 404


def test_a_revoked_grant_refuses_the_page_with_the_reason(ward: Ward) -> None:
    site = ward.site
    grants = site.services.grant_store
    assert grants is not None
    ada = ward.reader()
    assert ada.get(ward.page).status_code == 200
    (granted,) = [g for g in grants.list(tenant=TENANT) if g.revoked_at is None]
    grants.revoke(granted.id, by="platform", reason="consent withdrawn")
    try:
        mark = site.audit_mark()
        refused = ada.get(ward.page)
        assert refused.status_code == 403
        assert "Not authorized" in refused.text and "clinical-preread" in refused.text
        image = ada.get(f"{ward.page}/key-images/axial.png", params={"finding": 1})
        assert image.status_code == 403 and image.headers["content-type"].startswith("text/html")
        events = [r.event for r in site.audit_since(mark)]
        assert [(e.action, e.outcome) for e in events] == [
            (AuditAction.ACCESS_REFUSED, Outcome.REFUSED)
        ] * 2
    finally:
        grants.create(clinical_preread("tests"))


def test_unsafe_requests_without_the_csrf_token_are_refused(ward: Ward) -> None:
    ada = ward.reader()
    page = ada.get(ward.page)
    before = ward.reviews()
    form = _form(ward, page.text, **{"verdict-1": "accept", "verdict-2": "accept"})
    del form["csrf_token"]
    refused = ada.post(f"{ward.page}/review", data=form)
    assert refused.status_code == 403 and "CSRF check failed" in refused.text
    measure = ada.post(f"{ward.page}/added", json=_click(ward, NODULES[2].center_lps_mm))
    assert measure.status_code == 403 and "CSRF check failed" in measure.text
    assert ward.reviews() == before


def test_the_script_is_served_and_the_page_names_every_key(ward: Ward) -> None:
    ada = ward.reader()
    script = ada.get("/ui/static/review.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith(
        "text/javascript"
    )
    page = ada.get(ward.page).text
    for key in (
        "<kbd>a</kbd>",
        "<kbd>r</kbd> then <kbd>1</kbd>",
        "<kbd>c</kbd>",
        "<kbd>s</kbd>",
        "<kbd>?</kbd>",
        "<kbd>n</kbd>",
        "<kbd>j</kbd>",
    ):
        assert key in page, key
    assert Path(REPO / "preread/ui/static/review.js").read_bytes() == script.content
