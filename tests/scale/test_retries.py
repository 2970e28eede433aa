"""A Celery worker whose Orthanc is down: the task retries, gives up, and the leader's sweep
of expired leases brings the job back once Orthanc is up.

The worker runs in this process (``celery.contrib.testing``) with the real
:class:`~preread.scale.tasks.WorkerContext` (a real Orthanc, the PostgreSQL store, the shipped
model) over the machine's Redis, with short retry delays.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery.contrib.testing.worker import start_worker  # type: ignore[import-untyped]
from celery.exceptions import Retry  # type: ignore[import-untyped]
from celery.signals import task_postrun  # type: ignore[import-untyped]

from dicom_gateway.client import OrthancClient
from inference.registry import Registry
from preread.audit import AuditLog
from preread.domain import ModelRef
from preread.scale import TASK_NAME, CeleryDispatcher, WorkerContext, make_celery
from preread.settings import Settings
from preread.store import JobState, JobStore
from preread.watcher import Watcher
from tests.orthanc_support import wait_for_stable_study
from tests.scale.cluster import problems
from tests.scale.conftest import MODELS_DIR, FaultScene
from training.phantom_dicom import StudyFiles

RETRY_DELAYS_S = (0.3, 0.3, 0.3)


class Runs:
    """What the worker's task runs returned (``task_postrun``): a dict, None or a Retry."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self._cond = threading.Condition()

    def __call__(self, sender: Any = None, retval: Any = None, **_: Any) -> None:
        if getattr(sender, "name", None) == TASK_NAME:
            with self._cond:
                self.values.append(retval)
                self._cond.notify_all()

    def wait(self, n: int, timeout_s: float = 120.0) -> list[Any]:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.values) >= n, timeout=timeout_s)
        assert ok, f"{n} task runs expected within {timeout_s} s, saw {self.values}"
        return list(self.values)


def _settings(fault_scene: FaultScene, queue: str, tmp_path: Path) -> Settings:
    orthanc = fault_scene.orthanc
    return Settings(
        data_dir=tmp_path / "data",
        models_dir=MODELS_DIR,
        orthanc_url=orthanc.url,
        orthanc_username=orthanc.username,
        orthanc_password=orthanc.password,  # type: ignore[arg-type]
        database_url=fault_scene.database_url,
        queue=queue,
        intra_op_threads=1,
        lease_s=30.0,
        job_max_attempts=10,
    )


def _job_of(fault_scene: FaultScene, study: StudyFiles, settings: Settings) -> str:
    """Send the study; once stable, make its job as the leader's watcher does."""
    fault_scene.send([study])
    orthanc = fault_scene.orthanc
    with OrthancClient(orthanc.url, orthanc.username, orthanc.password) as client:
        orthanc_id = client.find_study(study.study_instance_uid)
        assert orthanc_id is not None
        wait_for_stable_study(client, orthanc_id)
        card = Registry(MODELS_DIR).find("lung-nodule", None).card
        sent: list[str] = []
        Watcher(
            client,
            fault_scene.store,
            [ModelRef(card.id, card.version, card.name, card.onnx.sha256)],
            sent.append,
            tenant_of=settings.tenant_of,
            audit=AuditLog(fault_scene.store.engine),
        ).poll()
    assert len(sent) == 1, sent
    return sent[0]


def test_orthanc_down_retries_give_up_and_the_leader_sweep_finishes_the_job(
    redis_queue: tuple[str, str],
    fault_scene: FaultScene,
    small_studies: list[StudyFiles],
    tmp_path: Path,
) -> None:
    url, queue = redis_queue
    orthanc = fault_scene.orthanc
    study = small_studies[0]
    settings = _settings(fault_scene, queue, tmp_path)
    job_id = _job_of(fault_scene, study, settings)
    context = WorkerContext(settings)
    app = make_celery(settings, url, context=context.build, retry_delays_s=RETRY_DELAYS_S)
    dispatch = CeleryDispatcher(app)
    runs = Runs()
    task_postrun.connect(runs, weak=False)
    orthanc.stop(remove_work_dir=False)
    try:
        with start_worker(
            app, pool="solo", perform_ping_check=False, loglevel="WARNING", without_heartbeat=False
        ):
            dispatch(job_id)
            # the first run and one per retry delay, each failing to reach Orthanc
            values = runs.wait(1 + len(RETRY_DELAYS_S))
            assert [type(v) for v in values[:-1]] == [Retry] * len(RETRY_DELAYS_S), values
            assert values[-1] is None, values  # gave up: the lease is left to expire
            job = fault_scene.store.get(job_id)
            assert job.state is JobState.FETCHING, job.state
            assert job.attempts == 1 + len(RETRY_DELAYS_S), job.attempts
            assert job.lease_expires_at is not None
            assert job.lease_expires_at <= datetime.now(UTC), "the lease must have run out"

            orthanc.start()
            with JobStore.create(  # the leader's next round, with the leader's settings
                fault_scene.database_url, max_attempts=settings.job_max_attempts
            ) as leader_store:
                sweep = leader_store.requeue_expired()
            assert [j.id for j in sweep.to_dispatch] == [job_id], sweep
            for job in sweep.to_dispatch:
                dispatch(job.id)
            done = runs.wait(len(values) + 1)[-1]
            assert done == {"job_id": job_id, "state": "done"}, done
    finally:
        task_postrun.disconnect(runs)
        context.close()
        orthanc.start()  # running again whatever happened (a no-op when it runs)
    job = fault_scene.store.get(job_id)
    assert job.state is JobState.DONE and job.attempts == 2 + len(RETRY_DELAYS_S), job
    assert not problems(orthanc, fault_scene.store, [study.study_instance_uid])


def test_orthanc_back_before_the_retry_finishes_the_job_without_the_leader(
    redis_queue: tuple[str, str],
    fault_scene: FaultScene,
    small_studies: list[StudyFiles],
    tmp_path: Path,
) -> None:
    """The retry itself reads the study once Orthanc is back: the lease ran out exactly when
    the retry was due, so the retry claims the job (no leader runs here)."""
    url, queue = redis_queue
    orthanc = fault_scene.orthanc
    study = small_studies[1]
    settings = _settings(fault_scene, queue, tmp_path)
    job_id = _job_of(fault_scene, study, settings)
    context = WorkerContext(settings)
    app = make_celery(settings, url, context=context.build, retry_delays_s=(3.0,))
    runs = Runs()
    task_postrun.connect(runs, weak=False)
    orthanc.stop(remove_work_dir=False)
    try:
        with start_worker(
            app, pool="solo", perform_ping_check=False, loglevel="WARNING", without_heartbeat=False
        ):
            CeleryDispatcher(app)(job_id)
            (first,) = runs.wait(1)
            assert isinstance(first, Retry), first
            held = fault_scene.store.get(job_id)
            assert held.lease_expires_at is not None
            assert held.lease_expires_at > datetime.now(UTC), "held until the retry is due"
            orthanc.start()
            values = runs.wait(2)
            assert values[1] == {"job_id": job_id, "state": "done"}, values
    finally:
        task_postrun.disconnect(runs)
        context.close()
        orthanc.start()
    job = fault_scene.store.get(job_id)
    assert job.state is JobState.DONE and job.attempts == 2, job
    assert not problems(orthanc, fault_scene.store, [study.study_instance_uid])
