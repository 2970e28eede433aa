"""Re-reading the archive end to end: two real Orthancs (PreRead's and one playing the hospital
PACS, C-FIND/C-MOVE between them), the shipped model reading real phantom studies, SQLite job
store, real grants and audit trail.

The PACS holds, for the range 2024-03-01..2024-03-31: patient LOST-1's CT of 2024-03-04 and
patient SEEN-2's CT of 2024-03-11, each with a 20 mm solid nodule; SEEN-2 also has a CT of
2025-01-10 (outside the range: never read, but a later CT), and OLD-3 one of 2023-12-01
(outside the range: never found). Only LOST-1 may have been lost to follow-up.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, timedelta

import pydicom
import pytest
from pydicom.uid import generate_uid

from dicom_gateway.checks import SeriesLimits
from dicom_gateway.client import OrthancClient
from dicom_gateway.orthanc_server import OrthancServer
from dicom_gateway.priors import ArchivedStudy, OrthancPriors
from inference.predict import Predictor
from inference.registry import Registry
from preread.audit import AuditLog
from preread.backfill.exports import to_json
from preread.backfill.reader import BackfillContext, live_jobs_waiting, read_item, run_backfill
from preread.backfill.store import BackfillStore
from preread.backfill.worklist import lost_to_follow_up
from preread.domain import ModelRef
from preread.followup.priors import PRIORS_PEER_NAME
from preread.followup.screening import LungRadsPolicy
from preread.grants import GrantSpec, GrantStore, Purpose
from preread.store import JobStore, StudyFacts, default_url
from preread.watcher import Watcher
from tests.grant_support import clinical_preread
from tests.orthanc_support import PACS_AET, PREREAD_AET, preread_and_pacs
from tests.pipeline.conftest import MODELS_DIR, easy_phantom_study

FIRST, LAST = datetime.date(2024, 3, 1), datetime.date(2024, 3, 31)
ISSUER = "HOSP-A"


@dataclass(frozen=True)
class Sites:
    preread: OrthancServer
    pacs: OrthancServer
    client: OrthancClient
    jobs: JobStore
    grants: GrantStore
    audit: AuditLog
    predictor: Predictor
    studies: dict[str, str]  # name -> StudyInstanceUID
    template: Sequence[pydicom.Dataset]


def _copy(
    template: Sequence[pydicom.Dataset], patient_id: str, day: datetime.date
) -> tuple[str, list[pydicom.Dataset]]:
    """The template series as a new study of ``patient_id`` on ``day`` (fresh UIDs)."""
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    out = []
    for source in template:
        ds = source.copy()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = (
            study_uid,
            series_uid,
            frame_uid,
        )
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta = copy.deepcopy(source.file_meta)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID, ds.IssuerOfPatientID = patient_id, ISSUER
        ds.StudyDate = ds.SeriesDate = day.strftime("%Y%m%d")
        ds.AccessionNumber = f"ACC-{patient_id}"
        out.append(ds)
    return str(study_uid), out


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    preread_cfg, pacs_cfg = preread_and_pacs(tmp_path_factory, pacs_peer=PRIORS_PEER_NAME)
    data = tmp_path_factory.mktemp("data")
    easy = easy_phantom_study(33, tmp_path_factory.mktemp("easy"), "TEMPLATE")
    template = [pydicom.dcmread(p) for p in sorted(easy.ct_dir.iterdir())]
    with (
        OrthancServer(preread_cfg) as preread,
        OrthancServer(pacs_cfg) as pacs,
        preread.client(timeout=60) as client,
        JobStore.create(default_url(data)) as jobs,
    ):
        jobs.migrate()
        audit = AuditLog(jobs.engine)
        grants = GrantStore(jobs.engine, audit=audit)
        grants.create(clinical_preread("test"))  # live reading only: not the backfill's purpose
        studies: dict[str, str] = {}
        with pacs.client(timeout=60) as upload:
            for name, patient, day in (
                ("lost", "LOST-1", datetime.date(2024, 3, 4)),
                ("seen", "SEEN-2", datetime.date(2024, 3, 11)),
                ("seen-later", "SEEN-2", datetime.date(2025, 1, 10)),
                ("old", "OLD-3", datetime.date(2023, 12, 1)),
            ):
                uid, datasets = _copy(template, patient, day)
                assert len(upload.store(datasets)) == len(datasets)
                studies[name] = uid
        predictor = Predictor(Registry(MODELS_DIR).find("lung-nodule"))
        yield Sites(preread, pacs, client, jobs, grants, audit, predictor, studies, template)


def _context(sites: Sites, **changes: object) -> BackfillContext:
    archive = OrthancPriors(
        sites.client, PRIORS_PEER_NAME, target_aet=PREREAD_AET, timeout_s=60, dicom_timeout_s=5
    )
    ctx = BackfillContext(
        jobs=sites.jobs,
        store=BackfillStore(sites.jobs),
        workspace=sites.client,
        archive=archive,
        grants=sites.grants,
        audit=sites.audit,
        predictor=sites.predictor,
        limits=SeriesLimits(),
        lung_rads=LungRadsPolicy(),
        peer_aet=PACS_AET,
        actor="test",
        live_busy=live_jobs_waiting(sites.jobs),
    )
    return dataclasses.replace(ctx, **changes)  # type: ignore[arg-type]


def _quality_review(tenant: str) -> GrantSpec:
    now = datetime.datetime.now(UTC)
    return GrantSpec(
        tenant=tenant,
        purpose=Purpose.QUALITY_REVIEW,
        valid_from=now - timedelta(minutes=1),
        valid_to=now + timedelta(days=1),
        legal_basis="synthetic phantom studies, no patient data",
        issued_by="test",
        sender_aets=(PACS_AET,),
    )


def test_without_a_quality_review_grant_nothing_is_read(sites: Sites) -> None:
    slept: list[float] = []
    ctx = _context(sites, sleep=slept.append, clock=lambda: 100.0)
    report = run_backfill(ctx, "other", FIRST, LAST, rate_per_hour=3600, started_by="test")
    assert report.found == 2 and report.new == 2 and report.finished
    assert report.counts["refused"] == 2 and report.counts["done"] == 0
    assert slept == [1.0]  # 3600 an hour: the second study a second after the first
    for name in ("lost", "seen"):
        uid = sites.studies[name]
        assert sites.client.find_study(uid) is None  # never moved
        actions = [
            (r.event.action.value, r.event.tenant) for r in sites.audit.records(study_uid=uid)
        ]
        assert actions == [("access.refused", "other")]
    (item, _) = ctx.store.items("other")
    assert item.reason is not None and "no valid quality-review grant" in item.reason


def test_the_watcher_leaves_a_study_the_backfill_moved_alone(sites: Sites) -> None:
    day = datetime.date(2024, 3, 2)
    uid, datasets = _copy(sites.template, "HELD-4", day)
    store = BackfillStore(sites.jobs)
    run, _ = store.open_run("held", FIRST, LAST, rate_per_hour=None, started_by="test")
    found = ArchivedStudy(uid, day, "HELD-4", ISSUER, ("CT",), "", "", len(datasets))
    assert store.add_found(run, [found]) == 1
    store.update("held", uid, state="held", moved=True)
    assert len(sites.client.store(datasets)) == len(datasets)
    model = sites.predictor.package.card
    watcher = Watcher(
        sites.client,
        sites.jobs,
        [ModelRef(model.id, model.version, model.name, model.onnx.sha256)],
        lambda _job: None,
        tenant_of=lambda _aet: "default",
        audit=sites.audit,
    )
    orthanc_id = sites.client.find_study(uid)
    assert orthanc_id is not None
    deadline = time.monotonic() + 30
    while not sites.client.study(orthanc_id).is_stable:  # what the watcher reads
        assert time.monotonic() < deadline, "the study never became stable"
        time.sleep(0.2)
    assert watcher.reconcile() == 0
    assert sites.jobs.current_for_study(uid) == ()
    store.update("held", uid, state="done", moved=False)  # read and left in place
    assert watcher.reconcile() == 1


def test_the_range_is_read_once_resumably_and_the_lost_patient_listed(sites: Sites) -> None:
    sites.grants.create(_quality_review("default"))
    busy = iter([True, True])  # two live studies in the way of the first archived one
    slept: list[float] = []
    ctx = _context(sites, live_busy=lambda: next(busy, False), sleep=slept.append, poll_s=0.5)

    first = run_backfill(ctx, "default", FIRST, LAST, started_by="test", limit=1)
    assert (first.found, first.new, first.read, first.finished) == (2, 2, 1, False)
    assert slept == [0.5, 0.5]  # it waited for the live studies
    assert first.counts["done"] == 1 and first.counts["found"] == 1

    again = run_backfill(ctx, "default", FIRST, LAST, started_by="test")  # resumes
    assert again.resumed and again.run.id == first.run.id
    assert (again.new, again.read, again.finished) == (0, 1, True)
    assert again.counts["done"] == 2

    # a third start finds the same studies and reads none of them twice
    third = run_backfill(ctx, "default", FIRST, LAST, started_by="test")
    assert not third.resumed and (third.found, third.new, third.read) == (2, 0, 0)

    for name in ("lost", "seen"):
        uid = sites.studies[name]
        (item,) = [i for i in ctx.store.items("default") if i.study_instance_uid == uid]
        assert item.state == "done" and not item.moved, item.reason
        # the 20 mm nodule, and the false positives the default model still makes (evaluation.md)
        assert item.summary is not None and item.summary["ge_6mm"] >= 1
        assert 17.0 <= float(item.summary["largest_mean_diameter_mm"]) <= 23.0  # 20 mm nodule
        assert sites.client.find_study(uid) is None  # read, then deleted from PreRead's Orthanc
        assert sites.jobs.current_for_study(uid) == ()  # no live job: no SR, no SEG, no webhook
        records = [
            r.event for r in sites.audit.records(study_uid=uid) if r.event.tenant == "default"
        ]
        assert [e.action.value for e in records] == [
            "backfill.retrieve",
            "pixels.fetch",
            "inference.run",
        ]
        assert {e.purpose for e in records} == {"quality-review"}
    assert sites.studies["old"] not in {i.study_instance_uid for i in ctx.store.items("default")}

    cases = lost_to_follow_up(
        ctx.store,
        ctx.archive,
        sites.audit,
        sites.grants,
        "default",
        sender_aet=PACS_AET,
        actor="test",
        export_format="json",
    )
    assert [(c.patient_id, c.study_instance_uid) for c in cases] == [
        ("LOST-1", sites.studies["lost"])
    ]
    doc = json.loads(to_json(cases))
    assert doc["count"] == 1 and doc["cases"][0]["accession_number"] == "ACC-LOST-1"
    exports = [r.event for r in sites.audit.records() if r.event.action.value == "export"]
    assert exports[-1].detail["kind"] == "lost-to-follow-up" and exports[-1].detail["cases"] == 1


def test_a_study_recorded_for_another_tenant_is_not_read(sites: Sites) -> None:
    sites.grants.create(_quality_review("hosp-b"))
    uid = generate_uid()
    day = datetime.date(2024, 3, 20)
    sites.jobs.record_study(
        StudyFacts(uid, "0" * 44, "default", PACS_AET, "B-1", ISSUER, "", "", "", "", "20240320",
                   "", "", "CT")
    )  # fmt: skip
    ctx = _context(sites)
    run, _ = ctx.store.open_run("hosp-b", day, day, rate_per_hour=None, started_by="test")
    found = ArchivedStudy(uid, day, "B-1", ISSUER, ("CT",), "", "", 10)
    assert ctx.store.add_found(run, [found]) == 1
    (item,) = ctx.store.items("hosp-b")
    done = read_item(ctx, item)
    assert done.state == "refused" and done.reason is not None and "another tenant" in done.reason
    assert sites.client.find_study(uid) is None  # never moved
