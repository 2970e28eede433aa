"""Fixtures of the API tests: the real app on a real job store (SQLite and PostgreSQL), real
clients, keys and tokens; studies of two tenants with finished pre-reads written through the
store's own state machine. Only the Orthanc side is a folder (``FolderStudySource``) holding
each study's SR and SEG files; DNS is a :class:`~tests.webhooks.fake_dns.FakeDns` that puts
``example.org`` and ``example.net`` on a public address (literals and localhost resolve as
usual)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid

from dicom_gateway.folder import FolderStudySource
from dicom_gateway.source import orthanc_id
from inference.registry import Registry
from preread.api.app import create_app
from preread.api.deps import Services
from preread.caches import watch
from preread.domain import Finding, ModelRef, PreReadResult
from preread.grants import Grant, GrantSpec, GrantStore, Purpose
from preread.reports import to_json
from preread.security import ClientStore, KeyRing, TokenService
from preread.settings import Settings
from preread.store import (
    JobOutputs,
    JobRecord,
    JobState,
    JobStore,
    JobUpdate,
    StoredObject,
    StudyFacts,
    StudyFingerprint,
)
from preread.webhooks.addresses import DestinationPolicy
from preread.webhooks.outbox import WebhookStore
from tests.store.conftest import BACKENDS, fresh_postgres_database
from tests.webhooks.fake_dns import example_dns

REPO = Path(__file__).resolve().parents[2]
MODEL = ModelRef("lung-nodule", "1.0.0", "PreRead Lung Nodule UNet", "ab" * 32)


def finding(label: int, side: str, diameter: float) -> Finding:
    return Finding(
        label=label,
        center_lps_mm=(50.0 if side == "left" else -50.0, 10.0, -120.0 + label),
        long_axis_mm=diameter,
        volume_mm3=0.5 * diameter**3,
        probability=0.9,
        mean_hu=-20.0,
        voxel_count=100,
        lung_side=side,  # type: ignore[arg-type]
    )


@dataclass
class Api:
    """The app under test and what a test needs to set the scene."""

    client: TestClient
    store: JobStore
    clients: ClientStore
    tokens: TokenService
    services: Services
    folder: Path
    grants: GrantStore
    created: list[str] = field(default_factory=list)

    def token(
        self,
        tenant: str,
        scopes: str = "reports:read",
        rate_limit: int = 100_000,
        purpose: str = "clinical-preread",
    ) -> dict[str, str]:
        """The Authorization header of a new client of ``tenant`` with ``scopes``, whose
        token declares ``purpose``."""
        client, secret = self.clients.create(
            tenant, "test", scopes.split(), rate_limit, purposes=(purpose,)
        )
        answer = self.client.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client.client_id,
                "client_secret": secret,
            },
        )
        assert answer.status_code == 200, answer.text
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}

    def study(
        self, tenant: str | None, findings: tuple[Finding, ...] = (), *, done: bool = True
    ) -> tuple[StudyFacts, JobRecord]:
        """A study of ``tenant`` with one job, finished with ``findings`` when ``done``."""
        uid = str(generate_uid())
        patient = f"PAT-{len(self.created)}"
        facts = StudyFacts(
            study_instance_uid=uid,
            orthanc_study_id=orthanc_id(patient, uid),
            tenant=tenant,
            sender_aet="HOSPITAL",
            patient_id=patient,
            issuer_of_patient_id="",
            patient_name="DOE^JANE",
            patient_birth_date="19600101",
            patient_sex="F",
            accession_number=f"ACC{len(self.created)}",
            study_date=f"202501{10 + len(self.created) % 20:02d}",
            study_time="101500",
            study_description="CT CHEST",
        )
        self.created.append(uid)
        self.store.record_study(facts)
        job = self.store.enqueue(uid, facts.orthanc_study_id, MODEL, StudyFingerprint(10, "x")).job
        if not done:
            return facts, job
        owner = "test-worker"
        claimed = self.store.claim(job.id, owner, 60)
        assert claimed is not None
        series = str(generate_uid())
        self.store.advance(job.id, owner, JobState.INFERRING, JobUpdate(series_instance_uid=series))
        sr = StoredObject(str(generate_uid()), str(generate_uid()))
        seg = StoredObject(str(generate_uid()), str(generate_uid())) if findings else None
        self.store.advance(
            job.id, owner, JobState.WRITING, JobUpdate(outputs=JobOutputs(sr=sr, seg=seg))
        )
        result = PreReadResult(
            study_instance_uid=uid,
            series_instance_uid=series,
            frame_of_reference_uid=str(generate_uid()),
            model=MODEL,
            provider="CPUExecutionProvider",
            findings=findings,
            created=datetime(2025, 1, 10, 12, 0, tzinfo=UTC),
        )
        done_job = self.store.finish_done(job.id, owner, to_json(result)).job
        return facts, done_job


GRANTED = ("hosp-a", "hosp-b", "default")
"""Tenants with a clinical-preread grant in every test (others have none)."""


def grant(
    grants: GrantStore, tenant: str, purpose: Purpose = Purpose.CLINICAL_PREREAD, **scope: Any
) -> Grant:
    now = datetime.now(UTC)
    return grants.create(
        GrantSpec(
            tenant=tenant,
            purpose=purpose,
            valid_from=now - timedelta(hours=1),
            valid_to=now + timedelta(days=30),
            legal_basis="test contract",
            issued_by="tests",
            **scope,
        )
    )


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'api.db'}"
    else:
        with fresh_postgres_database() as url:
            yield url


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[Api]:
    settings = Settings(data_dir=tmp_path / "data", models_dir=REPO / "models")
    with JobStore.create(db_url) as store:
        store.migrate()
        keys = KeyRing(tmp_path / "keys")
        keys.ensure()
        tokens = TokenService(keys, issuer="preread", audience="preread-api", ttl_s=300)
        clients = ClientStore(store.engine)
        folder = tmp_path / "orthanc"
        folder.mkdir()
        grants = GrantStore(store.engine)
        for tenant in GRANTED:
            grant(grants, tenant)
        watched = watch(store, grants, 64)
        services = Services(
            settings=settings,
            store=store,
            clients=clients,
            tokens=tokens,
            webhooks=WebhookStore(store.engine),
            registry=Registry(settings.models_dir),
            source=FolderStudySource(folder),
            ready_checks={"database": store.counts_by_state},
            views=watched.views,
            grant_store=grants,
            grants=watched.grants,
            webhook_policy=DestinationPolicy.from_settings(settings, resolve=example_dns()),
        )
        try:
            with TestClient(create_app(services)) as client:
                yield Api(client, store, clients, tokens, services, folder, grants)
        finally:
            watched.stop()
            services.auditor.close()
