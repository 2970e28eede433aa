"""Celery workers over real Redis and RabbitMQ run ``preread.run_job`` end to end.

The job is of a phantom study (``training.phantoms``, written as DICOM into a folder read by
:class:`FolderStudySource`) whose sender belongs to no tenant: ``run_job`` records the study and
finishes the job ``not_applicable`` (``no_tenant``) without a model, in the PostgreSQL store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker  # type: ignore[import-untyped]
from celery.signals import task_postrun  # type: ignore[import-untyped]

from dicom_gateway.folder import FolderStudySource
from preread.audit import AuditLog
from preread.domain import ModelRef
from preread.grants import GrantStore
from preread.jobs import JobContext
from preread.leases import LeaseKeeper
from preread.scale import QUEUE, TASK_NAME, CeleryDispatcher, make_celery
from preread.scale.celery_app import visibility_timeout_s
from preread.settings import Settings
from preread.store import JobRecord, JobState, JobStore, StudyFingerprint
from training.phantom_dicom import write_phantom_study
from training.phantoms import generate_phantom

MODEL = ModelRef("lung-nodule", "1.0.0", "PreRead Lung Nodule UNet", "ab" * 32)


def _never(model_id: str, version: str) -> Any:
    raise AssertionError("a study of no tenant must not reach the model")


@dataclass
class Scene:
    store: JobStore
    ctx: JobContext
    job: JobRecord


@pytest.fixture
def scene(postgres_url: str, tmp_path: Path) -> Iterator[Scene]:
    folder = tmp_path / "orthanc"
    folder.mkdir()
    files = write_phantom_study(
        generate_phantom(7, matrix=48, max_slices=8), folder, patient_id=f"PAT-{tmp_path.name}"
    )
    source = FolderStudySource(folder)
    orthanc_study = source.find_study(files.study_instance_uid)
    assert orthanc_study is not None
    with JobStore.create(postgres_url) as store:
        job = store.enqueue(
            files.study_instance_uid, orthanc_study, MODEL, StudyFingerprint(8, "x")
        ).job
        audit = AuditLog(store.engine)
        ctx = JobContext(
            store=store,
            source=source,
            predictor_for=_never,
            owner="celery-test",
            grants=GrantStore(store.engine, audit=audit),
            audit=audit,
            lease_s=60.0,
            tenant_of=lambda _sender: None,
        )
        yield Scene(store, ctx, job)


class Finished:
    """What the worker's tasks returned (``task_postrun``), for the test to wait on."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self._cond = threading.Condition()

    def __call__(self, sender: Any = None, retval: Any = None, **_: Any) -> None:
        if getattr(sender, "name", None) == TASK_NAME:
            with self._cond:
                self.values.append(retval)
                self._cond.notify_all()

    def wait(self, n: int, timeout_s: float = 20.0) -> list[Any]:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.values) >= n, timeout=timeout_s)
        assert ok, f"{n} task run(s) expected within {timeout_s}s, saw {self.values}"
        return list(self.values)


def test_config_acknowledges_late_and_prefetches_one() -> None:
    settings = Settings(lease_s=900.0)
    app = make_celery(settings, "redis://127.0.0.1:6379/15", context=lambda: _never("", ""))
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json" and list(conf.accept_content) == ["json"]
    assert conf.task_default_queue == QUEUE
    assert conf.task_ignore_result is True and not conf.result_backend
    timeout = conf.broker_transport_options["visibility_timeout"]
    assert timeout >= 2 * settings.lease_s and timeout == visibility_timeout_s(settings)
    assert visibility_timeout_s(Settings(lease_s=10.0)) >= 3600  # never shorter than an hour
    assert TASK_NAME in app.tasks


def test_no_broker_is_a_clear_error() -> None:
    from preread.scale import ScaleError

    with pytest.raises(ScaleError, match="PREREAD_BROKER_URL"):
        make_celery(Settings(), "")


def test_worker_runs_a_job_once_even_when_delivered_twice(
    broker_url: str, queue: str, scene: Scene
) -> None:
    built: list[int] = []

    def context() -> JobContext:
        built.append(1)
        return scene.ctx

    app = make_celery(Settings(lease_s=60.0), broker_url, context=context)
    app.conf.task_default_queue = queue
    finished = Finished()
    task_postrun.connect(finished, weak=False)
    try:
        # heartbeats on: with them off, the AMQP consumer only notices the stop after 10 s
        with start_worker(
            app, pool="solo", perform_ping_check=False, loglevel="WARNING", without_heartbeat=False
        ):
            dispatch = CeleryDispatcher(app)
            dispatch(scene.job.id)
            first = finished.wait(1)
            assert first == [{"job_id": scene.job.id, "state": "not_applicable"}]
            after_first = scene.store.get(scene.job.id)
            assert after_first.state is JobState.NOT_APPLICABLE
            assert after_first.reason_code == "no_tenant"

            dispatch.dispatch(scene.job.id)  # the same message again (a redelivery)
            second = finished.wait(2)
            assert second[1] is None  # left alone: already final
            time.sleep(0.2)
            assert scene.store.get(scene.job.id) == after_first  # nothing changed
    finally:
        task_postrun.disconnect(finished)
    assert built == [1]  # the context is built once per process
    recorded = scene.store.study(scene.job.study_instance_uid)
    assert recorded is not None and recorded.tenant is None


def test_the_queue_comes_from_settings(broker_url: str, queue: str, scene: Scene) -> None:
    """``PREREAD_QUEUE``: the watcher's dispatcher sends there and a worker consumes it (so
    deployments, tests and benchmarks can share one broker)."""
    app = make_celery(Settings(lease_s=60.0, queue=queue), broker_url, context=lambda: scene.ctx)
    assert app.conf.task_default_queue == queue
    finished = Finished()
    task_postrun.connect(finished, weak=False)
    try:
        with start_worker(
            app, pool="solo", perform_ping_check=False, loglevel="WARNING", without_heartbeat=False
        ):
            CeleryDispatcher(app)(scene.job.id)
            assert finished.wait(1) == [{"job_id": scene.job.id, "state": "not_applicable"}]
    finally:
        task_postrun.disconnect(finished)


def test_lease_keeper_holds_a_running_job_and_lets_it_go_after(scene: Scene) -> None:
    """While a task runs, its lease is renewed: the leader's sweep does not take the job from a
    live worker however long the study takes; afterwards the lease runs out."""
    ctx = replace(scene.ctx, lease_s=0.3)
    assert scene.store.claim(scene.job.id, ctx.owner, ctx.lease_s) is not None
    with LeaseKeeper(ctx, scene.job.id):
        time.sleep(1.0)  # more than three leases
        assert scene.store.requeue_expired().requeued == ()
        assert scene.store.get(scene.job.id).state is JobState.FETCHING
    time.sleep(0.4)
    swept = scene.store.requeue_expired()
    assert [j.id for j in swept.requeued] == [scene.job.id]


def test_lease_keeper_gives_up_a_hung_job_after_its_timeout(scene: Scene) -> None:
    """A job still running after ``PREREAD_JOB_TIMEOUT_S`` is no longer renewed: its lease runs
    out and the leader's sweep re-queues it, though the (hung) task has not returned."""
    ctx = replace(scene.ctx, lease_s=0.3)
    assert scene.store.claim(scene.job.id, ctx.owner, ctx.lease_s) is not None
    with LeaseKeeper(ctx, scene.job.id, max_s=0.5):
        time.sleep(1.5)  # the cap, then more than a lease without renewal
        swept = scene.store.requeue_expired()
        assert [j.id for j in swept.requeued] == [scene.job.id]
    assert visibility_timeout_s(Settings(lease_s=900, job_timeout_s=7200)) >= 8100


def test_leader_sends_a_waiting_job_again_only_after_resend_after_s(scene: Scene) -> None:
    """The periodic sweep of queued jobs does not pile a duplicate message per waiting job on
    the broker at every reconcile: a job is sent again once ``resend_after_s`` has passed."""
    from preread.scale.cli import Sender, dispatch_queued

    sent: list[str] = []
    patient = Sender(sent.append, resend_after_s=3600)
    queued = dispatch_queued(scene.store, patient)  # a new leader sends every queued job
    assert queued >= 1 and scene.job.id in sent  # (other tests of this module left some)
    sent.clear()
    assert dispatch_queued(scene.store, patient) == 0 and sent == []
    eager = Sender(sent.append, resend_after_s=0.0)
    assert dispatch_queued(scene.store, eager) == queued
    assert dispatch_queued(scene.store, eager) == queued
    assert dispatch_queued(scene.store, sent.append) == queued  # a plain callable: every time
    assert sent.count(scene.job.id) == 3


def test_leader_resends_at_once_what_the_broker_lost(
    broker_url: str, queue: str, scene: Scene
) -> None:
    """When the broker's queue holds fewer messages than there are queued jobs (a broker
    restarted without persistence; here: the queue purged), the leader re-sends the jobs sent
    more than ``grace_s`` ago without waiting for ``resend_after_s``; while the messages are
    there, it sends nothing again."""
    from preread.scale.cli import Sender, dispatch_queued, queue_depth

    app = make_celery(Settings(queue=queue), broker_url)
    sender = Sender(
        CeleryDispatcher(app),
        resend_after_s=3600,
        depth=lambda: queue_depth(app, queue),
        grace_s=0.0,
    )
    assert queue_depth(app, queue) == 0  # a queue the broker does not know yet
    queued = dispatch_queued(scene.store, sender)
    assert queued >= 1
    deadline = time.monotonic() + 10
    while queue_depth(app, queue) != queued and time.monotonic() < deadline:
        time.sleep(0.1)  # RabbitMQ routes published messages asynchronously
    assert queue_depth(app, queue) == queued
    assert dispatch_queued(scene.store, sender) == 0  # all there: no duplicates
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)
    assert dispatch_queued(scene.store, sender) == queued  # lost: sent again at once


def test_each_app_keeps_its_own_task_options() -> None:
    """Two apps in one process (a test's in-process worker after another's): each task has the
    retry delays of its own app, not those of the first app that registered the name."""
    first = make_celery(Settings(), "redis://127.0.0.1:6379/15", retry_delays_s=(1.0,))
    second = make_celery(Settings(), "redis://127.0.0.1:6379/15", retry_delays_s=(2.0, 3.0))
    assert first.tasks[TASK_NAME].retry_delays_s == (1.0,)
    assert second.tasks[TASK_NAME].retry_delays_s == (2.0, 3.0)
    assert second.tasks[TASK_NAME].max_retries == 2
