"""The audit trail: who accessed which study's data, for what purpose, with what outcome.

Every access to patient data (a study received, pixels fetched, a model run, results stored, a
report read, an export, a de-identification, a study put in a data set) and every change to the
grants that authorize them is an :class:`AuditEvent`. :class:`AuditLog` appends it to a
hash chain in the job store's database (:mod:`.chain`: each record's SHA-256 covers the one
before), verifies the chain, keeps it for the retention period (six months at least, PRC
Cybersecurity Law art. 21(3); only its purge removes records) and :mod:`.fhir` exports it as
FHIR R4B AuditEvents. :mod:`.checkpoints` signs heads of the chain into a file outside the
database, so that a trail rewritten by someone who can bypass the triggers fails to verify.

PrereadError
└── AuditError   (the log could not record, read, verify or purge; a failed record means the
    │             action it describes must not go ahead)
    └── CheckpointError   (the signed checkpoint file or its key cannot be used)
        └── CheckpointsTampered   (a line of that file does not verify)
"""

from preread.audit.chain import GENESIS, Checkpoint, Problem, ProblemKind, VerifyResult
from preread.audit.checkpoints import (
    CheckpointError,
    CheckpointFile,
    CheckpointsTampered,
    SignedCheckpoint,
    verify_signed,
)
from preread.audit.fhir import audit_bundle_json, to_audit_event, write_audit_bundle
from preread.audit.log import (
    DEFAULT_RETENTION_DAYS,
    MIN_RETENTION_DAYS,
    AuditAction,
    AuditError,
    AuditEvent,
    AuditLog,
    AuditRecord,
    Outcome,
)

__all__ = [
    "DEFAULT_RETENTION_DAYS",
    "GENESIS",
    "MIN_RETENTION_DAYS",
    "AuditAction",
    "AuditError",
    "AuditEvent",
    "AuditLog",
    "AuditRecord",
    "Checkpoint",
    "CheckpointError",
    "CheckpointFile",
    "CheckpointsTampered",
    "Outcome",
    "Problem",
    "ProblemKind",
    "SignedCheckpoint",
    "VerifyResult",
    "audit_bundle_json",
    "to_audit_event",
    "verify_signed",
    "write_audit_bundle",
]
