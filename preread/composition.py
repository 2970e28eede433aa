"""The one place that turns :class:`~preread.settings.Settings` into the service's parts.

Every entry point builds what it needs here, the same way: ``preread serve``/``demo``
(:class:`preread.service.Service`), a scale-out worker (:class:`preread.scale.tasks.WorkerContext`),
the scale-out leader (``preread watch``), the readiness checks and the operator CLIs
(``jobs``, ``grants``, ``users``, ``clients``, ``audit``, ``backfill``, ``train``):

* :func:`job_store` — the job store of ``PREREAD_DATABASE_URL`` (SQLite in the data folder when
  unset), with the attempts limit;
* :func:`orthanc_client` — the REST client of the deployment's Orthanc (``PREREAD_ORTHANC_URL``
  and its credentials);
* :func:`model_packages` / :func:`model_refs` — the installed packages of ``PREREAD_MODELS``
  (``id`` or ``id@version``), checked, and what the job store records of them;
* :class:`Predictors` — one predictor per model version per process, made on first use
  (thread-safe);
* :func:`job_context` — what a worker needs to read a study (:class:`preread.jobs.JobContext`);
* :func:`live_lineup` — which versions read now, for real or in shadow (:mod:`preread.lifecycle`).

Nothing here starts a thread or a process; the callers own and close what they are given.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

from inference.registry import Registry
from preread.domain import ModelRef
from preread.settings import Settings

if TYPE_CHECKING:
    from dicom_gateway.client import OrthancClient
    from dicom_gateway.source import StudySource
    from inference.package import ModelPackage
    from inference.predict import Predictor
    from preread.audit import AuditLog
    from preread.audit.checkpoints import CheckpointSchedule
    from preread.grants import GrantStore
    from preread.jobs import JobContext
    from preread.lifecycle import LiveLineup
    from preread.store import JobStore

log = logging.getLogger(__name__)

__all__ = [
    "Predictors",
    "checkpoint_schedule",
    "database_url",
    "job_context",
    "job_store",
    "live_lineup",
    "model_packages",
    "model_refs",
    "orthanc_client",
    "orthanc_password",
    "process_owner",
]


def database_url(settings: Settings) -> str:
    """``PREREAD_DATABASE_URL``, or SQLite in the data folder when unset."""
    from preread.store import default_url

    return settings.database_url or default_url(settings.data_dir)


def job_store(settings: Settings) -> JobStore:
    """A job store on :func:`database_url` (the caller closes it; the schema is not migrated)."""
    from preread.store import JobStore

    return JobStore.create(database_url(settings), max_attempts=settings.job_max_attempts)


def orthanc_password(settings: Settings) -> str:
    """The Orthanc password (empty when unset)."""
    return settings.orthanc_password.get_secret_value() if settings.orthanc_password else ""


def orthanc_client(settings: Settings, url: str | None = None) -> OrthancClient:
    """The REST client of the Orthanc at ``url`` (default ``PREREAD_ORTHANC_URL``), with the
    configured credentials."""
    from dicom_gateway.client import OrthancClient

    target = url or settings.orthanc_url
    if not target:
        raise ValueError("no Orthanc URL: set PREREAD_ORTHANC_URL")
    return OrthancClient(target, settings.orthanc_username, orthanc_password(settings))


def model_packages(settings: Settings, registry: Registry | None = None) -> list[ModelPackage]:
    """The installed packages of ``PREREAD_MODELS`` (``id`` or ``id@version``: the newest
    installed version when no version is given); raises the registry's error for one that is
    not installed or does not verify."""
    registry = registry or Registry(settings.models_dir)
    out = []
    for spec in settings.models:
        model_id, _, version = spec.partition("@")
        out.append(registry.find(model_id, version or None))
    return out


def model_refs(packages: list[ModelPackage]) -> list[ModelRef]:
    """What a job records of each package's model (id, version, name, sha256 of its graph)."""
    return [ModelRef(p.card.id, p.card.version, p.card.name, p.card.onnx.sha256) for p in packages]


def process_owner() -> str:
    """This process's name as a lease owner: ``host:pid``."""
    return f"{os.uname().nodename}:{os.getpid()}"


class Predictors:
    """One predictor per model version in this process, made on first use with the
    configured execution providers (thread-safe: the workers of one process share them)."""

    def __init__(self, settings: Settings, registry: Registry | None = None) -> None:
        self.settings = settings
        self.registry = registry or Registry(settings.models_dir)
        self._loaded: dict[tuple[str, str], Predictor] = {}
        self._lock = threading.Lock()

    def __call__(self, model_id: str, version: str) -> Predictor:
        from preread.models import predictor_for
        from preread.reports.standard import load_standard_tables

        key = (model_id, version)
        with self._lock:
            if key not in self._loaded:
                package = self.registry.find(model_id, version)
                self._loaded[key] = predictor_for(package, self.settings)
                info = self._loaded[key].session_info
                log.info("model %s %s runs on %s", model_id, version, info.provider)
                load_standard_tables()  # what the encoders load lazily, not in the first study
            return self._loaded[key]

    def loaded(self, model_id: str, version: str) -> Predictor | None:
        """The predictor if it was made (None otherwise): nothing is loaded."""
        with self._lock:
            return self._loaded.get((model_id, version))


def job_context(
    settings: Settings,
    *,
    store: JobStore,
    source: StudySource,
    predictors: Predictors,
    grants: GrantStore,
    audit: AuditLog,
    priors_client: OrthancClient | None,
    lineup: LiveLineup | None = None,
) -> JobContext:
    """What reading a study needs, from the settings (lease, tenants, series limits, outputs,
    Lung-RADS policy, the PACS for priors through ``priors_client``, None: no priors; the
    model versions' stages through ``lineup``, None: every version may read)."""
    from preread.followup.priors import priors_setup
    from preread.jobs import JobContext

    return JobContext(
        store=store,
        source=source,
        predictor_for=predictors,
        owner=process_owner(),
        grants=grants,
        audit=audit,
        lease_s=settings.lease_s,
        tenant_of=settings.tenant_of,
        series_limits=settings.series_limits(),
        outputs=frozenset(settings.outputs),
        lung_rads=settings.lung_rads_policy(),
        priors=priors_setup(settings, priors_client) if priors_client is not None else None,
        may_run=lineup.may_run if lineup is not None else None,
    )


def live_lineup(
    settings: Settings, store: JobStore, registry: Registry | None = None
) -> LiveLineup:
    """Which versions of ``PREREAD_MODELS`` read now, for real or in shadow, as the job
    store's model stages say (:mod:`preread.lifecycle`)."""
    from preread.lifecycle import LiveLineup

    registry = registry or Registry(settings.models_dir)
    return LiveLineup(store, model_packages(settings, registry), registry)


def checkpoint_schedule(settings: Settings, trail: AuditLog) -> CheckpointSchedule | None:
    """The periodic signed checkpoint of the audit trail (None when
    ``PREREAD_AUDIT_CHECKPOINT_INTERVAL_S`` is 0)."""
    from preread.audit.checkpoints import CheckpointFile, CheckpointSchedule

    if settings.audit_checkpoint_interval_s <= 0:
        return None
    checkpoints = CheckpointFile(settings.audit_checkpoint_path, settings.audit_checkpoint_key_path)
    return CheckpointSchedule(trail, checkpoints, settings.audit_checkpoint_interval_s)
