"""A running job's lease, kept alive while the job runs and given up when its worker stops.

Both runners (:class:`preread.runner.InProcessRunner` in ``preread serve``, the Celery task of
``preread worker``) claim a job for ``PREREAD_LEASE_S`` (30 s by default) and run it inside a
:class:`LeaseKeeper`, which renews the lease every third of that while the job runs:

* a study that takes longer than one lease is never taken from a live worker;
* a killed worker renews nothing, so its job is free again at most one lease later: the next
  sweep of expired leases (``serve``'s loop, the leader of ``watch``) queues it again and the
  study is read by whoever runs next — the restarted ``serve`` itself.

A worker that stops (SIGTERM) waits for its running jobs for ``PREREAD_SHUTDOWN_GRACE_S``, then
:meth:`HeldLeases.release_all`: each lease ends at once, so the next sweep hands the job to
another worker instead of waiting a lease out. A released job counts its attempt, as a killed
worker's does (``PREREAD_JOB_MAX_ATTEMPTS`` bounds them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from preread.jobs import RELEASED_LEASE_S, JobContext
from preread.store import StoreError

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews ``ctx.owner``'s lease on ``job_id`` every third of ``ctx.lease_s`` while the
    block runs (a thread; a killed process renews nothing, so its lease runs out).

    Renewal needs the lease to be held: before the job is claimed, after it is finished, or
    once another worker took it, nothing happens. After ``max_s`` (``PREREAD_JOB_TIMEOUT_S``)
    it stops: a hung job's lease runs out and the sweep re-queues it; if the hung worker
    wakes up, it finds its lease lost and stops.
    """

    def __init__(self, ctx: JobContext, job_id: str, *, max_s: float | None = None) -> None:
        self.ctx = ctx
        self.job_id = job_id
        self.max_s = max_s
        self._stop = threading.Event()
        self._lock = threading.Lock()  # a renewal and a release never interleave
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id[:8]}", daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self.ctx.lease_s / 3):
            if self.max_s is not None and time.monotonic() - started >= self.max_s:
                log.warning(
                    "job %s: still running after %.0f s (PREREAD_JOB_TIMEOUT_S): no longer "
                    "renewing its lease; the sweep of expired leases re-queues it",
                    self.job_id,
                    self.max_s,
                )
                return
            with self._lock:
                if self._stop.is_set():
                    return
                try:
                    self.ctx.store.renew_lease(self.job_id, self.ctx.owner, self.ctx.lease_s)
                except StoreError as exc:  # not (or no longer) held, or the database is away
                    log.debug("job %s: lease not renewed: %s", self.job_id, exc)

    def release(self) -> bool:
        """Stop renewing and end the lease now (the job stays where it is until the next sweep
        queues it again); False when this worker did not hold it (any more)."""
        with self._lock:
            self._stop.set()
            try:
                self.ctx.store.renew_lease(self.job_id, self.ctx.owner, RELEASED_LEASE_S)
            except StoreError as exc:  # finished meanwhile, taken by another, database away
                log.debug("job %s: nothing to release: %s", self.job_id, exc)
                return False
        log.warning("job %s: released unfinished (this worker is stopping)", self.job_id)
        return True

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()


class HeldLeases:
    """The leases of the jobs running in one process, so that a stopping worker can release
    those still running after its grace period (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keepers: dict[int, LeaseKeeper] = {}

    @contextmanager
    def keep(
        self, ctx: JobContext, job_id: str, *, max_s: float | None = None
    ) -> Iterator[LeaseKeeper]:
        """Run the block with ``job_id``'s lease kept alive (a :class:`LeaseKeeper`)."""
        with LeaseKeeper(ctx, job_id, max_s=max_s) as keeper:
            with self._lock:
                self._keepers[id(keeper)] = keeper
            try:
                yield keeper
            finally:
                with self._lock:
                    self._keepers.pop(id(keeper), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._keepers)

    def release_all(self) -> int:
        """Release every lease still kept (:meth:`LeaseKeeper.release`); how many were held."""
        with self._lock:
            keepers = list(self._keepers.values())
        return sum(keeper.release() for keeper in keepers)
