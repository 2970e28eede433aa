"""The job store: every reading of a study by a model, its state, leases and results, plus the
change-feed watcher's cursor; SQLAlchemy 2 + Alembic, SQLite by default, PostgreSQL in
production.

Every job is keyed by (StudyInstanceUID, model id, model version) and at most one of them is
*current* (not superseded) — a partial unique index guarantees it whatever the concurrency.
"""

from preread.store.database import default_url, make_engine
from preread.store.errors import (
    IllegalTransitionError,
    JobNotFoundError,
    LeaseLostError,
    StoreError,
)
from preread.store.jobstore import JobStore
from preread.store.migrate import upgrade
from preread.store.records import (
    EnqueueResult,
    FinishResult,
    JobOutputs,
    JobPage,
    JobRecord,
    JobUpdate,
    ModelKey,
    SeriesDecision,
    SeriesVerdict,
    StoredObject,
    StudyFacts,
    StudyFilter,
    StudyFingerprint,
    StudyPage,
    StudyRecord,
    StudySummary,
    Sweep,
    TenantJob,
)
from preread.store.states import JobState
from preread.store.transaction import Transaction

__all__ = [
    "EnqueueResult",
    "FinishResult",
    "IllegalTransitionError",
    "JobNotFoundError",
    "JobOutputs",
    "JobPage",
    "JobRecord",
    "JobState",
    "JobStore",
    "JobUpdate",
    "LeaseLostError",
    "ModelKey",
    "SeriesDecision",
    "SeriesVerdict",
    "StoreError",
    "StoredObject",
    "StudyFacts",
    "StudyFilter",
    "StudyFingerprint",
    "StudyPage",
    "StudyRecord",
    "StudySummary",
    "Sweep",
    "TenantJob",
    "Transaction",
    "default_url",
    "make_engine",
    "upgrade",
]
