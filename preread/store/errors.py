"""Errors of the job store; every one names the job and the states involved.

PrereadError
└── StoreError              (base of everything preread.store raises on purpose; also wraps
    │                        database errors: connection refused, "database is locked", …)
    ├── JobNotFoundError    (no job with that id)
    ├── IllegalTransitionError (a state change the job state machine does not allow)
    └── LeaseLostError      (a worker acted on a job whose lease another worker now holds)
"""

from __future__ import annotations

from preread.errors import PrereadError


class StoreError(PrereadError):
    """Base of the errors :mod:`preread.store` raises on purpose."""


class JobNotFoundError(StoreError):
    """No job has the id asked for."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job {job_id}")


class IllegalTransitionError(StoreError):
    """A job cannot move from ``from_state`` to ``to_state`` (see :mod:`preread.store.states`)."""

    def __init__(self, job_id: str, from_state: str, to_state: str) -> None:
        self.job_id = job_id
        self.from_state = from_state
        self.to_state = to_state
        super().__init__(f"job {job_id} cannot go from {from_state!r} to {to_state!r}")


class LeaseLostError(StoreError):
    """``owner`` no longer holds the job: its lease expired and another worker claimed it.

    The worker must stop working on the job and write nothing more.
    """

    def __init__(self, job_id: str, owner: str, holder: str | None, state: str) -> None:
        self.job_id = job_id
        self.owner = owner
        self.holder = holder
        self.state = state
        super().__init__(
            f"job {job_id} ({state}) is held by {holder!r}, not {owner!r}: the lease was lost"
        )
