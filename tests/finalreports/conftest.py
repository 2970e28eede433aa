"""Fixtures of the final-report tests: a migrated job store on each backend (SQLite and
PostgreSQL), studies with a finished AI reading written through the store's own state machine
(:mod:`tests.study_support`, with the accession number and the findings' sizes chosen), and
quality-review grants."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from preread.audit import AuditLog
from preread.domain import Finding, ModelRef
from preread.finalreports import FinalReportStore
from preread.grants import Grant, GrantSpec, GrantStore, Purpose
from preread.store import JobOutputs, JobRecord, JobStore, StoredObject, StudyFacts
from tests.api.conftest import api, db_url  # the API tests' app, for test_api.py
from tests.study_support import finding as _finding
from tests.study_support import finish_reading, read_study, recorded_study, store

__all__ = ["api", "db_url", "store"]

MODEL = ModelRef("lung-nodule", "2.6.0", "PreRead Lung Nodule", "ef" * 32)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[JobStore]:
    with JobStore.create(f"sqlite:///{tmp_path / 'final.db'}") as store:
        store.migrate()
        yield store


@pytest.fixture
def reports(store: JobStore) -> FinalReportStore:
    return FinalReportStore(store, audit=AuditLog(store.engine))


def grant(store: JobStore, tenant: str, purpose: Purpose = Purpose.QUALITY_REVIEW) -> Grant:
    now = datetime.now(UTC)
    return GrantStore(store.engine).create(
        GrantSpec(
            tenant=tenant,
            purpose=purpose,
            valid_from=now - timedelta(hours=1),
            valid_to=now + timedelta(days=30),
            legal_basis="test contract",
            issued_by="tests",
        )
    )


def finding(label: int, diameter: float, side: str = "right") -> Finding:
    return _finding(label, diameter, side=side)


def study(store: JobStore, tenant: str, accession: str) -> StudyFacts:
    """A study of ``tenant`` with ``accession``, as the watcher records it (no job)."""
    return recorded_study(store, tenant, accession=accession)


def _sr_only() -> JobOutputs:
    return JobOutputs(sr=StoredObject(str(generate_uid()), str(generate_uid())), seg=None)


def done_study(
    store: JobStore, tenant: str, accession: str, findings: tuple[Finding, ...]
) -> tuple[StudyFacts, JobRecord]:
    """A study whose current job is done with ``findings``."""
    facts = study(store, tenant, accession)
    return facts, read_study(store, facts, MODEL, findings, outputs=_sr_only())


def finish(store: JobStore, job: JobRecord, findings: tuple[Finding, ...]) -> JobRecord:
    """``job`` claimed, run and done with ``findings`` through the store's state machine."""
    model = ModelRef(job.model_id, job.model_version, MODEL.name, MODEL.sha256)
    return finish_reading(store, job, model, findings, outputs=_sr_only())
