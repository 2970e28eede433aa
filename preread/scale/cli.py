"""The scale-out commands, as typer functions (registered on ``preread`` by the CLI module):

* ``worker`` — one Celery worker in this process, pool ``solo`` (one job at a time, no fork).
  Start one process per GPU, each with ``--gpu N``: ``CUDA_VISIBLE_DEVICES=N`` is set before
  any ONNX Runtime session exists, so the process sees exactly that GPU. Prints the execution
  provider each model actually uses.
* ``watch`` — the watcher, run only by the leader (:class:`~preread.scale.leader.Leadership`);
  other ``watch`` processes stand by and re-check every second.

Both stop cleanly on SIGTERM and SIGINT (exit 0): ``watch`` ends its round and releases the
leadership (a standby takes over at once); ``worker`` is Celery's warm shutdown (it takes no new
message and finishes the running job), and after ``PREREAD_SHUTDOWN_GRACE_S`` it releases the
lease of a job still running, so that the leader hands it to another worker at once.

Both read ``PREREAD_*`` settings and the broker from ``PREREAD_BROKER_URL`` (``redis://…`` or
``amqp://…``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from preread.logs import configure_logging
from preread.scale.celery_app import ScaleError, make_celery
from preread.scale.leader import Leadership
from preread.scale.tasks import CeleryDispatcher, WorkerContext
from preread.settings import Settings
from preread.store import JobState, JobStore
from preread.watcher import Watcher

if TYPE_CHECKING:
    from preread.audit.checkpoints import CheckpointSchedule
    from preread.reviews.service import ReviewContext

log = logging.getLogger(__name__)
LEADERSHIP = "watcher"
RESEND_AFTER_S = 900.0
"""A queued job's message is sent again when the leader did not send it within this long (or
within a lease, if longer); sooner only when the broker's queue is short (:class:`Sender`)."""


def broker_url(settings: Settings | None = None) -> str:
    """``PREREAD_BROKER_URL`` (``Settings.broker_url``); an error when unset."""
    url = (settings or Settings()).broker_url
    if not url:
        raise ScaleError("set PREREAD_BROKER_URL (redis://host:6379/0 or amqp://…) to scale out")
    return url


def worker(
    gpu: Annotated[
        int | None, typer.Option(min=0, help="the GPU of this worker (CUDA_VISIBLE_DEVICES)")
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, help="jobs at once: 1 = pool solo; more = threads")
    ] = 1,
    queues: Annotated[
        str | None,
        typer.Option(help="queues to consume, comma-separated [default: PREREAD_QUEUE]"),
    ] = None,
) -> None:
    """Run a Celery worker for PreRead jobs in this process (one process per GPU)."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)  # before any ONNX Runtime session
    _log_to_stderr()
    settings = Settings()
    context = WorkerContext(settings)
    app = make_celery(settings, broker_url(settings), context=context.build)
    release_after_grace(app, settings.shutdown_grace_s)
    try:
        for predictor in context.load_models():
            info = predictor.session_info
            typer.echo(
                f"model {info.model_id} {info.model_version}: provider {info.provider} on "
                f"{info.device}" + (f" — {info.warning}" if info.warning else "")
            )
        # a node name of its own: Celery's remote control and events tell workers apart by it
        name = f"preread-gpu{gpu}" if gpu is not None else f"preread-{os.getpid()}"
        app.Worker(
            pool="solo" if concurrency == 1 else "threads",
            concurrency=concurrency,
            queues=[q.strip() for q in (queues or settings.queue).split(",") if q.strip()],
            hostname=f"{name}@{os.uname().nodename}",
            loglevel="INFO",
            # no worker-to-worker chatter: PreRead uses no revokes or clock sync, and Celery's
            # gossip fails to restart after a broker outage
            without_gossip=True,
            without_mingle=True,
        ).start()
    finally:
        context.close()


def release_after_grace(app: Any, grace_s: float) -> None:
    """When Celery starts a warm shutdown (SIGTERM, or the first SIGINT), wait ``grace_s`` for
    the running job, then release its lease (:meth:`preread.leases.HeldLeases.release_all`)
    so that the leader's sweep hands it to another worker at once; the task itself stops at
    its next step, its lease lost (Celery's shutdown then completes)."""
    from celery.signals import worker_shutting_down  # type: ignore[import-untyped]

    def on_shutdown(**_: Any) -> None:  # in the signal handler: start a thread, no more
        def release() -> None:
            if app.held.release_all():
                log.warning("released the running job after %.0f s of shutdown", grace_s)

        timer = threading.Timer(grace_s, release)
        timer.daemon = True
        timer.start()

    worker_shutting_down.connect(on_shutdown, weak=False)


def watch() -> None:
    """Run the watcher while this process is the leader; stand by otherwise. SIGTERM or
    SIGINT stops it (the leadership released, exit 0)."""
    from preread.audit import AuditLog
    from preread.composition import checkpoint_schedule, job_store, live_lineup, orthanc_client
    from preread.grants import GrantStore
    from preread.reviews.service import ReviewContext
    from preread.shutdown import ShutdownSignals

    _log_to_stderr()
    settings = Settings()
    if not settings.orthanc_url:
        raise ScaleError("the scale-out watcher follows a shared Orthanc: set PREREAD_ORTHANC_URL")
    app = make_celery(settings, broker_url(settings))
    with job_store(settings) as store:
        models = live_lineup(settings, store)
        dispatch = Sender(
            CeleryDispatcher(app),
            resend_after_s=max(settings.lease_s, RESEND_AFTER_S),
            depth=lambda: queue_depth(app, settings.queue),
        )
        orthanc = orthanc_client(settings)
        audit = AuditLog(store.engine)
        watcher = Watcher(
            orthanc, store, models, dispatch, tenant_of=settings.tenant_of, audit=audit
        )
        reviews = ReviewContext(store, GrantStore(store.engine, audit=audit), audit, orthanc)
        leadership = Leadership(store.engine, LEADERSHIP)
        typer.echo("watch: standing by until this process is the leader")
        with ShutdownSignals() as signals:
            try:
                watch_loop(
                    leadership,
                    watcher,
                    store,
                    dispatch,
                    poll_s=settings.poll_interval_s,
                    reconcile_s=settings.reconcile_interval_s,
                    stop=signals.requested,
                    reviews=reviews,
                    comparison_retry=(settings.comparison_retry_s, settings.comparison_retries),
                    checkpoints=checkpoint_schedule(settings, audit),
                )
            finally:
                leadership.release()
        typer.echo("watch: stopped")


def _log_to_stderr() -> None:
    """INFO and above to stderr: leadership, retries, providers, and (in a worker) Celery's
    task lines; not every HTTP request or copied DICOM module (:mod:`preread.logs`)."""
    configure_logging(logging.INFO)


class Sender:
    """The leader's ``dispatch``: sends a job and remembers when, so that the periodic sweep of
    queued jobs (:func:`dispatch_queued`) sends again only those whose message may be lost.

    A queued job's message normally waits in the broker until a worker takes it; re-sending
    every queued job at every reconcile would add a duplicate per waiting job each time (a
    backlog of N jobs then grows by N messages a minute). A job is sent again when this
    process did not send it within ``resend_after_s``, or within ``grace_s`` when the broker's
    queue holds fewer messages than there are queued jobs (``depth``: a broker restarted without
    persistence lost them silently); a new leader starts with no memory and sends every queued
    job.
    """

    def __init__(
        self,
        dispatch: Callable[[str], None],
        resend_after_s: float = 0.0,
        *,
        depth: Callable[[], int | None] | None = None,
        grace_s: float = 30.0,
    ) -> None:
        self._dispatch = dispatch
        self.resend_after_s = resend_after_s
        self.depth = depth
        self.grace_s = grace_s
        self._sent: dict[str, float] = {}

    def __call__(self, job_id: str) -> None:
        self._dispatch(job_id)  # raises when the broker is away: not recorded, sent again
        self._sent[job_id] = time.monotonic()

    def due(self, job_id: str, *, broker_short: bool = False) -> bool:
        """Whether to send ``job_id`` again: never sent by this leader, sent more than
        ``resend_after_s`` ago, or (``broker_short``) more than ``grace_s`` ago."""
        sent = self._sent.get(job_id)
        if sent is None:
            return True
        age = time.monotonic() - sent
        return age >= self.resend_after_s or (broker_short and age >= self.grace_s)

    def broker_short(self, queued: int) -> bool:
        """Whether the broker's queue holds fewer messages than ``queued`` jobs wait for (False
        when it cannot tell)."""
        if self.depth is None:
            return False
        depth = self.depth()
        return depth is not None and depth < queued

    def keep_only(self, job_ids: set[str]) -> None:
        """Forget jobs no longer queued (they were taken, or finished)."""
        self._sent = {j: t for j, t in self._sent.items() if j in job_ids}


def watch_loop(
    leadership: Leadership,
    watcher: Watcher,
    store: JobStore,
    dispatch: Callable[[str], None],
    *,
    poll_s: float,
    reconcile_s: float,
    stop: threading.Event,
    check_s: float = 1.0,
    reviews: ReviewContext | None = None,
    comparison_retry: tuple[float, int] = (900.0, 5),
    checkpoints: CheckpointSchedule | None = None,
) -> None:
    """Until ``stop``: while leader, do what :meth:`preread.service.Service.tick` does (poll
    the change feed, re-queue expired leases, reconcile every ``reconcile_s``); otherwise
    stand by. Leadership is re-checked before every round and at least every ``check_s``.

    On becoming leader: migrate the schema, reconcile, and dispatch every queued job (those a
    former leader committed but may not have sent); later reconciles send queued jobs again
    as ``dispatch`` (a :class:`Sender`) finds due; with ``reviews``, each reconcile also stores
    the SR/SEG of signed reviews that Orthanc did not take when they were signed
    (:func:`preread.reviews.service.store_unstored`), and reads again the studies whose
    comparison with priors was unavailable (``comparison_retry``: first delay in seconds, most
    tries; :func:`preread.jobs.retry_comparisons`); with ``checkpoints``, the leader signs the
    audit trail's head when they are due. Leadership is released when it ends.
    """
    leading = False
    last_tick = last_reconcile = -float("inf")
    try:
        while not stop.is_set():
            if leadership.acquire():
                if not leading:
                    log.info("watch: leader now")
                    leading, last_tick, last_reconcile = True, -float("inf"), -float("inf")
                    if isinstance(dispatch, Sender):
                        dispatch.keep_only(set())  # what a former term sent may be lost
                    store.migrate()
                now = time.monotonic()
                if now - last_tick >= poll_s:
                    last_tick = now
                    due = now - last_reconcile >= reconcile_s
                    try:
                        watcher.poll()
                        for job in store.requeue_expired().to_dispatch:
                            dispatch(job.id)
                        if due:
                            watcher.reconcile()
                            dispatch_queued(store, dispatch)
                            from preread.jobs import retry_comparisons

                            retry_comparisons(store, dispatch, *comparison_retry)
                            if reviews is not None:
                                from preread.reviews.service import store_unstored

                                store_unstored(reviews)
                            from preread.monitoring.monitor import monitor_round

                            monitor_round(store)  # every version in use, watched
                            last_reconcile = now
                        if checkpoints is not None:
                            checkpoints.poll()
                    except Exception as exc:  # keep watching: Orthanc may come back
                        log.warning("watcher round failed: %s: %s", type(exc).__name__, exc)
            elif leading:
                log.warning("watch: leadership lost; standing by")
                leading = False
            stop.wait(min(check_s, poll_s))
    finally:
        leadership.release()  # a standby takes over at once


def dispatch_queued(store: JobStore, dispatch: Callable[[str], None]) -> int:
    """Send the queued jobs (a crash between commit and send, or a broker that lost its
    messages, leaves some unsent): all of them, or those a :class:`Sender` finds due."""
    sender = dispatch if isinstance(dispatch, Sender) else None
    queued: list[str] = []
    offset = 0
    while True:
        page = store.list_studies(
            states=[JobState.QUEUED], limit=200, offset=offset, include_shadow=True
        )
        for study in page.items:
            queued += [job.id for job in study.jobs if job.state is JobState.QUEUED]
        offset += page.limit
        if offset >= page.total:
            break
    short = sender is not None and bool(queued) and sender.broker_short(len(queued))
    if short:
        log.warning(
            "the broker's queue holds fewer messages than the %d queued jobs: re-sending those "
            "sent more than %.0f s ago",
            len(queued),
            sender.grace_s if sender else 0.0,
        )
    n = 0
    for job_id in queued:
        if sender is None or sender.due(job_id, broker_short=short):
            dispatch(job_id)
            n += 1
    if sender is not None:
        sender.keep_only(set(queued))
    return n


def queue_depth(app: Any, queue: str) -> int | None:
    """The messages waiting in ``queue`` on ``app``'s broker: 0 when the broker does not know
    the queue (it restarted without persistence), None when it cannot be asked."""
    from amqp.exceptions import ChannelError  # type: ignore[import-untyped]

    try:
        with app.connection_for_write() as conn:
            return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
    except ChannelError as exc:
        if str(getattr(exc, "reply_code", "")) == "404":  # an int from RabbitMQ, a str from Redis
            return 0
        log.warning("cannot ask the broker for the depth of %s: %s", queue, exc)
        return None
    except Exception as exc:  # the broker is away: nothing can be sent anyway
        log.warning("cannot ask the broker for the depth of %s: %s", queue, type(exc).__name__)
        return None
