"""Scale-out: Celery workers over Redis or RabbitMQ and a single leader watcher.

The same :func:`preread.jobs.run_job` as the in-process runner, dispatched through a broker:

* :func:`make_celery` builds the Celery app (late acknowledgement, prefetch 1, JSON only, no
  result backend: the job store is the truth);
* the task ``preread.run_job`` and :class:`CeleryDispatcher` (the watcher's ``dispatch``);
* :class:`Leadership`, a PostgreSQL advisory lock, so one watcher runs at a time;
* :mod:`preread.scale.cli`, the ``worker`` and ``watch`` commands (typer functions).

Celery is imported only by this package; the embedded install does not need it.
"""

from preread.scale.celery_app import QUEUE, ScaleError, make_celery
from preread.scale.leader import Leadership
from preread.scale.tasks import TASK_NAME, CeleryDispatcher, WorkerContext

__all__ = [
    "QUEUE",
    "TASK_NAME",
    "CeleryDispatcher",
    "Leadership",
    "ScaleError",
    "WorkerContext",
    "make_celery",
]
