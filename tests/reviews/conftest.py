"""A migrated job store (SQLite and PostgreSQL) and studies with a finished pre-read written
through the store's own state machine, for the review tests (:mod:`tests.study_support`)."""

from __future__ import annotations

from preread.domain import Comparison, ModelRef
from preread.store import JobRecord, JobStore, StudyFacts
from tests.study_support import finding, read_study, recorded_study, store

__all__ = ["MODEL", "done_study", "finding", "store"]

MODEL = ModelRef("lung-nodule", "2.1.0", "PreRead Lung Nodule", "cd" * 32)


def done_study(
    store: JobStore,
    tenant: str,
    findings: int = 2,
    *,
    patient: str = "PAT-1",
    comparison: Comparison | None = None,
) -> tuple[StudyFacts, JobRecord]:
    """A study of ``tenant`` whose current job is done with ``findings`` findings (and
    ``comparison``, the comparison with priors, when given)."""
    facts = recorded_study(store, tenant, patient=patient)
    found = [finding(n, 6.0 + 2 * n) for n in range(1, findings + 1)]
    return facts, read_study(store, facts, MODEL, found, comparison=comparison)
