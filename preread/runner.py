"""The in-process task runner: a pool of worker threads running :func:`preread.jobs.run_job`.

ONNX Runtime and numpy release the GIL, so threads use the cores. A Celery worker (scale-out)
runs the same ``run_job`` with the same arguments; only this dispatching differs.

While a job runs, its lease (``PREREAD_LEASE_S``) is renewed every third of it
(:mod:`preread.leases`): a long study is never taken from this live process, and after a crash
(``kill -9``) the job is free again at most one lease later, so the restarted ``serve`` reads it.

Transient failures (Orthanc unreachable) are retried with a growing delay; the job store's
attempt limit bounds them. A job whose study grew while it ran hands back a follow-up job,
which is dispatched at once.

:meth:`InProcessRunner.close` stops it: no job starts any more (those waiting stay ``queued``
in the store, for the next start), running jobs get a grace period to finish, and the leases of
those still running after it are released (another process takes them at once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from preread.jobs import JobContext, TransientError, run_job
from preread.leases import HeldLeases
from preread.store import FinishResult

log = logging.getLogger(__name__)
RETRY_DELAYS_S = (2.0, 5.0, 15.0)


class InProcessRunner:
    """``dispatch(job_id)`` runs the job on one of ``workers`` threads; its lease is renewed
    while it runs, for at most ``job_timeout_s`` (None: as long as it runs)."""

    def __init__(
        self,
        ctx: JobContext,
        *,
        workers: int = 1,
        on_finished: Callable[[FinishResult], None] | None = None,
        job_timeout_s: float | None = None,
    ) -> None:
        self.ctx = ctx
        self.on_finished = on_finished
        self.job_timeout_s = job_timeout_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="preread-worker")
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._running: set[Future[FinishResult | None]] = set()
        self._timers: list[threading.Timer] = []
        self._closed = False
        self.held = HeldLeases()

    def dispatch(self, job_id: str, *, attempt: int = 0) -> None:
        with self._lock:
            if self._closed or job_id in self._pending:
                return  # already waiting to run here: one run is enough
            self._pending.add(job_id)
        fut = self._pool.submit(self._run, job_id)
        with self._lock:
            self._running.add(fut)
        fut.add_done_callback(lambda f: self._done(job_id, attempt, f))

    def _run(self, job_id: str) -> FinishResult | None:
        with self._lock:
            self._pending.discard(job_id)
            if self._closed:
                return None  # stopping: it stays queued (or its lease runs out) for the next start
        with self.held.keep(self.ctx, job_id, max_s=self.job_timeout_s):
            return run_job(job_id, self.ctx)

    def _done(self, job_id: str, attempt: int, fut: Future[FinishResult | None]) -> None:
        with self._lock:
            self._running.discard(fut)
            if self._closed:
                return  # no retry, no follow-up: the next start (or another worker) runs them
        if fut.cancelled():
            return
        exc = fut.exception()
        if isinstance(exc, TransientError):
            if attempt < len(RETRY_DELAYS_S):
                timer = threading.Timer(
                    RETRY_DELAYS_S[attempt], self.dispatch, (job_id,), {"attempt": attempt + 1}
                )
                timer.daemon = True
                with self._lock:
                    self._timers.append(timer)
                timer.start()
            return
        if exc is not None:
            log.error("job %s crashed: %s: %s", job_id, type(exc).__name__, exc, exc_info=exc)
            return
        result = fut.result()
        if result is not None and self.on_finished is not None:
            try:
                self.on_finished(result)
            except Exception as error:  # an observer never breaks the runner
                log.warning("job %s: on_finished failed: %s", job_id, error)
        if result is not None and result.follow_up is not None:
            self.dispatch(result.follow_up.id)

    @property
    def busy(self) -> int:
        with self._lock:
            return len(self._pending)

    @property
    def running(self) -> int:
        """Jobs submitted and not yet returned (running, or waiting for a thread)."""
        with self._lock:
            return len(self._running)

    def close(self, grace_s: float | None = None, *, hurry: threading.Event | None = None) -> int:
        """Stop running jobs: nothing new starts (jobs waiting for a thread stay ``queued``),
        running jobs may finish within ``grace_s`` seconds (None: however long they take)
        or until ``hurry`` is set; the leases of those still running then are released.

        Returns how many jobs are still running (released: their threads are left behind and
        stop at their next step, as their lease is lost).
        """
        with self._lock:
            self._closed = True
            for t in self._timers:
                t.cancel()
            self._timers.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = None if grace_s is None else time.monotonic() + grace_s
        while self.running:
            if hurry is not None and hurry.is_set():
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        left = self.running
        if left:
            released = self.held.release_all()
            log.warning(
                "%d job(s) still running after the %s s grace period: %d lease(s) released",
                left,
                "-" if grace_s is None else f"{grace_s:g}",
                released,
            )
        return left
