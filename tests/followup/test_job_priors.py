"""The comparison with priors made by the job that reads a study (``run_job``), end to end.

Two real Orthancs, as in ``tests/dicom_gateway/test_priors.py``: PreRead's (AE title PREREAD)
and the hospital PACS (PACS), each listing the other; a peer on a port nothing listens on is a
PACS that is down. The studies are tiny phantoms (64×64, 20 slices) of one anatomy (the same
seed: a prior registers onto the current study), with fresh UIDs, dates and patient IDs. The
model is a stand-in with the shipped card (series rules relaxed for 20 slices, a 3 mm grid for
the lung mask) that finds one nodule at the volume's centre: enough for a persistent nodule
keeping the prior's tracking UID.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from dicom_gateway.client import OrthancClient
from dicom_gateway.orthanc_server import (
    OrthancServer,
)
from dicom_gateway.priors import OrthancPriors
from inference.package import load_card
from inference.predict import Prediction
from inference.session import SessionInfo
from preread.audit import AuditLog
from preread.domain import Finding, ModelRef, Volume
from preread.followup.priors import PRIORS_PEER_NAME, PriorsSetup, priors_setup
from preread.grants import GrantStore
from preread.jobs import JobContext, retry_comparisons, run_job
from preread.settings import Settings
from preread.store import JobState, JobStore, StudyFingerprint, default_url
from tests.grant_support import clinical_preread
from tests.orthanc_support import PACS_AET, PREREAD_AET, preread_and_pacs
from training.phantom_dicom import write_phantom_study
from training.phantoms import generate_phantom

ROOT = Path(__file__).resolve().parents[2]
CARD = load_card(ROOT / "models" / "lung-nodule" / "2.3.0" / "model.yaml")
MODEL = ModelRef(CARD.id, CARD.version, CARD.name, CARD.onnx.sha256)
ISSUER = "HOSP-A"
SLICES = 20
SEED = 21
READ_DAY = datetime.date(2025, 1, 20)
INFO = SessionInfo(
    CARD.id,
    CARD.version,
    "0" * 64,
    ("CPUExecutionProvider",),
    "CPUExecutionProvider",
    (),
    0,
    "fail",
)


class StandIn:
    """The shipped card with series rules for 20 slices and a 3 mm grid; one nodule at the
    volume's centre (a 3-voxel cube), no lung mask of its own (PreRead makes it)."""

    def __init__(self) -> None:
        card = CARD.model_copy(
            update={
                "series_rules": CARD.series_rules.model_copy(update={"min_slices": 5}),
                "input": CARD.input.model_copy(update={"spacing_mm": (3.0, 3.0, 3.0)}),
            }
        )
        self.package = type("Package", (), {"card": card})()
        self.session_info = INFO
        self.volumes = 0

    def predict(self, volume: Volume) -> Prediction:
        self.volumes += 1
        g = volume.geometry
        centre = tuple(s // 2 for s in g.shape)
        labels = np.zeros(g.shape, dtype=np.int32)
        k, j, i = centre
        labels[k - 1 : k + 2, j - 1 : j + 2, i - 1 : i + 2] = 1
        lps = g.index_to_lps(centre)
        finding = Finding(
            label=1,
            center_lps_mm=(float(lps[0]), float(lps[1]), float(lps[2])),
            long_axis_mm=8.0,
            volume_mm3=270.0,
            probability=0.9,
            mean_hu=20.0,
            voxel_count=27,
            lung_side="right",
            nodule_type="solid",
            axial_long_axis_mm=8.0,
            short_axis_mm=7.0,
        )
        return Prediction(
            model_id=CARD.id,
            model_version=CARD.version,
            findings=(finding,),
            probability=labels.astype(np.float32),
            labels=labels,
            model_geometry=g,
            session_info=INFO,
            timings={},
            region=None,
        )


@dataclass(frozen=True)
class Sites:
    preread: OrthancServer
    pacs: OrthancServer
    client: OrthancClient
    store: JobStore
    grants: GrantStore
    audit: AuditLog
    folder: Path


def _datasets(patient_id: str, day: datetime.date, out: Path) -> tuple[str, list[pydicom.Dataset]]:
    """The phantom of :data:`SEED` as a new study of ``patient_id`` on ``day``."""
    phantom = generate_phantom(SEED, matrix=64, max_slices=SLICES, nodules=[])
    files = write_phantom_study(phantom, out / f"{patient_id}-{day}", patient_id=patient_id)
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    datasets: list[pydicom.Dataset] = []
    for path in sorted(files.ct_dir.iterdir()):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PatientID, ds.IssuerOfPatientID = patient_id, ISSUER
        ds.StudyDate = ds.SeriesDate = day.strftime("%Y%m%d")
        datasets.append(ds)
    return str(study_uid), datasets


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    preread_cfg, pacs_cfg = preread_and_pacs(tmp_path_factory, pacs_peer=PRIORS_PEER_NAME)
    data = tmp_path_factory.mktemp("data")
    with (
        OrthancServer(preread_cfg) as preread,
        OrthancServer(pacs_cfg) as pacs,
        preread.client(timeout=30) as client,
        JobStore.create(default_url(data)) as store,
    ):
        store.migrate()
        audit = AuditLog(store.engine)
        grants = GrantStore(store.engine, audit=audit)
        grants.create(clinical_preread("test"))  # tenant "default": every study
        yield Sites(preread, pacs, client, store, grants, audit, data)


def _on_pacs(sites: Sites, patient_id: str, day: datetime.date) -> str:
    uid, datasets = _datasets(patient_id, day, sites.folder)
    with sites.pacs.client(timeout=30) as upload:
        assert len(upload.store(datasets)) == SLICES
    return uid


def _on_preread(sites: Sites, patient_id: str, day: datetime.date = READ_DAY) -> str:
    uid, datasets = _datasets(patient_id, day, sites.folder)
    assert len(sites.client.store(datasets)) == SLICES
    return uid


def _context(
    sites: Sites,
    predictor: StandIn,
    peer: str | None = PRIORS_PEER_NAME,
    *,
    tenant: str = "default",
    pacs_tenant: str | None = None,
) -> JobContext:
    setup = None
    if peer is not None:
        priors = OrthancPriors(
            sites.client, peer, target_aet=PREREAD_AET, timeout_s=30, dicom_timeout_s=3
        )
        setup = PriorsSetup(priors, peer, PACS_AET if peer == PRIORS_PEER_NAME else None)

    def tenant_of(sender: str) -> str:  # the moved priors come from the PACS
        return (pacs_tenant or tenant) if sender == PACS_AET else tenant

    return JobContext(
        store=sites.store,
        source=sites.client,
        predictor_for=lambda _id, _version: predictor,  # type: ignore[arg-type,return-value]
        owner="test",
        grants=sites.grants,
        audit=sites.audit,
        tenant_of=tenant_of,
        priors=setup,
    )


def _read(sites: Sites, study_uid: str, ctx: JobContext) -> dict[str, Any]:
    orthanc_id = sites.client.find_study(study_uid)
    assert orthanc_id is not None
    job = sites.store.enqueue(study_uid, orthanc_id, MODEL, StudyFingerprint(SLICES, "x")).job
    finished = run_job(job.id, ctx)
    assert finished is not None
    assert finished.job.state is JobState.DONE, finished.job.reason
    assert finished.job.result is not None
    return finished.job.result


def _sr_texts(sites: Sites, study_uid: str, series_uid: str) -> list[str]:
    """The TEXT values of the study's SR (the comparison sentences among them)."""
    (sr,) = sites.client.series_datasets(study_uid, series_uid)
    texts: list[str] = []

    def walk(items: Any) -> None:
        for item in items:
            if "TextValue" in item:
                texts.append(str(item.TextValue))
            walk(item.get("ContentSequence", []))

    walk(sr.ContentSequence)
    return texts


def _actions(sites: Sites, study_uid: str) -> list[tuple[str, str, Any]]:
    return [
        (r.event.action.value, r.event.outcome.value, r.event.detail.get("grant_id"))
        for r in sites.audit.records(study_uid=study_uid)
    ]


def test_a_prior_on_the_pacs_is_retrieved_read_and_compared(sites: Sites) -> None:
    baseline = _on_pacs(sites, "PRI-1", datetime.date(2023, 1, 10))
    previous = _on_pacs(sites, "PRI-1", datetime.date(2024, 1, 15))
    other = _on_pacs(sites, "PRI-9", datetime.date(2024, 6, 1))  # another patient
    current = _on_preread(sites, "PRI-1")
    predictor = StandIn()
    result = _read(sites, current, _context(sites, predictor))

    comparison = result["comparison"]
    assert comparison["status"] == "compared", comparison
    assert comparison["prior"]["study_instance_uid"] == previous
    assert comparison["prior"]["study_date"] == "2024-01-15"
    assert comparison["baseline"]["study_instance_uid"] == baseline
    assert comparison["registration_residual_mm"] < 1.0
    (row,) = comparison["nodules"]
    assert row["status"] == "persistent" and row["days_between"] == 371
    assert row["baseline_study_uid"] == baseline
    (finding,) = result["findings"]
    assert finding["tracking_uid"] == row["tracking_uid"]  # the prior's: one UID per nodule
    assert predictor.volumes == 3  # the current study and both priors, read here
    job = sites.store.current_for_study(current)[0]
    assert job.outputs.sr is not None
    texts = _sr_texts(sites, current, job.outputs.sr.series_instance_uid)
    assert any(t.startswith("Compared with the prior CT of 2024-01-15") for t in texts), texts
    assert any(t.startswith("Follow-up: Persistent since 2024-01-15") for t in texts), texts

    # both priors came into PreRead's Orthanc, unchanged (nothing written into them), recorded
    # for the current study's tenant; the other patient's study stayed on the PACS
    for prior in (previous, baseline):
        orthanc_id = sites.client.find_study(prior)
        assert orthanc_id is not None
        assert len(sites.client.study(orthanc_id).series_ids) == 1
        recorded = sites.store.study(prior)
        assert recorded is not None and recorded.tenant == "default"
        assert recorded.facts.sender_aet == PACS_AET
    assert sites.client.find_study(other) is None

    # every access audited with the grant that allowed it, under the study it touched
    grant_id = next(g for a, _, g in _actions(sites, current) if a == "pixels.fetch")
    assert ("priors.query", "success", grant_id) in _actions(sites, current)
    for prior in (previous, baseline):
        assert _actions(sites, prior) == [
            ("priors.retrieve", "success", grant_id),
            ("pixels.fetch", "success", grant_id),
            ("inference.run", "success", grant_id),
        ]
        records = list(sites.audit.records(study_uid=prior))
        assert all(r.event.detail["for_study"] == current for r in records)
        assert all(r.event.tenant == "default" for r in records)


def test_a_prior_read_by_preread_before_gives_its_stored_result(sites: Sites) -> None:
    prior = _on_pacs(sites, "PRI-2", datetime.date(2024, 3, 1))
    # moved into PreRead's Orthanc and read by a job of its own (no earlier CT: no-prior)
    OrthancPriors(sites.client, PRIORS_PEER_NAME, target_aet=PREREAD_AET).retrieve(prior)
    first = _read(sites, prior, _context(sites, StandIn()))
    assert first["comparison"]["status"] == "no-prior"
    stored_uid = first["findings"][0]["tracking_uid"]

    current = _on_preread(sites, "PRI-2")
    predictor = StandIn()
    result = _read(sites, current, _context(sites, predictor))
    comparison = result["comparison"]
    assert comparison["status"] == "compared", comparison
    (row,) = comparison["nodules"]
    assert row["status"] == "persistent" and row["tracking_uid"] == stored_uid
    assert result["findings"][0]["tracking_uid"] == stored_uid
    assert predictor.volumes == 1  # the prior's findings came from its result
    actions = [a for a, _, _ in _actions(sites, prior)]
    assert actions[-1] == "pixels.fetch"  # its lung surface, from its volume
    assert "inference.run" not in actions[actions.index("priors.query") + 1 :]


def test_a_patient_without_earlier_ct_is_a_baseline_exam(sites: Sites) -> None:
    _on_pacs(sites, "PRI-3", datetime.date(2025, 6, 1))  # later: not a prior
    current = _on_preread(sites, "PRI-3")
    result = _read(sites, current, _context(sites, StandIn()))
    assert result["comparison"] == {
        "status": "no-prior",
        "reason": None,
        "prior": None,
        "baseline": None,
        "registration_residual_mm": None,
        "retryable": None,
        "nodules": [],
    }


def test_pacs_down_the_study_is_read_and_the_comparison_unavailable(sites: Sites) -> None:
    current = _on_preread(sites, "PRI-4")
    started = time.monotonic()
    result = _read(sites, current, _context(sites, StandIn(), "down"))
    assert time.monotonic() - started < 15
    comparison = result["comparison"]
    assert comparison["status"] == "unavailable"
    assert "could not be reached" in comparison["reason"]
    assert comparison["retryable"] is True  # the PACS may come back: the sweep reads it again
    assert "PRI-4" not in comparison["reason"] and ISSUER not in comparison["reason"]
    assert len(result["findings"]) == 1  # the current reading is whole
    assert comparison["nodules"] == []


def test_a_comparison_left_unavailable_is_made_when_the_reconcile_sweep_reads_it_again(
    sites: Sites,
) -> None:
    """The PACS was down: the study was read and stored without its comparison. Once the PACS
    is back, the sweep's retry reads it again (a new job of the same content), compares it, and
    the new SR/SEG replace the first ones in the study: never two AI results in it."""
    current = _on_preread(sites, "PRI-10")
    first = _read(sites, current, _context(sites, StandIn(), "down"))
    assert first["comparison"]["status"] == "unavailable"
    (job,) = sites.store.current_for_study(current)
    assert job.reason_code == "comparison_unavailable"
    _on_pacs(sites, "PRI-10", datetime.date(2024, 3, 3))  # the PACS, back, has the prior
    sent: list[str] = []
    assert retry_comparisons(sites.store, sent.append, 0.0, 3) >= 1  # (other tests' too)
    (again,) = sites.store.current_for_study(current)
    assert again.id in sent and again.supersedes == job.id and again.fingerprint == job.fingerprint
    finished = run_job(again.id, _context(sites, StandIn()))
    assert finished is not None
    assert finished.job.state is JobState.DONE, (finished.job.reason_code, finished.job.reason)
    assert finished.job.result is not None and finished.job.reason_code is None
    assert finished.job.result["comparison"]["status"] == "compared"
    orthanc_id = sites.client.find_study(current)
    assert orthanc_id is not None
    modalities = sorted(
        sites.client.series(s).modality for s in sites.client.study(orthanc_id).series_ids
    )
    assert modalities.count("SR") == 1 and modalities.count("SEG") == 1
    assert finished.job.outputs.sr is not None
    assert job.outputs.sr is not None
    assert finished.job.outputs.sr.series_instance_uid != job.outputs.sr.series_instance_uid
    retry_comparisons(sites.store, sent.append, 0.0, 3)
    assert sites.store.current_for_study(current)[0].id == again.id  # compared: done with it


def test_a_study_read_again_for_its_comparison_keeps_its_nodules_tracking_uids(
    sites: Sites,
) -> None:
    """The PACS still down at the sweep's retry: the revised result's SR and SEG are new
    instances, its new nodules keep the tracking UIDs the first reading gave them (one nodule,
    one UID in the RIS and the viewer)."""
    current = _on_preread(sites, "PRI-11")
    first = _read(sites, current, _context(sites, StandIn(), "down"))
    (job,) = sites.store.current_for_study(current)
    sent: list[str] = []
    retry_comparisons(sites.store, sent.append, 0.0, 3)
    (again,) = sites.store.current_for_study(current)
    assert again.supersedes == job.id
    finished = run_job(again.id, _context(sites, StandIn(), "down"))
    assert finished is not None and finished.job.result is not None
    second = finished.job.result
    assert second["comparison"]["status"] == "unavailable"
    uids = [f["tracking_uid"] for f in first["findings"]]
    assert uids and [f["tracking_uid"] for f in second["findings"]] == uids
    assert job.outputs.sr is not None and finished.job.outputs.sr is not None
    assert finished.job.outputs.sr.sop_instance_uid != job.outputs.sr.sop_instance_uid


def test_no_grant_for_the_prior_it_is_neither_retrieved_nor_read(sites: Sites) -> None:
    prior = _on_pacs(sites, "PRI-5", datetime.date(2024, 2, 2))
    current = _on_preread(sites, "PRI-5")
    # tenant hosp-c's grant covers studies of 2025 only: the current one, not the prior
    spec = clinical_preread("test", tenant="hosp-c")
    sites.grants.create(dataclasses.replace(spec, study_date_from="20250101"))
    predictor = StandIn()
    result = _read(sites, current, _context(sites, predictor, tenant="hosp-c"))
    comparison = result["comparison"]
    assert comparison["status"] == "unavailable"
    assert "no valid clinical-preread grant covers the prior" in comparison["reason"]
    assert "20250101" in comparison["reason"]
    assert sites.client.find_study(prior) is None  # not retrieved
    assert predictor.volumes == 1
    assert [(a, o) for a, o, _ in _actions(sites, prior)] == [("access.refused", "refused")]


def test_a_prior_of_another_tenant_is_never_read(sites: Sites) -> None:
    prior = _on_pacs(sites, "PRI-6", datetime.date(2024, 2, 2))
    current = _on_preread(sites, "PRI-6")
    sites.grants.create(clinical_preread("test", tenant="hosp-d"))
    predictor = StandIn()
    ctx = _context(sites, predictor, tenant="hosp-d", pacs_tenant="hosp-e")
    result = _read(sites, current, ctx)
    comparison = result["comparison"]
    assert comparison["status"] == "unavailable"
    assert "recorded for another tenant" in comparison["reason"]
    assert "hosp-e" not in comparison["reason"] and "PRI-6" not in comparison["reason"]
    assert predictor.volumes == 1  # the prior's pixels were never fetched
    actions = [a for a, _, _ in _actions(sites, prior)]
    assert "pixels.fetch" not in actions and actions[-1] == "access.refused"
    recorded = sites.store.study(prior)
    assert recorded is not None and recorded.tenant == "hosp-e"


def test_without_a_pacs_the_comparison_is_not_configured(sites: Sites) -> None:
    current = _on_preread(sites, "PRI-7")
    result = _read(sites, current, _context(sites, StandIn(), None))
    assert result["comparison"]["status"] == "not-configured"
    assert not [a for a, _, _ in _actions(sites, current) if a.startswith("priors.")]
    job = sites.store.current_for_study(current)[0]
    assert job.outputs.sr is not None
    texts = _sr_texts(sites, current, job.outputs.sr.series_instance_uid)
    assert "Not compared with earlier CTs (no PACS is configured for priors)." in texts


# -- settings -------------------------------------------------------------------------------


def test_priors_setup_follows_the_settings(sites: Sites, tmp_path: Path) -> None:
    assert priors_setup(Settings(data_dir=tmp_path), sites.client) is None
    private = priors_setup(
        Settings(data_dir=tmp_path, priors_peer="PACS@10.1.2.3:104"), sites.client
    )
    assert private is not None
    assert (private.peer, private.peer_aet) == (PRIORS_PEER_NAME, "PACS")
    assert isinstance(private.source, OrthancPriors)
    assert private.source.target_aet == "PREREAD"
    external = priors_setup(
        Settings(data_dir=tmp_path, orthanc_url="http://orthanc:8042", priors_peer="pacs"),
        sites.client,
    )
    assert external is not None and (external.peer, external.peer_aet) == ("pacs", None)


def test_the_private_orthanc_lists_the_pacs_of_the_setting(sites: Sites, tmp_path: Path) -> None:
    """PREREAD_PRIORS_PEER=AET@host:port: the private Orthanc (AE title PREREAD, as the PACS
    knows it) gets the PACS among its DicomModalities and can query it."""
    from preread.service import Service

    prior = _on_pacs(sites, "PRI-8", datetime.date(2024, 5, 5))
    pacs_port = sites.pacs.config.dicom_port
    settings = Settings(data_dir=tmp_path, priors_peer=f"{PACS_AET}@127.0.0.1:{pacs_port}")
    service = Service(settings)
    client = service._open_orthanc()
    try:
        setup = priors_setup(settings, client)
        assert setup is not None
        modalities = client.rest("GET", "/modalities", params={"expand": ""})
        assert modalities[PRIORS_PEER_NAME]["AET"] == PACS_AET
        found = setup.source.find_priors("PRI-8", ISSUER, READ_DAY, "1.2.3")
        assert [c.study_instance_uid for c in found] == [prior]
    finally:
        client.close()
        service.close()
