"""Assemble PreRead for one machine: Orthanc, the job store, models, watcher, workers, API.

:class:`Service` is what ``preread serve`` and ``preread demo`` run: the embedded default. It
starts a private Orthanc unless ``PREREAD_ORTHANC_URL`` names one, opens the job store
(SQLite in the data folder unless ``PREREAD_DATABASE_URL``), loads the configured models, and
runs a loop that polls the change feed, returns expired leases to the queue and reconciles
now and then. Everything is built from one :class:`~preread.settings.Settings`, passed in.

``Service(settings, api_only=True)`` is ``preread serve --api-only``, the API replicas of a
scale-out deployment: the API and the webhook outbox only. The leader of ``preread watch``
follows Orthanc, ``preread worker`` processes read the studies; what the API queues (a grant
that covers waiting studies, ``POST /studies/{uid}/analyze``) is sent to them over the broker.
It loads no model (the registry's cards only) and needs ``PREREAD_ORTHANC_URL`` and
``PREREAD_BROKER_URL``.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from fastapi import FastAPI

from dicom_gateway.client import OrthancClient
from dicom_gateway.orthanc_server import DicomPeer, OrthancConfig, OrthancServer
from dicom_gateway.source import StudySource
from inference.predict import Predictor
from inference.registry import Registry
from preread.api.app import create_app
from preread.api.deps import Services
from preread.api.metrics import ApiMetrics
from preread.audit import AuditLog
from preread.audit.batch import AuditWriter
from preread.caches import Watched, watch
from preread.composition import (
    Predictors,
    checkpoint_schedule,
    job_context,
    job_store,
    model_packages,
    model_refs,
    orthanc_client,
    orthanc_password,
)
from preread.domain import ModelRef
from preread.followup.priors import PRIORS_PEER_NAME
from preread.grants import Grant, GrantStore
from preread.grants.requeue import queue_newly_covered
from preread.jobs import retry_comparisons
from preread.lifecycle import LiveLineup
from preread.monitoring.monitor import monitor_round
from preread.reviews.service import ReviewContext, store_unstored
from preread.runner import InProcessRunner
from preread.security import ClientStore, KeyRing, TokenService
from preread.settings import Settings
from preread.store import JobState, JobStore
from preread.watcher import Watcher
from preread.webhooks.addresses import DestinationPolicy
from preread.webhooks.delivery import Deliverer
from preread.webhooks.outbox import WebhookStore
from preread.webhooks.tunnel import webhook_client

log = logging.getLogger(__name__)


class Service:
    """The embedded PreRead: use as a context manager, then :meth:`start_loop`."""

    def __init__(self, settings: Settings, *, api_only: bool = False) -> None:
        self.settings = settings
        self.api_only = api_only
        self.orthanc: OrthancServer | None = None
        self.source: StudySource
        self.store: JobStore
        self.runner: InProcessRunner | None = None
        self.dispatch: Callable[[str], None]
        self.watcher: Watcher
        self.predictors: Predictors
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.loop_error: BaseException | None = None
        self.abandoned = 0  # jobs still running when close() released them
        self._closed = False
        self._watched: list[Watched] = []
        self._writers: list[AuditWriter] = []

    # -- assembly ------------------------------------------------------------------------------

    def __enter__(self) -> Service:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        if self.api_only:
            _check_api_only(s)
        try:
            client = self._open_orthanc()
            self.source = client
            self.store = job_store(s)
            self.store.migrate()
            registry = Registry(s.models_dir)
            self.predictors = Predictors(s, registry)
            packages = model_packages(s, registry)
            if not self.api_only:  # the API replicas run no model
                for package in packages:
                    self.predictors(package.id, package.version)
            self.packages = packages  # PREREAD_MODELS' installed packages
            self.models: list[ModelRef] = model_refs(packages)
            self.lineup = LiveLineup(self.store, packages, registry)
            self.audit = AuditLog(self.store.engine)
            self.grants = GrantStore(self.store.engine, audit=self.audit)
            ctx = job_context(
                s,
                store=self.store,
                source=self.source,
                predictors=self.predictors,
                grants=self.grants,
                audit=self.audit,
                priors_client=client,
                lineup=self.lineup,
            )
            self.metrics = ApiMetrics()
            if self.api_only:
                from preread.scale import CeleryDispatcher, make_celery

                self.dispatch = CeleryDispatcher(make_celery(s, s.broker_url)).dispatch
            else:
                self.runner = InProcessRunner(
                    ctx,
                    workers=s.workers,
                    on_finished=lambda result: self.metrics.observe_stages(result.job.timings),
                    job_timeout_s=s.job_timeout_s,
                )
                self.dispatch = self.runner.dispatch
            self.watcher = Watcher(
                self.source,
                self.store,
                self.lineup,
                self.dispatch,
                tenant_of=s.tenant_of,
                audit=self.audit,
            )
            self.registry = registry
            self.clients = ClientStore(self.store.engine)
            self.keys = KeyRing(s.signing_keys_dir)
            self.keys.ensure()
            self.tokens = TokenService(
                self.keys,
                issuer=s.token_issuer,
                audience=s.token_audience,
                ttl_s=s.token_ttl_s,
            )
            self.webhooks = WebhookStore(self.store.engine)
            proxy = s.webhook_proxy.get_secret_value() if s.webhook_proxy else None
            self._http = webhook_client(proxy)
            self.webhook_policy = DestinationPolicy.from_settings(s)
            self.deliverer = Deliverer(
                self.webhooks,
                self._http,
                policy=self.webhook_policy,
                timeout_s=s.webhook_timeout_s,
            )
        except BaseException:
            self.close()
            raise
        return self

    def _open_orthanc(self) -> OrthancClient:
        s = self.settings
        password = orthanc_password(s)
        if s.orthanc_url:
            return orthanc_client(s)
        storage = s.data_dir / "orthanc"
        storage.mkdir(parents=True, exist_ok=True)
        senders = tuple(
            DicomPeer(name=aet.lower(), aet=aet, host="127.0.0.1", port=104)
            for aet in s.allowed_senders
        )
        pacs = s.priors_peer_address()  # queried and moved from; may C-STORE the moved priors
        priors = () if pacs is None else (DicomPeer(PRIORS_PEER_NAME, *pacs, allow_store=True),)
        self.orthanc = OrthancServer(
            OrthancConfig(
                storage_dir=storage,
                http_port=s.orthanc_http_port,
                dicom_port=s.orthanc_dicom_port,
                aet=s.orthanc_aet,
                username=s.orthanc_username,
                password=password or secrets.token_urlsafe(24),
                stable_age_s=s.stable_age_s,
                dicom_modalities=senders + priors,
            ),
            work_root=_run_dir(s.data_dir),
            # a serve killed with SIGKILL takes its Orthanc along (SIGTERM to Orthanc)
            die_with_parent=threading.current_thread() is threading.main_thread(),
        )
        self.orthanc.start()
        return self.orthanc.client()

    def predictor(self, model_id: str, version: str) -> Predictor:
        """The predictor of an installed model version (loaded on first use, then shared)."""
        return self.predictors(model_id, version)

    # -- running -------------------------------------------------------------------------------

    def recover(self) -> int:
        """Dispatch jobs left queued by an earlier run (a crash between commit and dispatch)."""
        n = 0
        offset = 0
        while True:
            page = self.store.list_studies(
                states=[JobState.QUEUED], limit=200, offset=offset, include_shadow=True
            )
            for study in page.items:
                for job in study.jobs:
                    if job.state is JobState.QUEUED:
                        self.dispatch(job.id)
                        n += 1
            offset += page.limit
            if offset >= page.total:
                return n

    def tick(self, *, reconcile: bool = False) -> None:
        """One round: follow the change feed, requeue expired leases, maybe reconcile."""
        self.watcher.poll()
        for job in self.store.requeue_expired().to_dispatch:
            self.dispatch(job.id)
        if reconcile:
            self.watcher.reconcile()
            self.recover()  # e.g. jobs a grant made elsewhere (preread grants create) re-queued
            retry_comparisons(
                self.store,
                self.dispatch,
                self.settings.comparison_retry_s,
                self.settings.comparison_retries,
            )  # studies read while their priors could not be had (the PACS down)
            stored = store_unstored(
                ReviewContext(self.store, self.grants, self.audit, self.source)
            )  # signed reviews whose SR/SEG Orthanc did not take at signing
            if stored:
                log.info("stored the SR/SEG of %d signed review(s)", stored)
            monitor_round(self.store)  # every version in use, watched

    def start_loop(self, on_error: Callable[[BaseException], None] | None = None) -> None:
        """Run :meth:`tick` every poll interval in a background thread, and deliver webhooks.
        API-only: deliver webhooks only (the leader of ``preread watch`` follows Orthanc)."""
        if self.api_only:
            self.deliverer.start(self.settings.webhook_interval_s)
            return
        self.recover()

        checkpoints = checkpoint_schedule(self.settings, self.audit)

        def loop() -> None:
            import time

            last_reconcile = time.monotonic()
            last_purge = -float("inf")
            self.watcher.reconcile()
            while not self._stop.is_set():
                try:
                    due = time.monotonic() - last_reconcile >= self.settings.reconcile_interval_s
                    self.tick(reconcile=due)
                    if due:
                        last_reconcile = time.monotonic()
                    if checkpoints is not None:  # a signed head of the audit trail, hourly
                        checkpoints.poll()
                    if time.monotonic() - last_purge >= 86_400:  # audit retention, daily
                        last_purge = time.monotonic()
                        removed = self.audit.purge(self.settings.audit_retention_days)
                        if removed:
                            log.info("audit retention removed %d old records", removed)
                except Exception as exc:  # keep watching: Orthanc may come back
                    log.warning("watcher round failed: %s: %s", type(exc).__name__, exc)
                    if on_error:
                        on_error(exc)
                self._stop.wait(self.settings.poll_interval_s)

        self._thread = threading.Thread(target=loop, name="preread-watcher", daemon=True)
        self._thread.start()
        self.deliverer.start(self.settings.webhook_interval_s)

    def api_services(self) -> Services:
        """What the API of this process uses (see :func:`preread.api.app.create_app`)."""
        watched = watch(self.store, self.grants, self.settings.report_cache_size)
        self._watched.append(watched)
        return Services(
            settings=self.settings,
            store=self.store,
            clients=self.clients,
            tokens=self.tokens,
            webhooks=self.webhooks,
            registry=self.registry,
            metrics=self.metrics,
            source=self.source,
            analyze=self.watcher.analyze,
            views=watched.views,
            grant_store=self.grants,
            grants=watched.grants,
            on_grant_created=self.grant_created,
            audit=self._audit_writer(),
            webhook_policy=self.webhook_policy,
            lineup=self.lineup,
            ready_checks={
                "database": lambda: self.store.counts_by_state(),
                "orthanc": lambda: self.source.system(),
                "models": self._check_models,
                "signing_key": lambda: self.keys.current(),
            },
        )

    def _audit_writer(self) -> AuditWriter:
        writer = AuditWriter(self.audit)
        self._writers.append(writer)
        return writer

    def grant_created(self, grant: Grant) -> int:
        """Read the studies that waited for ``grant``: re-queue and dispatch them."""
        jobs = queue_newly_covered(self.store, grant)
        for job in jobs:
            self.dispatch(job.id)
        return len(jobs)

    def app(self) -> FastAPI:
        """The API app of this process."""
        return create_app(self.api_services())

    def _check_models(self) -> None:
        for model in self.models:
            if self.api_only:
                self.registry.find(model.id, model.version)
            else:
                self.predictors(model.id, model.version).session_info  # noqa: B018

    def close(self, *, hurry: threading.Event | None = None) -> None:
        """Stop everything, in order: no more polling or new jobs; running jobs get
        ``PREREAD_SHUTDOWN_GRACE_S`` to finish (less once ``hurry`` is set), then their leases
        are released; then the webhooks, the store and the private Orthanc (its temporary
        folder with the configuration removed). :attr:`abandoned` counts the released jobs
        whose threads still run. Closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        runner = getattr(self, "runner", None)
        if runner is not None:  # before the watcher's thread: no dispatch reaches a closed pool
            self.abandoned = runner.close(self.settings.shutdown_grace_s, hurry=hurry)
        if self._thread is not None:
            self._thread.join(timeout=30)
        for watched in self._watched:
            watched.stop()
        for writer in self._writers:
            writer.close()
        deliverer = getattr(self, "deliverer", None)
        if deliverer is not None:
            deliverer.stop()
        http = getattr(self, "_http", None)
        if http is not None:
            http.close()
        store = getattr(self, "store", None)
        if store is not None:
            store.close()
        if self.orthanc is not None:
            self.orthanc.stop(remove_work_dir=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _run_dir(data_dir: Path) -> Path:
    """``<data_dir>/run``: the private Orthanc's folder (configuration with its password, mode
    0600; its log) is made in it and removed when it stops. One that a killed ``serve`` left
    (SIGKILL cleans nothing up) is removed here, at the next start."""
    run = data_dir / "run"
    for stale in run.glob("preread-orthanc-*"):
        log.info("removing %s, left by a PreRead that did not stop cleanly", stale)
        shutil.rmtree(stale, ignore_errors=True)
    run.mkdir(mode=0o700, exist_ok=True)
    return run


def _check_api_only(settings: Settings) -> None:
    """An API replica follows a shared Orthanc and sends jobs to the workers' broker."""
    from preread.scale.celery_app import ScaleError

    missing = [
        name
        for name, value in (
            ("PREREAD_ORTHANC_URL", settings.orthanc_url),
            ("PREREAD_BROKER_URL", settings.broker_url),
        )
        if not value
    ]
    if missing:
        raise ScaleError(
            f"preread serve --api-only needs {' and '.join(missing)} (the shared Orthanc and "
            "the workers' broker)"
        )
