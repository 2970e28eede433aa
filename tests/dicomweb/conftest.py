"""The DICOMweb proxy's scene: the real app (``create_app``) on a real job store, in front of
the real private Orthanc (``tests/orthanc_support.py``), which holds three small phantom CT
studies (``training.phantoms``, 64 × 64, 3 slices; synthetic, no patient data): hosp-a's and
hosp-b's, each with a finished pre-read in PreRead's store and a clinical-preread grant, and
one PreRead does not know. Readers sign in through the real sign-in form, each in a browser
(a TestClient with its own cookies) of its own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset

from dicom_gateway.orthanc_server import OrthancServer
from dicom_gateway.source import orthanc_id
from preread.accounts import Role
from preread.api.app import create_app
from preread.api.deps import Services
from preread.audit import AuditLog, AuditRecord
from preread.caches import watch
from preread.dicomweb import Proxy
from preread.domain import ModelRef, PreReadResult
from preread.grants import GrantStore
from preread.reports import to_json
from preread.settings import Settings
from preread.store import (
    JobOutputs,
    JobState,
    JobStore,
    JobUpdate,
    StoredObject,
    StudyFacts,
    StudyFingerprint,
)
from tests.accounts.conftest import PASSWORD, sign_in
from tests.grant_support import clinical_preread
from tests.services import services_for as app_services
from training.phantom_dicom import write_phantom_study
from training.phantoms import generate_phantom

REPO = Path(__file__).resolve().parents[2]
MODEL = ModelRef("lung-nodule", "2.1.0", "PreRead Lung Nodule", "ab" * 32)


@dataclass(frozen=True)
class Study:
    """A study in Orthanc: its UIDs, and the first instance's."""

    uid: str
    series_uid: str
    instance_uid: str
    datasets: tuple[Dataset, ...] = field(repr=False)


@dataclass
class Scene:
    app: object
    services: Services
    proxy: Proxy
    orthanc: OrthancServer
    store: JobStore
    grants: GrantStore
    ours: Study  # hosp-a's
    theirs: Study  # hosp-b's
    unknown: Study  # in Orthanc, not in PreRead
    browsers: list[TestClient] = field(default_factory=list)

    def reader(self, username: str, tenant: str) -> TestClient:
        """A browser signed in as a new radiologist ``username`` of ``tenant``."""
        accounts = self.services.accounts
        assert accounts is not None
        accounts.create(tenant, username, Role.RADIOLOGIST, password=PASSWORD, by="tests")
        browser = self.browser()
        answer = sign_in(browser, username)
        assert answer.status_code == 303, answer.text
        return browser

    def browser(self) -> TestClient:
        browser = TestClient(self.app, follow_redirects=False)  # type: ignore[arg-type]
        self.browsers.append(browser)
        return browser

    def records(self) -> list[AuditRecord]:
        """The audit trail (a route answers after its record is committed)."""
        return list(AuditLog(self.store.engine).records())


def phantom(seed: int, tmp: Path, patient_id: str) -> Study:
    files = write_phantom_study(
        generate_phantom(seed, matrix=64, max_slices=3, nodules=[]), tmp, patient_id=patient_id
    )
    datasets = tuple(pydicom.dcmread(p) for p in sorted(files.ct_dir.glob("CT*.dcm")))
    first = datasets[0]
    return Study(
        str(first.StudyInstanceUID),
        str(first.SeriesInstanceUID),
        str(first.SOPInstanceUID),
        datasets,
    )


def record_done(store: JobStore, study: Study, tenant: str) -> None:
    """``study`` in PreRead's store as ``tenant``'s, its pre-read finished (no findings)."""
    first = study.datasets[0]
    patient = str(first.PatientID)
    facts = StudyFacts(
        study_instance_uid=study.uid,
        orthanc_study_id=orthanc_id(patient, study.uid),
        tenant=tenant,
        sender_aet="HOSPITAL",
        patient_id=patient,
        issuer_of_patient_id="",
        patient_name=str(first.PatientName),
        patient_birth_date="",
        patient_sex="O",
        accession_number="",
        study_date=str(first.StudyDate),
        study_time=str(first.StudyTime),
        study_description="Synthetic chest CT (phantom)",
        modalities="CT",
    )
    store.record_study(facts)
    job = store.enqueue(study.uid, facts.orthanc_study_id, MODEL, StudyFingerprint(3, "t")).job
    owner = "test-worker"
    assert store.claim(job.id, owner, 60) is not None
    store.advance(
        job.id, owner, JobState.INFERRING, JobUpdate(series_instance_uid=study.series_uid)
    )
    outputs = JobOutputs(sr=StoredObject("1.2.826.0.1.3680043.99.7", "1.2.826.0.1.3680043.99.8"))
    store.advance(job.id, owner, JobState.WRITING, JobUpdate(outputs=outputs))
    result = PreReadResult(
        study_instance_uid=study.uid,
        series_instance_uid=study.series_uid,
        frame_of_reference_uid=str(first.FrameOfReferenceUID),
        model=MODEL,
        provider="CPUExecutionProvider",
        findings=(),
        created=datetime(2025, 3, 1, 8, 0, tzinfo=UTC),
    )
    store.finish_done(job.id, owner, to_json(result, uid_seed=job.id))


def services_for(store: JobStore, tmp: Path, source: object, grants: GrantStore) -> Services:
    settings = Settings(data_dir=tmp / "data", models_dir=REPO / "models")
    return app_services(settings, store, tmp / "keys", source=source, grant_store=grants)


@pytest.fixture(scope="module")
def scene(orthanc: OrthancServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    tmp = tmp_path_factory.mktemp("dicomweb")
    ours = phantom(4, tmp / "ours", "PHANTOM-OURS")
    theirs = phantom(5, tmp / "theirs", "PHANTOM-THEIRS")
    unknown = phantom(6, tmp / "unknown", "PHANTOM-UNKNOWN")
    client = orthanc.client()
    for study in (ours, theirs, unknown):
        client.store(list(study.datasets))
    with JobStore.create(f"sqlite:///{tmp / 'preread.db'}") as store:
        store.migrate()
        record_done(store, ours, "hosp-a")
        record_done(store, theirs, "hosp-b")
        grants = GrantStore(store.engine)
        for tenant in ("hosp-a", "hosp-b"):
            grants.create(clinical_preread("tests", tenant=tenant))
        watched = watch(store, grants, 64)
        services = services_for(store, tmp, client, grants)
        services.views, services.grants = watched.views, watched.grants
        app = create_app(services)
        scene = Scene(app, services, app.state.dicomweb, orthanc, store, grants, ours, theirs,
                      unknown)  # fmt: skip
        try:
            with TestClient(app):  # the lifespan: the relay's pooled client
                yield scene
        finally:
            for browser in scene.browsers:
                browser.close()
            watched.stop()
            services.auditor.close()
