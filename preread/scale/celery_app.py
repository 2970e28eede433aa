"""The Celery app of the scale-out workers, built from settings (nothing at import time).

Delivery is *at least once*: a task is acknowledged after it ran (``task_acks_late``), so a
worker that dies mid-job leaves the message to be delivered again; :func:`preread.jobs.run_job`
is idempotent, so the second delivery finishes the job or finds it finished. Each worker takes
one message at a time (``worker_prefetch_multiplier=1``): a long study never holds others back.

Brokers:

* Redis (``redis://host:6379/0``): an unacknowledged message comes back after the
  *visibility timeout*; it is set to at least twice the job lease (and at least an hour), so a
  study still running is not handed to a second worker.
* RabbitMQ (``amqp://user:password@host:5672/vhost``): an unacknowledged message comes back
  when the worker's connection closes. RabbitMQ's ``consumer_timeout`` (30 minutes by
  default) must exceed the longest study.

There is no result backend: the job store records every outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from preread.jobs import JobContext
from preread.scale.app import PrereadCelery, ScaleError
from preread.scale.tasks import RETRY_DELAYS_S, WorkerContext, register
from preread.settings import Settings

__all__ = ["QUEUE", "PrereadCelery", "ScaleError", "default_app", "make_celery"]

QUEUE = "preread.jobs"  # the default of ``Settings.queue`` (PREREAD_QUEUE)
MIN_VISIBILITY_TIMEOUT_S = 3600.0


def visibility_timeout_s(settings: Settings) -> float:
    """Redis's visibility timeout: longer than the longest job (``job_timeout_s`` plus a lease),
    at least twice the lease and an hour."""
    return max(
        2.0 * settings.lease_s,
        settings.job_timeout_s + settings.lease_s,
        MIN_VISIBILITY_TIMEOUT_S,
    )


def make_celery(
    settings: Settings,
    broker_url: str,
    *,
    context: Callable[[], JobContext] | None = None,
    retry_delays_s: Sequence[float] | None = None,
) -> PrereadCelery:
    """The Celery app for ``broker_url`` (``PREREAD_BROKER_URL``), with the task registered;
    tasks go to (and workers consume) the queue ``settings.queue`` (``PREREAD_QUEUE``).

    ``context`` builds the worker's :class:`JobContext`; by default
    :meth:`preread.scale.tasks.WorkerContext.build` from ``settings`` (PostgreSQL store,
    Orthanc at ``PREREAD_ORTHANC_URL``, the configured models). ``retry_delays_s``: the waits
    before each retry of a job that met a :class:`~preread.jobs.TransientError` (default
    :data:`preread.scale.tasks.RETRY_DELAYS_S`).

    Raises :class:`ScaleError` when ``broker_url`` is empty.
    """
    if not broker_url:
        raise ScaleError(
            "no message broker: set PREREAD_BROKER_URL (redis://… or amqp://…) to run "
            "scale-out workers"
        )
    factory = context or WorkerContext(settings).build
    app = PrereadCelery("preread", broker=broker_url, context_factory=factory)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        task_default_queue=settings.queue,
        broker_transport_options={"visibility_timeout": visibility_timeout_s(settings)},
        broker_connection_retry_on_startup=True,
        # a broker that goes away does not stop the jobs running (the store holds their state;
        # their acknowledgement is lost and a redelivery finds them done); Celery 6 would
        # cancel them by default
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    register(
        app,
        RETRY_DELAYS_S if retry_delays_s is None else retry_delays_s,
        job_timeout_s=settings.job_timeout_s,
    )
    return app


_default: PrereadCelery | None = None


def default_app() -> PrereadCelery:
    """The app from the environment (``PREREAD_*`` and ``PREREAD_BROKER_URL``), built on
    first call and kept."""
    global _default
    if _default is None:
        settings = Settings()
        _default = make_celery(settings, settings.broker_url)
    return _default


def __getattr__(name: str) -> PrereadCelery:
    """``preread.scale.celery_app.app`` is :func:`default_app`, built when first looked up,
    for ``celery -A preread.scale.celery_app:app worker --pool solo``."""
    if name == "app":
        return default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
