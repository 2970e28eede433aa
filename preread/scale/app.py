"""The scale-out app's own type and error, apart from where the app is built
(:mod:`preread.scale.celery_app`) and its task defined (:mod:`preread.scale.tasks`), so that
neither of those imports the other's module to name them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from celery import Celery  # type: ignore[import-untyped]

from preread.errors import PrereadError
from preread.jobs import JobContext
from preread.leases import HeldLeases

__all__ = ["PrereadCelery", "ScaleError"]


class ScaleError(PrereadError):
    """The scale-out configuration is incomplete (no broker, no Orthanc URL, …)."""


class PrereadCelery(Celery):  # type: ignore[misc]  # celery is untyped
    """A Celery app that knows how to build the :class:`JobContext` of its worker process.

    ``job_context()`` builds it on first use (in the worker process, after any fork) and
    keeps it for the life of the process. ``held`` lists the leases of the jobs running now
    (released when a stopping worker's grace period ends).
    """

    def __init__(
        self, *args: Any, context_factory: Callable[[], JobContext], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._context_factory = context_factory
        self._context: JobContext | None = None
        self._context_lock = threading.Lock()
        self.held = HeldLeases()

    def job_context(self) -> JobContext:
        with self._context_lock:
            if self._context is None:
                self._context = self._context_factory()
            return self._context
