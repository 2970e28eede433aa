"""Deterministic UIDs for everything PreRead writes back (PS3.5 9.1, 9.2).

A UID is derived, with :func:`pydicom.uid.generate_uid` and fixed entropy (pydicom's root:
with ``prefix=None`` pydicom ignores the entropy and returns a random UUID-derived UID), from

* the study and the source series that were read,
* the model id and version,
* a seed: ``uid_seed`` when given (for example the job id), else the result's ``created``
  time (ISO 8601), and
* the role of the UID ("seg-series", "tracking-3", ...).

Encoding the same result again gives the same UIDs, so a retried write-back replaces the
instances it already stored instead of adding a second copy; a different result (another
model version, or a new read of the grown study) gives different UIDs. Pass the same
``uid_seed`` to every encoder of one result (JSON, SEG, SR), or none to any.

A *revised* result — the same content read again because its comparison with the priors was
unavailable — has a seed of its own (:func:`revised_seed`): its SR and SEG are new instances
that supersede the first ones. Its findings keep their tracking UIDs (a tracking UID names a
nodule, not a report): :func:`new_tracking_uid` uses the content's seed.
"""

from __future__ import annotations

from pydicom.uid import UID, generate_uid

from preread.domain import Finding, FindingConcept, ModelRef, PreReadResult

__all__ = [
    "device_uid",
    "new_tracking_uid",
    "report_uid",
    "revised_seed",
    "tracking_id",
    "tracking_uid",
]

_SCHEME = "preread-report-uid-v1"
_REVISION = "|revision-of:"


def revised_seed(content_seed: str, previous_job_id: str) -> str:
    """The seed of a result that revises ``previous_job_id``'s result of the same content."""
    return f"{content_seed}{_REVISION}{previous_job_id}"


def _seed(result: PreReadResult, uid_seed: str | None) -> str:
    return uid_seed if uid_seed is not None else result.created.isoformat()


def report_uid(result: PreReadResult, role: str, *, uid_seed: str | None = None) -> UID:
    """The UID playing ``role`` in the reports of ``result`` (see the module docstring)."""
    return generate_uid(
        entropy_srcs=[
            _SCHEME,
            result.study_instance_uid,
            result.series_instance_uid,
            result.model.id,
            result.model.version,
            _seed(result, uid_seed),
            role,
        ]
    )


def tracking_uid(result: PreReadResult, finding: Finding, *, uid_seed: str | None = None) -> UID:
    """The Tracking UID of ``finding`` (TID 4108, DCM 112040), shared by the JSON, SEG and SR.

    A nodule the comparison with the priors found before (``persistent``) keeps the prior's
    tracking UID, so one nodule has one UID across the patient's studies; any other finding
    has its own, :func:`new_tracking_uid`."""
    row = result.comparison.for_label(finding.label) if result.comparison else None
    if row is not None and row.status == "persistent":
        return UID(row.tracking_uid)
    return new_tracking_uid(result, finding, uid_seed=uid_seed)


def new_tracking_uid(
    result: PreReadResult, finding: Finding, *, uid_seed: str | None = None
) -> UID:
    """The tracking UID ``finding`` has as a nodule first seen in ``result`` (the same for a
    revision of the result: the content's seed)."""
    content = uid_seed.split(_REVISION, 1)[0] if uid_seed is not None else None
    return report_uid(result, f"tracking-{finding.label}", uid_seed=content)


def tracking_id(finding: Finding, concept: FindingConcept) -> str:
    """The human-readable Tracking Identifier (TID 4108) viewers show for ``finding``: "AI
    nodule 3" (the result's finding type, in lower case)."""
    return f"AI {concept.finding.meaning.lower()} {finding.label}"


def device_uid(model: ModelRef) -> UID:
    """Device Observer UID (TID 1004) of one model build: the same for every result of it."""
    return generate_uid(entropy_srcs=[_SCHEME, "device", model.id, model.version, model.sha256])
