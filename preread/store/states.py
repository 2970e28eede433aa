"""The job state machine: which state may follow which, as data and pure functions.

::

    queued ──claim──> fetching ──> inferring ──> writing ──> done
       ^                 │  │          │  │          │
       │                 │  └──────────┴──┴──────────┴──> failed ──retry──> queued
       │                 ├───────────────> not_applicable
       │                 └───────────────> not_authorized ──a grant now covers it──> queued
       └──── lease expired / released (from fetching, inferring, writing)

    done, failed, not_applicable, not_authorized ──(the study grew)──> superseded   (final)

A job whose lease expired may also be claimed again directly (fetching, inferring or
writing → fetching). Only ``superseded`` is not *current*: at most one current job exists per
(StudyInstanceUID, model id, model version).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from preread.store.errors import IllegalTransitionError


class JobState(StrEnum):
    """Where a job is; the value is what the database stores."""

    QUEUED = "queued"
    FETCHING = "fetching"
    INFERRING = "inferring"
    WRITING = "writing"
    DONE = "done"
    FAILED = "failed"
    NOT_APPLICABLE = "not_applicable"
    NOT_AUTHORIZED = "not_authorized"
    SUPERSEDED = "superseded"


IN_PROGRESS: frozenset[JobState] = frozenset(
    {JobState.FETCHING, JobState.INFERRING, JobState.WRITING}
)
"""States in which a worker holds a lease on the job."""

FINISHED: frozenset[JobState] = frozenset(
    {JobState.DONE, JobState.FAILED, JobState.NOT_APPLICABLE, JobState.NOT_AUTHORIZED}
)
"""Current states no worker will change again (only a grown study, a retry or a new grant
does)."""

_BACK: frozenset[JobState] = frozenset({JobState.QUEUED, JobState.FETCHING})  # lease expired

TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.FETCHING}),
    JobState.FETCHING: frozenset(
        {JobState.INFERRING, JobState.NOT_APPLICABLE, JobState.NOT_AUTHORIZED, JobState.FAILED}
        | _BACK
    ),
    JobState.INFERRING: frozenset(
        {JobState.WRITING, JobState.NOT_APPLICABLE, JobState.FAILED} | _BACK
    ),
    JobState.WRITING: frozenset({JobState.DONE, JobState.FAILED} | _BACK),
    JobState.DONE: frozenset({JobState.SUPERSEDED}),
    JobState.FAILED: frozenset({JobState.SUPERSEDED, JobState.QUEUED}),
    JobState.NOT_APPLICABLE: frozenset({JobState.SUPERSEDED}),
    JobState.NOT_AUTHORIZED: frozenset({JobState.SUPERSEDED, JobState.QUEUED}),
    JobState.SUPERSEDED: frozenset(),
}


def can_transition(from_state: JobState, to_state: JobState) -> bool:
    """Whether the state machine allows ``from_state`` → ``to_state``."""
    return to_state in TRANSITIONS[from_state]


def check_transition(job_id: str, from_state: JobState, to_state: JobState) -> None:
    """Raise :class:`IllegalTransitionError` unless ``from_state`` → ``to_state`` is allowed."""
    if not can_transition(from_state, to_state):
        raise IllegalTransitionError(job_id, from_state.value, to_state.value)
