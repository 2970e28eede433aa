"""The task ``preread.run_job`` and the dispatcher that sends it.

The task runs :func:`preread.jobs.run_job` with the worker process's :class:`JobContext`, built
once on first use. It is safe to deliver twice (late acknowledgement redelivers after a crash):
``run_job`` leaves a job that is already final, or leased by a live worker, alone.

* While the task runs, a :class:`~preread.leases.LeaseKeeper` renews the job's lease every
  third of ``PREREAD_LEASE_S``: a study that takes longer than one lease is not taken from a
  live worker (and read again and again); a killed worker's job is free again one lease later.
  The app's :attr:`~preread.scale.celery_app.PrereadCelery.held` lists them, so that a worker
  told to stop can release a job still running after its grace period
  (:func:`preread.scale.cli.worker`).
* :class:`~preread.jobs.TransientError` (Orthanc or the audit trail unreachable): retried after
  :data:`RETRY_DELAYS_S`, the lease running out when the retry is due (so the leader does not
  re-queue the job meanwhile, which would spend its attempts in seconds); after the last retry
  the lease expires and the leader's watcher re-queues it (the store's attempt limit bounds
  the whole).
* A worker that lost its job (the lease ran out and the leader re-queued it, or another worker
  took it) stops with a warning: the job is finished elsewhere.
* A result with a ``follow_up`` job (the study grew while it was read): sent as a new task.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from inference.predict import Predictor
from preread.jobs import JobContext, TransientError, run_job
from preread.settings import Settings
from preread.store import IllegalTransitionError, LeaseLostError, StoreError

if TYPE_CHECKING:
    from celery import Celery  # type: ignore[import-untyped]

    from preread.scale.app import PrereadCelery

log = logging.getLogger(__name__)
TASK_NAME = "preread.run_job"
RETRY_DELAYS_S = (2.0, 5.0, 15.0)


class CeleryDispatcher:
    """``dispatch(job_id)`` sends ``preread.run_job(job_id)`` to the broker: the watcher's
    ``dispatch`` callable in scale-out (``Watcher(..., CeleryDispatcher(app), ...)``)."""

    def __init__(self, app: Celery, *, queue: str | None = None) -> None:
        self.app = app
        self.queue = queue

    def dispatch(self, job_id: str) -> None:
        options: dict[str, Any] = {"queue": self.queue} if self.queue else {}
        self.app.send_task(TASK_NAME, args=[job_id], **options)

    def __call__(self, job_id: str) -> None:
        self.dispatch(job_id)


def register(
    app: PrereadCelery,
    retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
    *,
    job_timeout_s: float | None = None,
) -> None:
    """Register ``preread.run_job`` on ``app`` (done by :func:`make_celery`); a job's lease is
    renewed for at most ``job_timeout_s`` (None: as long as it runs)."""
    delays = tuple(retry_delays_s)
    # shared=False: Celery would otherwise register this app's task (its options included) in
    # every app created later in the process, and the first registration wins
    app.task(
        name=TASK_NAME,
        bind=True,
        shared=False,
        max_retries=len(delays),
        retry_delays_s=delays,
        job_timeout_s=job_timeout_s,
    )(_run_task)


def _run_task(task: Any, job_id: str) -> dict[str, str] | None:
    """The task body; returns ``{"job_id", "state"}`` of a finished job, None if left alone."""
    app: PrereadCelery = task.app
    ctx = app.job_context()
    delays: tuple[float, ...] = task.retry_delays_s
    try:
        with app.held.keep(ctx, job_id, max_s=task.job_timeout_s):
            result = run_job(job_id, ctx)
    except TransientError as exc:
        retries: int = task.request.retries
        if retries >= len(delays):
            log.warning("job %s: giving up retrying for now (%s); its lease expires", job_id, exc)
            return None
        countdown = delays[retries]
        try:  # free when the retry is due, not before: the leader leaves it alone meanwhile
            ctx.store.renew_lease(job_id, ctx.owner, countdown)
        except StoreError as lost:
            log.warning("job %s: could not hold it until the retry: %s", job_id, lost)
        raise task.retry(countdown=countdown, exc=exc) from exc
    except (LeaseLostError, IllegalTransitionError) as exc:
        log.warning("job %s: lost to another run, which finishes it: %s", job_id, exc)
        return None
    if result is None:
        return None
    if result.follow_up is not None:
        CeleryDispatcher(app).dispatch(result.follow_up.id)
    return {"job_id": result.job.id, "state": result.job.state.value}


class WorkerContext:
    """Builds a worker process's :class:`JobContext` from settings (as
    :class:`preread.service.Service` does), and closes what it opened.

    Needs ``PREREAD_ORTHANC_URL`` (workers share an Orthanc; none starts its own) and, across
    machines, ``PREREAD_DATABASE_URL`` (PostgreSQL). The schema is migrated by the leader
    (``watch``), not by workers.
    """

    def __init__(self, settings: Settings) -> None:
        from preread.composition import Predictors

        self.settings = settings
        self._closers: list[Any] = []
        self.predictors = Predictors(settings)
        self.registry = self.predictors.registry

    def build(self) -> JobContext:
        from preread.audit import AuditLog
        from preread.composition import job_context, job_store, live_lineup, orthanc_client
        from preread.grants import GrantStore
        from preread.scale.app import ScaleError

        s = self.settings
        if not s.orthanc_url:
            raise ScaleError(
                "scale-out workers read from a shared Orthanc: set PREREAD_ORTHANC_URL"
            )
        if not s.database_url:
            log.warning("no PREREAD_DATABASE_URL: workers on other machines will not see jobs")
        store = job_store(s)
        self._closers.append(store)
        audit = AuditLog(store.engine)
        client = orthanc_client(s)
        return job_context(
            s,
            store=store,
            source=client,
            predictors=self.predictors,
            grants=GrantStore(store.engine, audit=audit),
            audit=audit,
            priors_client=client,
            lineup=live_lineup(s, store, self.registry),
        )

    def predictor(self, model_id: str, version: str) -> Predictor:
        """The process's predictor of one model version (made once; thread-safe)."""
        return self.predictors(model_id, version)

    def load_models(self) -> list[Predictor]:
        """Load every configured model now (``PREREAD_MODELS``: id or id@version)."""
        from preread.composition import model_packages

        return [
            self.predictor(package.id, package.version)
            for package in model_packages(self.settings, self.registry)
        ]

    def close(self) -> None:
        for closer in self._closers:
            closer.close()
        self._closers.clear()
