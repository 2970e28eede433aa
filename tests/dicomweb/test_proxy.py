"""The DICOMweb proxy (``/dicomweb``) against the real private Orthanc: readers get their
tenant's studies — searches, metadata with PreRead's URLs, pixels streamed with their
multipart boundary — and nothing else; no session is 401, another tenant's or an unknown
study 404, a revoked grant 403 (audited every time); a granted study's access is recorded
once per session and window; Orthanc down is 502 without its address or login."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient

from dicom_gateway.client import OrthancClient
from dicom_gateway.multipart import RelatedParser, boundary_of
from dicom_gateway.orthanc_server import free_port
from preread.accounts import Role
from preread.api.app import create_app
from preread.audit import AuditAction, Outcome
from preread.dicomweb import UpstreamError
from preread.dicomweb.relay import public_url, public_urls
from tests.accounts.conftest import PASSWORD, sign_in
from tests.dicomweb.conftest import Scene, Study, phantom, record_done, services_for
from tests.grant_support import clinical_preread

PIXELS = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


def paths(study: Study) -> dict[str, str]:
    """Every route of the proxy, for ``study``'s first instance."""
    s = f"/dicomweb/studies/{study.uid}"
    i = f"{s}/series/{study.series_uid}/instances/{study.instance_uid}"
    return {
        "search": f"/dicomweb/studies?StudyInstanceUID={study.uid}",
        "series": f"{s}/series",
        "study_instances": f"{s}/instances",
        "instances": f"{s}/series/{study.series_uid}/instances",
        "study_metadata": f"{s}/metadata",
        "series_metadata": f"{s}/series/{study.series_uid}/metadata",
        "instance_metadata": f"{i}/metadata",
        "instance": i,
        "frames": f"{i}/frames/1",
        "bulk": f"{i}/bulk/7fe00010",
    }


def leaks(scene: Scene, text: str) -> list[str]:
    """What of Orthanc's address or login ``text`` shows."""
    port = scene.orthanc.url.rsplit(":", 1)[1]
    needles = (scene.orthanc.url, f":{port}", "dicom-web", scene.orthanc.password)
    return [n for n in needles if n in text]


def test_without_a_session_every_route_is_401_and_only_get_is_answered(scene: Scene) -> None:
    browser = scene.browser()
    for name, path in paths(scene.ours).items():
        answer = browser.get(path)
        assert answer.status_code == 401, (name, answer.text)
        assert answer.json() == {"detail": "sign-in required"}
    reader = scene.reader("dora", "hosp-a")
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for name, path in paths(scene.ours).items():
            answer = reader.request(method, path)
            assert answer.status_code == 405, (method, name, answer.status_code)


def test_a_reader_gets_their_studys_searches_metadata_and_pixels(scene: Scene) -> None:
    reader = scene.reader("ada", "hosp-a")
    study = scene.ours
    urls = paths(study)
    found = reader.get(urls["search"])
    assert found.status_code == 200, found.text
    assert found.headers["content-type"] == "application/dicom+json"
    assert found.headers["cache-control"] == "no-store"
    assert [s["0020000D"]["Value"] for s in found.json()] == [[study.uid]]
    series = reader.get(urls["series"]).json()
    assert [s["0020000E"]["Value"][0] for s in series] == [study.series_uid]
    assert series[0]["00081190"]["Value"] == [
        f"/dicomweb/studies/{study.uid}/series/{study.series_uid}"
    ]
    instances = reader.get(urls["instances"]).json()
    assert len(instances) == len(study.datasets)
    assert len(reader.get(urls["study_instances"]).json()) == len(study.datasets)
    for name in ("study_metadata", "series_metadata", "instance_metadata"):
        answer = reader.get(urls[name])
        assert answer.status_code == 200, (name, answer.text)
        assert not leaks(scene, answer.text), name
    metadata = reader.get(urls["instance_metadata"]).json()
    bulk = metadata[0]["7FE00010"]["BulkDataURI"]
    assert bulk == urls["bulk"]  # PreRead's path, which the browser resolves on this origin
    for text in (found.text, json.dumps(series), json.dumps(instances)):
        assert not leaks(scene, text)

    pixels = reader.get(urls["frames"], headers={"Accept": PIXELS})
    assert pixels.status_code == 200, pixels.text
    parser = RelatedParser(boundary_of(pixels.headers["content-type"]))
    parts = parser.feed(pixels.content)
    parser.close()
    expected = study.datasets[0].PixelData
    assert parts == [expected]
    assert pixels.headers["cache-control"] == "no-store"
    whole = reader.get(urls["instance"])  # multipart/related; type="application/dicom"
    assert whole.status_code == 200, whole.text
    parser = RelatedParser(boundary_of(whole.headers["content-type"]))
    (part,) = parser.feed(whole.content)
    assert pydicom.dcmread(io.BytesIO(part)).SOPInstanceUID == study.instance_uid
    with reader.stream("GET", bulk, headers={"Accept": PIXELS}) as answer:
        assert answer.status_code == 200
        streamed = b"".join(answer.iter_bytes())
    assert expected in streamed


def test_another_tenants_study_and_an_unknown_one_are_404_and_searches_never_show_them(
    scene: Scene,
) -> None:
    reader = scene.reader("bob", "hosp-b")
    mine = reader.get("/dicomweb/studies")  # no UID: the tenant's studies only
    assert [s["0020000D"]["Value"][0] for s in mine.json()] == [scene.theirs.uid]
    for study in (scene.ours, scene.unknown):
        urls = paths(study)
        assert reader.get(urls["search"]).json() == []
        both = f"/dicomweb/studies?StudyInstanceUID={study.uid},{scene.theirs.uid}"
        assert [s["0020000D"]["Value"][0] for s in reader.get(both).json()] == [scene.theirs.uid]
        answers = {name: reader.get(path) for name, path in urls.items() if name != "search"}
        assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(answers, 404)
    foreign, missing = (
        reader.get(paths(scene.ours)["series"]),
        reader.get(paths(scene.unknown)["series"]),
    )
    assert foreign.content == missing.content  # the same answer
    # another study's series under one's own study: Orthanc checks the hierarchy
    mixed = (
        f"/dicomweb/studies/{scene.theirs.uid}/series/{scene.ours.series_uid}/instances/"
        f"{scene.ours.instance_uid}/frames/1"
    )
    assert reader.get(mixed).status_code == 404
    assert reader.get(f"/dicomweb/studies/{scene.theirs.uid}/series/{scene.ours.series_uid}/"
                      "metadata").status_code == 404  # fmt: skip


def test_malformed_ids_and_search_parameters_are_refused_before_orthanc(scene: Scene) -> None:
    reader = scene.reader("eve", "hosp-a")
    base = paths(scene.ours)["frames"].rsplit("/", 1)[0]
    for bad in (f"{base}/0", f"{base}/1,x", base.replace(scene.ours.uid, "1.2.x")):
        assert reader.get(bad).status_code == 404, bad
    assert reader.get(paths(scene.ours)["bulk"] + "/../x").status_code == 404
    for query in ("limit=0", "offset=-1", "Patient%00Name=x", "a-b=1", "StudyInstanceUID=x.1"):
        answer = reader.get(f"/dicomweb/studies?{query}")
        assert answer.status_code == 400, (query, answer.text)
    many = ",".join(f"1.2.{n}" for n in range(101))
    assert reader.get(f"/dicomweb/studies?StudyInstanceUID={many}").status_code == 400


def test_a_revoked_grant_is_403_on_every_request_and_every_refusal_is_audited(
    scene: Scene, tmp_path_factory: pytest.TempPathFactory
) -> None:
    study = phantom(7, tmp_path_factory.mktemp("revoked"), "PHANTOM-REVOKED")
    scene.orthanc.client().store(list(study.datasets))
    record_done(scene.store, study, "hosp-c")
    grant = scene.grants.create(clinical_preread("tests", tenant="hosp-c"))
    reader = scene.reader("cyd", "hosp-c")
    urls = paths(study)
    assert reader.get(urls["series"]).status_code == 200
    scene.grants.revoke(grant.id, by="tests", reason="withdrawn")
    seen = len(scene.records())
    for name in ("series", "series_metadata", "frames", "frames"):
        answer = reader.get(urls[name])
        assert answer.status_code == 403, (name, answer.text)
        assert "not authorized" in answer.json()["detail"]
    search = reader.get(urls["search"])
    assert search.status_code == 403
    refused = [r.event for r in scene.records()[seen:]]
    assert [(e.action, e.outcome, e.tenant, e.study_instance_uid) for e in refused] == [
        (AuditAction.ACCESS_REFUSED, Outcome.REFUSED, "hosp-c", study.uid)
    ] * 4 + [(AuditAction.ACCESS_REFUSED, Outcome.REFUSED, "hosp-c", None)]
    assert all(e.actor == "user:cyd" for e in refused)


def test_a_studys_access_is_audited_once_per_session_and_window_not_per_frame(
    scene: Scene,
) -> None:
    study = scene.ours
    urls = paths(study)
    first = scene.reader("fay", "hosp-a")
    seen = len(scene.records())

    def accesses() -> list[tuple[str, str | None, str]]:
        return [
            (r.event.actor, r.event.study_instance_uid, str(r.event.detail.get("route")))
            for r in scene.records()[seen:]
            if r.event.action is AuditAction.PIXELS_FETCH
        ]

    for _ in range(3):
        for name in ("series", "series_metadata", "frames", "bulk"):
            assert first.get(urls[name]).status_code == 200, name
    assert accesses() == [("user:fay", study.uid, "dicomweb_search_series")]
    (record,) = [r for r in scene.records()[seen:] if r.event.action is AuditAction.PIXELS_FETCH]
    assert record.event.outcome is Outcome.SUCCESS
    assert record.event.purpose == "clinical-preread"
    assert record.event.detail["grant_id"] and record.event.detail["via"] == "dicomweb"
    assert record.event.detail["audit_window_s"] == scene.proxy.ledger.window_s

    second = scene.browser()  # the same reader, another session: recorded again
    assert sign_in(second, "fay").status_code == 303
    assert second.get(urls["frames"]).status_code == 200
    assert len(accesses()) == 2

    ledger = scene.proxy.ledger
    window = ledger.window_s
    ledger.window_s = 0.0  # the window has passed
    try:
        assert first.get(urls["frames"]).status_code == 200
    finally:
        ledger.window_s = window
    assert accesses()[-1] == ("user:fay", study.uid, "dicomweb_frames")
    assert len(accesses()) == 3


def test_orthanc_down_is_502_naming_neither_its_address_nor_its_login(
    scene: Scene, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there
    down = OrthancClient(f"http://127.0.0.1:{port}", "preread", "s3cret-orthanc-pw")
    services = services_for(scene.store, tmp_path, down, scene.grants)
    app = create_app(services)
    assert "s3cret" not in repr(down.dicomweb_endpoint) + repr(app.state.dicomweb)
    try:
        with TestClient(app, follow_redirects=False) as browser:
            accounts = services.accounts
            assert accounts is not None
            accounts.create("hosp-a", "gus", Role.RADIOLOGIST, password=PASSWORD, by="tests")
            assert sign_in(browser, "gus").status_code == 303
            for name, path in paths(scene.ours).items():
                answer = browser.get(path)
                assert answer.status_code == 502, (name, answer.text)
                assert str(port) not in answer.text and "s3cret" not in answer.text
                assert answer.json() == {"detail": "the image archive did not answer"}
    finally:
        services.auditor.close()
        down.close()


def test_orthancs_errors_map_to_404_406_or_502() -> None:
    assert [UpstreamError.for_status(s).status for s in (404, 406, 400, 401, 500, 503)] == [
        404, 406, 502, 502, 502, 502,
    ]  # fmt: skip


def test_orthancs_urls_become_preread_paths_and_others_are_dropped() -> None:
    root = "http://127.0.0.1:8042/dicom-web"
    study = f"{root}/studies/1.2.3"
    answer = [
        {
            "00081190": {"vr": "UR", "Value": [study, "http://elsewhere.example/x"]},
            "7FE00010": {"vr": "OB", "BulkDataURI": f"{study}/series/4/instances/5/bulk/7fe00010"},
            "00081115": {
                "vr": "SQ",
                "Value": [{"00081190": {"vr": "UR", "Value": [f"{study}/series/4"]}}],
            },
            "00480105": {"vr": "OB", "BulkDataURI": "http://x/other"},
        }
    ]
    out = public_urls(answer, "/dicom-web")
    assert out[0]["00081190"]["Value"] == ["/dicomweb/studies/1.2.3"]
    assert (
        out[0]["7FE00010"]["BulkDataURI"]
        == "/dicomweb/studies/1.2.3/series/4/instances/5/bulk/7fe00010"
    )
    assert out[0]["00081115"]["Value"][0]["00081190"]["Value"] == [
        "/dicomweb/studies/1.2.3/series/4"
    ]
    assert "BulkDataURI" not in out[0]["00480105"]
    assert (
        public_url("https://proxy.example/pacs/studies/1.2/series/3")
        == "/dicomweb/studies/1.2/series/3"
    )
    assert public_url(f"{root}/studies/1.2/../../x") is None
    assert not re.search("127.0.0.1|dicom-web", json.dumps(out))
