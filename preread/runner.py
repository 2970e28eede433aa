"""The in-process task runner: a pool of worker threads running :func:`preread.jobs.run_job`.

ONNX Runtime and numpy release the GIL, so threads use the cores. A Celery worker (scale-out)
runs the same ``run_job`` with the same arguments; only this dispatching differs.

Transient failures (Orthanc unreachable) are retried with a growing delay; the job store's
attempt limit bounds them. A job whose study grew while it ran hands back a follow-up job,
which is dispatched at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from preread.jobs import JobContext, TransientError, run_job
from preread.store import FinishResult

log = logging.getLogger(__name__)
RETRY_DELAYS_S = (2.0, 5.0, 15.0)


class InProcessRunner:
    """``dispatch(job_id)`` runs the job on one of ``workers`` threads."""

    def __init__(
        self,
        ctx: JobContext,
        *,
        workers: int = 1,
        on_finished: Callable[[FinishResult], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.on_finished = on_finished
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="preread-worker")
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._timers: list[threading.Timer] = []
        self._closed = False

    def dispatch(self, job_id: str, *, attempt: int = 0) -> None:
        with self._lock:
            if self._closed or job_id in self._pending:
                return  # already waiting to run here: one run is enough
            self._pending.add(job_id)
        fut = self._pool.submit(self._run, job_id)
        fut.add_done_callback(lambda f: self._done(job_id, attempt, f))

    def _run(self, job_id: str) -> FinishResult | None:
        with self._lock:
            self._pending.discard(job_id)
        return run_job(job_id, self.ctx)

    def _done(self, job_id: str, attempt: int, fut: Future[FinishResult | None]) -> None:
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

    def close(self, wait: bool = True) -> None:
        with self._lock:
            self._closed = True
            for t in self._timers:
                t.cancel()
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
