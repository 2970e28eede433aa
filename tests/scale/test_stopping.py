"""``preread worker`` and ``preread watch`` told to stop (SIGTERM, as systemd, Docker and
Kubernetes do; SIGINT, as Ctrl-C does): real processes over Redis and PostgreSQL, a private
Orthanc, the shipped model.

* A worker with no grace period (``PREREAD_SHUTDOWN_GRACE_S=0``) releases the job it is
  reading: the leader queues it again at once (not a 30 s lease later), another worker reads
  it, and the stopping worker exits 0.
* A worker with a grace period finishes the job it is reading, then exits 0.
* The leader ends its round, lets go of the leadership and exits 0.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from preread.health import leader_held
from preread.scale.cli import LEADERSHIP
from preread.store import JobRecord, JobState
from preread.store.states import IN_PROGRESS
from tests.scale.cluster import Cluster, problems, running, wait_for
from tests.scale.conftest import FAULT_SEEDS, FaultScene
from training.phantom_dicom import StudyFiles, write_phantom_study
from training.phantoms import generate_phantom

LEASE_S = 30.0  # the default: a released job must not wait for it


def _job(fault_scene: FaultScene, study: StudyFiles) -> JobRecord | None:
    jobs = fault_scene.store.current_for_study(study.study_instance_uid)
    return jobs[0] if jobs else None


def _wait_held_by(
    fault_scene: FaultScene, cluster: Cluster, study: StudyFiles, name: str
) -> JobRecord:
    """Until ``name`` holds the study's job (fetching, inferring or writing)."""

    def held() -> bool:
        job = _job(fault_scene, study)
        return (
            job is not None
            and job.state in IN_PROGRESS
            and job.lease_owner is not None
            and job.lease_owner.endswith(f":{cluster.pid(name)}")
        )

    wait_for(held, 120, lambda: f"{_job(fault_scene, study)}\n{cluster.report()}", step_s=0.02)
    job = _job(fault_scene, study)
    assert job is not None
    return job


def _exit_code(cluster: Cluster, name: str, timeout_s: float) -> int:
    popen = cluster.procs[name].popen
    wait_for(lambda: popen.poll() is not None, timeout_s, cluster.report)
    cluster.note(f"{name} exited with {popen.returncode}")
    return popen.returncode


def test_stopped_workers_release_or_finish_their_job_and_the_leader_lets_go(
    redis_queue: tuple[str, str], fault_scene: FaultScene, tmp_path: Path
) -> None:
    url, queue = redis_queue
    first, second = (
        write_phantom_study(
            generate_phantom(seed, matrix=32, max_slices=50), tmp_path, patient_id=f"STOP-{seed}"
        )
        for seed in FAULT_SEEDS[:2]
    )
    cluster = fault_scene.cluster(url, queue, lease_s=str(LEASE_S), shutdown_grace_s="0")
    with running(cluster):
        cluster.start("watch", "watch")
        cluster.start("a", "worker")
        fault_scene.send([first])
        taken = _wait_held_by(fault_scene, cluster, first, "a")
        cluster.procs["a"].popen.send_signal(signal.SIGTERM)
        cluster.note(f"SIGTERM to a, holding {taken.id} ({taken.state.value})")
        stopped = time.monotonic()

        def queued_again() -> bool:
            job = _job(fault_scene, first)
            return job is not None and job.state is JobState.QUEUED

        wait_for(queued_again, 10, lambda: f"not released: {_job(fault_scene, first)}")
        assert time.monotonic() - stopped < LEASE_S / 3  # well before its lease would end
        assert _exit_code(cluster, "a", 120) == 0, cluster.report()

        cluster.env = {**cluster.env, "PREREAD_SHUTDOWN_GRACE_S": "120"}
        cluster.start("b", "worker")
        wait_for(
            lambda: getattr(_job(fault_scene, first), "state", None) is JobState.DONE,
            120,
            cluster.report,
        )
        fault_scene.send([second])
        _wait_held_by(fault_scene, cluster, second, "b")
        cluster.procs["b"].popen.send_signal(signal.SIGINT)  # Ctrl-C
        cluster.note("SIGINT to b, reading the second study")
        assert _exit_code(cluster, "b", 150) == 0, cluster.report()
        done = _job(fault_scene, second)
        assert done is not None and done.state is JobState.DONE, (done, cluster.report())
        assert done.attempts == 1, "the job was not finished by the worker that was stopping"

        assert leader_held(fault_scene.database_url, LEADERSHIP)
        cluster.procs["watch"].popen.send_signal(signal.SIGTERM)
        assert _exit_code(cluster, "watch", 15) == 0, cluster.report()
        assert "watch: stopped" in cluster.log_text("watch")
        assert not leader_held(fault_scene.database_url, LEADERSHIP)

    reread = _job(fault_scene, first)
    assert reread is not None and reread.attempts == 2, reread
    found = problems(
        fault_scene.orthanc,
        fault_scene.store,
        [first.study_instance_uid, second.study_instance_uid],
    )
    assert not found, "\n".join(found) + "\n" + cluster.report()
